"""`mirage train-encoder`, `train-generator` and `fetch-roco`: making models and getting data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import MirageError
from ..files import write_json
from .common import (
    UsageError,
    corpus_options,
    encoder_option,
    progress_bar,
    settings_from,
)


def register(commands) -> dict:
    train = commands.add_parser("train-encoder", help="train the lite heads (or fine-tune an open_clip model)")
    corpus_options(train, required=True)
    encoder_option(train)
    train.add_argument("--out", metavar="DIR", required=True, help="folder for the trained weights")
    train.add_argument("--all", action="store_true", help="train on every record (default: hold out 20%%)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--cache", metavar="DIR", help="where backbone features are cached")
    train.add_argument("--cv", type=int, default=0, metavar="K",
                       help="first report K-fold cross-validation by article inside the training data")
    train.add_argument("--backbone", action="store_true",
                       help="with --cv: also fine-tune the whole image backbone on each fold and compare it with the "
                            "shipped recipe (hours on CPU; resumes where it stopped; writes no weights)")
    train.add_argument("--image-size", type=int, default=224, help="input size of the fine-tuned backbone")
    train.add_argument("--fold", type=int, action="append", metavar="I", help="with --backbone: only fold I")
    train.add_argument("--json", action="store_true")

    train_generator = commands.add_parser("train-generator", help="train the lite generator (resumable stages)")
    corpus_options(train_generator, required=True)
    train_generator.add_argument("--stage", action="append", metavar="STAGE",
                                 help="vae, unet or lcm; repeatable (default: all three in order)")
    train_generator.add_argument("--steps", action="append", default=[], metavar="STAGE=N",
                                 help="total steps of a stage, e.g. unet=20000 (default: the config's)")
    train_generator.add_argument("--out", metavar="DIR", help="weights folder (default: MIRAGE_HOME/lite-generator; "
                                 "--out assets/lite-generator replaces the shipped weights in a checkout)")
    train_generator.add_argument("--work", metavar="DIR", help="checkpoints (default: MIRAGE_HOME/generator-work)")
    train_generator.add_argument("--unet-from", metavar="DIR",
                                 help="start a new UNet from another lite generator's UNet, every tensor whose "
                                      "shape still fits (e.g. after a VAE change)")
    train_generator.add_argument("--grow-from", metavar="DIR",
                                 help="instead of the stages: a generator at twice DIR's resolution, keeping its "
                                      "latent space (a VAE one stage deeper; DIR's UNet and LCM-LoRA copied as they "
                                      "are); --steps grow=N")
    train_generator.add_argument("--device", help="cpu (default) or cuda")
    train_generator.add_argument("--json", action="store_true")

    fetch = commands.add_parser("fetch-roco", help="download a subset of ROCO's images from PMC open access")
    corpus_options(fetch, required=True)
    fetch.add_argument("--out", metavar="DIR", required=True, help="folder to write in ROCO's layout")
    fetch.add_argument("--limit", type=int, help="at most this many images")
    fetch.add_argument("--base-url", default=None, help="mirror of https://ftp.ncbi.nlm.nih.gov/pub/pmc/")
    fetch.add_argument("--json", action="store_true")
    return {"train-encoder": cmd_train_encoder, "train-generator": cmd_train_generator, "fetch-roco": cmd_fetch_roco}


def cmd_train_encoder(args) -> int:
    from ..encoders.training import train_encoder

    settings = settings_from(args)
    cache_dir = Path(args.cache) if args.cache else Path(settings.home) / "cache"
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.backbone:
        return _backbone_cv(args, settings, cache_dir, log)
    report = train_encoder(
        settings.load_corpus(), Path(args.out), encoder=settings.encoder, holdout=not args.all,
        epochs=args.epochs, cache_dir=cache_dir, device=settings.device, log=log, cv=args.cv,
    )
    print(json.dumps(report, indent=2) if args.json else f"weights written to {report['weights']}; "
          f"held-out: {json.dumps(report.get('heldout'))}")
    return 0


def _backbone_cv(args, settings, cache_dir: Path, log) -> int:
    from ..encoders.backbone_training import BackboneSettings, backbone_cv_report

    if not 2 <= args.cv <= 10:
        raise MirageError("--backbone compares recipes by cross-validation: give --cv K (2 to 10)")
    if not 96 <= args.image_size <= 512:
        raise MirageError(f"--image-size takes 96 to 512 pixels, not {args.image_size}")
    if args.fold and not all(0 <= fold < args.cv for fold in args.fold):
        raise MirageError(f"--fold takes 0 to {args.cv - 1}")
    backbone = BackboneSettings(image_size=args.image_size, epochs=args.epochs or BackboneSettings.epochs)
    report = backbone_cv_report(settings.load_corpus(), args.cv, backbone, cache_dir, args.fold, log)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out) / "backbone-cv.json", report)
    cv = report["backbone_cv"]
    print(json.dumps(report, indent=2) if args.json else "\n".join(
        f"{recipe:>10} R@10 t2i {cv[f'{recipe}_t2i_R@10']['mean']} ± {cv[f'{recipe}_t2i_R@10']['std']}, "
        f"i2t {cv[f'{recipe}_i2t_R@10']['mean']} ± {cv[f'{recipe}_i2t_R@10']['std']} (folds {cv['done']})"
        for recipe in ("shipped", "fine_tuned")))
    return 0


def cmd_train_generator(args) -> int:
    from ..encoders import create_encoder
    from ..generation.training import GROW, STAGES, train_generator

    steps = {}
    for item in args.steps:
        stage, _, value = item.partition("=")
        if stage not in (*STAGES, GROW) or not value.isdigit():
            raise UsageError(f"--steps takes STAGE=N with STAGE one of {', '.join((*STAGES, GROW))}, not '{item}'")
        steps[stage] = int(value)
    settings = settings_from(args)
    encoder = create_encoder(settings.encoder, settings.device)
    report = train_generator(
        settings.load_corpus(), encoder, Path(args.out) if args.out else Path(settings.home) / "lite-generator",
        Path(args.work) if args.work else settings.generator_work_dir(), args.stage or STAGES, steps,
        settings.device, log=lambda line: print(line, file=sys.stderr, flush=True),
        unet_from=Path(args.unet_from) if args.unet_from else None,
        grow_from=Path(args.grow_from) if args.grow_from else None,
    )
    print(json.dumps(report, indent=2) if args.json else f"trained: {json.dumps(report)}")
    return 0


def cmd_fetch_roco(args) -> int:
    from ..fetch import PMC_BASE_URL, fetch_roco

    if len(args.roco) != 1:
        raise UsageError("fetch-roco reads one ROCO split's metadata: give --roco once")
    report = fetch_roco(args.roco[0], args.out, split=args.split, licences=args.licences, limit=args.limit,
                        base_url=args.base_url or PMC_BASE_URL, progress=progress_bar("fetching"))
    summary = {"fetched": report.fetched, "already_there": report.already_there, "failed": dict(report.failed),
               "out": report.out}
    print(json.dumps(summary, indent=2) if args.json else
          f"{report.fetched} fetched, {report.already_there} already there, {sum(report.failed.values())} failed "
          f"-> {report.out}")
    if report.failed:  # a stalled or refusing server is a failure to say, not a quiet "fetched 0"
        reasons = "; ".join(f"{reason} ({count})" for reason, count in report.failed.most_common(3))
        print(f"error: {sum(report.failed.values())} image(s) could not be fetched: {reasons}", file=sys.stderr)
        return 2
    return 0
