"""`mirage` — the command line over the same functions the app's pages call.

Every command has `--help` and `--json`. A mistake the user can fix (a missing folder, an empty query, an
index built by another encoder) prints one line starting with `mirage: error:` and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from .errors import MirageError
from .files import check_writable, write_bytes, write_text

TERM_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\*\s*(.+)$")


class UsageError(MirageError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints usage; one clear line is friendlier
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _corpus_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--roco", metavar="DIR", required=required, action="append",
                        help="corpus: a ROCO split folder, a ROCO root (with --split), a ROCOv2 folder or a CSV; "
                             "repeat it to use several corpora as one")
    parser.add_argument("--split", help="split of a ROCO/ROCOv2 root, e.g. test")
    parser.add_argument("--licences", help="keep only these licences, e.g. 'CC BY,CC0'")


def _encoder_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", help="'lite' (default), 'lite:PATH' or 'open_clip:<spec>'")
    parser.add_argument("--device", help="cpu (default) or cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mirage", description="MIRAGE: retrieval over radiology images and captions.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    build = commands.add_parser("build-index", help="embed a corpus into an index folder")
    _corpus_options(build)
    _encoder_option(build)
    build.add_argument("--out", metavar="DIR", help="index folder (default: under MIRAGE_HOME, keyed by model+corpus)")
    build.add_argument("--json", action="store_true", help="print the manifest as JSON")

    search = commands.add_parser("search", help="find images (or captions) for a text or an image")
    search.add_argument("query", nargs="?", help="the text query")
    search.add_argument("--image", metavar="PATH", help="query with an image instead of text")
    search.add_argument("--captions", action="store_true", help="return captions instead of images")
    search.add_argument("--k", type=int, default=10)
    search.add_argument("--modality", action="append", help="keep only this modality (repeatable)")
    search.add_argument("--index", metavar="DIR", help="an index folder built by build-index")
    _corpus_options(search)
    _encoder_option(search)
    search.add_argument("--json", action="store_true")

    arith = commands.add_parser(
        "arith", help="dual search: query − subtract + add",
        description="Terms are texts, 'image:PATH', optionally weighted as 'W*term' (e.g. '0.5*soft tissue').",
    )
    arith.add_argument("query")
    arith.add_argument("--minus", action="append", default=[], metavar="TERM")
    arith.add_argument("--plus", action="append", default=[], metavar="TERM")
    arith.add_argument("--k", type=int, default=10)
    arith.add_argument("--index", metavar="DIR")
    _corpus_options(arith)
    _encoder_option(arith)
    arith.add_argument("--json", action="store_true")

    evaluate = commands.add_parser("eval", help="text→image and image→text recall on a corpus")
    _corpus_options(evaluate, required=True)
    _encoder_option(evaluate)
    evaluate.add_argument("--heldout", action="store_true", help="only the deterministic held-out 20%% split")
    evaluate.add_argument("--json", action="store_true")

    train = commands.add_parser("train-encoder", help="train the lite heads (or fine-tune an open_clip model)")
    _corpus_options(train, required=True)
    _encoder_option(train)
    train.add_argument("--out", metavar="DIR", required=True, help="folder for the trained weights")
    train.add_argument("--all", action="store_true", help="train on every record (default: hold out 20%%)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--cache", metavar="DIR", help="where backbone features are cached")
    train.add_argument("--json", action="store_true")

    fetch = commands.add_parser("fetch-roco", help="download a subset of ROCO's images from PMC open access")
    _corpus_options(fetch, required=True)
    fetch.add_argument("--out", metavar="DIR", required=True, help="folder to write in ROCO's layout")
    fetch.add_argument("--limit", type=int, help="at most this many images")
    fetch.add_argument("--base-url", default=None, help="mirror of https://ftp.ncbi.nlm.nih.gov/pub/pmc/")
    fetch.add_argument("--json", action="store_true")

    report = commands.add_parser("report", help="a grounded report (optionally LLM-enriched) for a text or image")
    report.add_argument("query", nargs="?", help="the text query")
    report.add_argument("--image", metavar="PATH", help="report on an image instead of a text")
    report.add_argument("--k", type=int, default=8, help="cases to ground the report in")
    report.add_argument("--llm", nargs="?", const="", metavar="SPEC",
                        help="also let a language model explain the report ('smollm2' default, or 'hf:<id>')")
    report.add_argument("--enrich", action="store_true", help="expand the query and show the re-ranking")
    report.add_argument("--out", metavar="FILE", help="write the report as Markdown")
    report.add_argument("--index", metavar="DIR")
    _corpus_options(report)
    _encoder_option(report)
    report.add_argument("--json", action="store_true")

    generate = commands.add_parser("generate", help="synthetic images of a concept (marked and labelled as such)")
    generate.add_argument("prompt", nargs="?", help="a text prompt")
    generate.add_argument("--image", metavar="PATH", help="condition on an image instead (lite profile)")
    generate.add_argument("--minus", action="append", default=[], metavar="TERM", help="dual-search term to subtract")
    generate.add_argument("--plus", action="append", default=[], metavar="TERM", help="dual-search term to add")
    generate.add_argument("--profile", help="'lite', 'lite:FOLDER', 'sd' or 'sd:<repo id>' (default: MIRAGE_GENERATOR, "
                          "else lite)")
    generate.add_argument("--n", type=int, default=2)
    generate.add_argument("--steps", type=int, default=4)
    generate.add_argument("--guidance", type=float, default=1.0)
    generate.add_argument("--sampler", default="lcm", help="lcm (default) or ddim (the undistilled model)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--size", type=int, help="sd only: side in px (multiple of 8, at most 768)")
    generate.add_argument("--out", metavar="DIR", help="folder for the PNG files (default: a new generated/<time>)")
    _encoder_option(generate)
    generate.add_argument("--json", action="store_true")

    train_generator = commands.add_parser("train-generator", help="train the lite generator (resumable stages)")
    _corpus_options(train_generator, required=True)
    train_generator.add_argument("--stage", action="append", metavar="STAGE",
                                 help="vae, unet or lcm; repeatable (default: all three in order)")
    train_generator.add_argument("--steps", action="append", default=[], metavar="STAGE=N",
                                 help="total steps of a stage, e.g. unet=20000 (default: the config's)")
    train_generator.add_argument("--out", metavar="DIR", help="weights folder (default: assets/lite-generator)")
    train_generator.add_argument("--work", metavar="DIR", help="checkpoints (default: MIRAGE_HOME/generator-work)")
    train_generator.add_argument("--unet-from", metavar="DIR",
                                 help="start a new UNet from another lite generator's UNet, every tensor whose "
                                      "shape still fits (e.g. after a VAE change)")
    train_generator.add_argument("--device", help="cpu (default) or cuda")
    train_generator.add_argument("--json", action="store_true")

    quiz = commands.add_parser("quiz", help="generate a quiz pack (JSON/YAML) from a corpus")
    quiz.add_argument("--type", action="append", metavar="KIND",
                      help="question type, repeatable or comma-separated: image_to_caption, caption_to_image, "
                           "modality, region, arithmetic (default: all)")
    quiz.add_argument("--n", type=int, default=10, help="number of questions")
    quiz.add_argument("--seed", type=int, default=0)
    quiz.add_argument("--difficulty", default="medium", help="easy, medium or hard")
    quiz.add_argument("--topic", default="mixed", help="mixed, modality:<name> or region:<name>")
    quiz.add_argument("--title", default="MIRAGE quiz")
    quiz.add_argument("--author", default="")
    quiz.add_argument("--out", metavar="FILE", help="write the pack here (.json, .yaml or .yml)")
    quiz.add_argument("--index", metavar="DIR")
    _corpus_options(quiz)
    _encoder_option(quiz)
    quiz.add_argument("--json", action="store_true", help="print the pack (or, with --out, a summary) as JSON")

    bench = commands.add_parser("bench", help="timings: search latency, index build throughput, quiz generation")
    bench.add_argument("what", choices=["search", "build", "startup", "quiz", "report", "generate"])
    bench.add_argument("--no-llm", action="store_true", help="bench report: skip the language model")
    bench.add_argument("--n", type=int, help="vectors in the index (search) or images to embed (build)")
    bench.add_argument("--repeats", type=int, default=50)
    _corpus_options(bench)
    bench.add_argument("--json", action="store_true")
    return parser


def _settings(args):
    from .config import load_settings

    return load_settings().with_overrides(
        encoder=getattr(args, "encoder", None),
        corpus=os.pathsep.join(args.roco) if getattr(args, "roco", None) else None,
        split=getattr(args, "split", None), licences=getattr(args, "licences", None),
        device=getattr(args, "device", None),
    )


def _progress(label: str):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit="img", file=sys.stderr, disable=None)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _check_corpus_exists(args, settings) -> None:
    """Fail on a mistyped corpus path before spending seconds loading models."""
    from .corpus import corpus_paths
    from .errors import CorpusError

    if getattr(args, "index", None):
        return
    for path in corpus_paths(settings.corpus):
        if not path.exists():
            raise CorpusError(f"corpus not found: {path}")


def _open_index(args, settings, encoder):
    from .index import load_index, open_or_build_index

    if getattr(args, "index", None):
        return load_index(args.index, encoder)
    return open_or_build_index(
        settings.index_dir(encoder.fingerprint), encoder, settings.load_corpus, _progress("embedding corpus")
    )


def _hit_dict(hit) -> dict:
    record = hit.record
    return {
        "id": record.id, "score": round(hit.score, 4), "modality": record.modality, "caption": record.caption,
        "image": record.image_path, "licence": record.licence, "article": record.article_url,
    }


def _print_hits(hits, as_json: bool, extra: dict | None = None) -> None:
    rows = [_hit_dict(h) for h in hits]
    if as_json:
        print(json.dumps({**(extra or {}), "results": rows}, ensure_ascii=False, indent=2))
        return
    for rank, row in enumerate(rows, 1):
        caption = row["caption"] if len(row["caption"]) <= 100 else row["caption"][:97] + "…"
        print(f"{rank:2d}. {row['score']:.3f}  {row['id']}  [{row['modality']}]  {caption}")


def _parse_term(text: str):
    from .arithmetic import Term
    from .images import open_image

    weight = 1.0
    match = TERM_WEIGHT.match(text)
    if match:
        weight, text = float(match.group(1)), match.group(2)
    if text.startswith("image:"):
        path = text[len("image:") :]
        return Term(open_image(path), weight, label=Path(path).name)
    return Term(text, weight)


def _check_modalities(names: list[str] | None) -> None:
    """An unknown --modality would silently match nothing: name the ones that exist instead."""
    from .labels import MODALITIES

    unknown = [name for name in names or [] if name not in MODALITIES]
    if unknown:
        raise UsageError(f"unknown modality '{unknown[0]}'; choose from: {', '.join(MODALITIES)}")


def cmd_build_index(args) -> int:
    from .encoders import create_encoder
    from .index import build_index, save_index

    settings = _settings(args)
    corpus = settings.load_corpus()
    encoder = create_encoder(settings.encoder, settings.device)
    folder = Path(args.out or settings.index_dir(encoder.fingerprint))
    check_writable(folder.parent, "the index folder")
    index = build_index(corpus, encoder, progress=_progress("embedding corpus"))
    folder = save_index(index, folder)
    manifest = {**index.manifest, "path": str(folder)}
    print(json.dumps(manifest, indent=2) if args.json else f"index of {manifest['count']} images written to {folder}")
    return 0


def cmd_search(args) -> int:
    from .encoders import create_encoder
    from .images import open_image
    from .search import search_image, search_text

    if (args.query is None) == (args.image is None):
        raise UsageError("give either a text query or --image PATH")
    _check_modalities(args.modality)
    settings = _settings(args)
    _check_corpus_exists(args, settings)
    encoder = create_encoder(settings.encoder, settings.device)
    index = _open_index(args, settings, encoder)
    if args.image is not None:
        target = "captions" if args.captions else "images"
        hits = search_image(index, encoder, open_image(args.image), args.k, target=target, modalities=args.modality)
    else:
        hits = search_text(index, encoder, args.query, args.k, modalities=args.modality)
    _print_hits(hits, args.json, {"query": args.query or args.image})
    return 0


def cmd_arith(args) -> int:
    from .arithmetic import dual_search
    from .encoders import create_encoder

    settings = _settings(args)
    _check_corpus_exists(args, settings)
    encoder = create_encoder(settings.encoder, settings.device)
    index = _open_index(args, settings, encoder)
    result = dual_search(
        index, encoder, _parse_term(args.query), [_parse_term(t) for t in args.minus],
        [_parse_term(t) for t in args.plus], k=args.k,
    )
    if args.json:
        print(json.dumps({
            "query": args.query, "minus": args.minus, "plus": args.plus,
            "original": [_hit_dict(h) for h in result.original],
            "results": [_hit_dict(h) for h in result.modified],
            "vectors": {label: [round(float(x), 5) for x in vector] for label, vector in result.composition.path()},
        }, ensure_ascii=False, indent=2))
    else:
        print("original query:")
        _print_hits(result.original, False)
        print("after arithmetic:")
        _print_hits(result.modified, False)
    return 0


def cmd_eval(args) -> int:
    from .encoders import create_encoder
    from .evaluation import evaluate_corpus

    settings = _settings(args)
    corpus = settings.load_corpus()
    encoder = create_encoder(settings.encoder, settings.device)
    metrics = evaluate_corpus(corpus, encoder, heldout_only=args.heldout,
                              progress=_progress("embedding"))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"n = {metrics['n']}")
        for direction in ("t2i", "i2t"):
            values = metrics[direction]
            print(f"{direction}: R@1 {values['R@1']:.1f}  R@5 {values['R@5']:.1f}  R@10 {values['R@10']:.1f}  "
                  f"median rank {values['median_rank']:g}")
    return 0


def cmd_train_encoder(args) -> int:
    from .training import train_encoder

    settings = _settings(args)
    report = train_encoder(
        settings.load_corpus(), Path(args.out), encoder=settings.encoder, holdout=not args.all,
        epochs=args.epochs, cache_dir=Path(args.cache) if args.cache else Path(settings.home) / "cache",
        device=settings.device, log=lambda line: print(line, file=sys.stderr),
    )
    print(json.dumps(report, indent=2) if args.json else f"weights written to {report['weights']}; "
          f"held-out: {json.dumps(report.get('heldout'))}")
    return 0


def cmd_fetch_roco(args) -> int:
    from .fetch import PMC_BASE_URL, fetch_roco

    if len(args.roco) != 1:
        raise UsageError("fetch-roco reads one ROCO split's metadata: give --roco once")
    report = fetch_roco(args.roco[0], args.out, split=args.split, licences=args.licences, limit=args.limit,
                        base_url=args.base_url or PMC_BASE_URL, progress=_progress("fetching"))
    summary = {"fetched": report.fetched, "already_there": report.already_there, "failed": dict(report.failed),
               "out": report.out}
    print(json.dumps(summary, indent=2) if args.json else
          f"{report.fetched} fetched, {report.already_there} already there, {sum(report.failed.values())} failed "
          f"-> {report.out}")
    return 0


def cmd_report(args) -> int:
    from dataclasses import asdict

    from .encoders import create_encoder
    from .images import open_image
    from .reports import enrich_query, grounded_report

    if (args.query is None) == (args.image is None):
        raise UsageError("give either a text query or --image PATH")
    if not 1 <= args.k <= 50:
        raise UsageError("--k must be between 1 and 50")
    if args.enrich and args.image:
        raise UsageError("--enrich expands a text query's words; an image query has none (drop --enrich)")
    settings = _settings(args)
    _check_corpus_exists(args, settings)
    encoder = create_encoder(settings.encoder, settings.device)
    index = _open_index(args, settings, encoder)
    query = open_image(args.image) if args.image else args.query
    report = grounded_report(index, encoder, query, k=args.k)
    llm = enrichment = query_enrichment = None
    if args.llm is not None:
        from .llm import create_llm, enrich_report

        llm = create_llm(args.llm or settings.llm or "smollm2", Path(settings.home) / "llm", settings.device)
        enrichment = enrich_report(llm, report)
    if args.enrich and args.query:
        query_enrichment = enrich_query(index, encoder, args.query, llm)
    markdown = report.to_markdown()
    if enrichment is not None:
        markdown += enrichment.markdown_section()
    if args.out:
        write_text(args.out, markdown)
    if args.json:
        payload = {"query": report.query, "nothing_found": report.nothing_found,
                   "modality": report.modality_label, "region": report.region_label,
                   "statements": [asdict(s) for s in report.statements], "sources": [asdict(s) for s in report.sources]}
        if enrichment is not None:
            payload["llm"] = {"model": enrichment.model, "accepted": enrichment.accepted, "reason": enrichment.reason,
                              "text": enrichment.text if enrichment.accepted else "",
                              "tokens_per_s": round(enrichment.generation.tokens_per_s, 2)
                              if enrichment.generation else None}
        if query_enrichment is not None:
            payload["query_enrichment"] = {
                "expansion": query_enrichment.expansion, "method": query_enrichment.method,
                "before": [h.record.id for h in query_enrichment.before],
                "after": [h.record.id for h in query_enrichment.after]}
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print(markdown)
        if query_enrichment is not None:
            print(f"query expanded with ({query_enrichment.method}): {query_enrichment.expansion or '—'}")
            print("before:", " ".join(h.record.id for h in query_enrichment.before))
            print("after: ", " ".join(h.record.id for h in query_enrichment.after))
    return 0


def cmd_generate(args) -> int:
    from .encoders import create_encoder
    from .generation import GenerationRequest, create_generator
    from .images import open_image

    if (args.prompt is None) == (args.image is None):
        raise UsageError("give either a text prompt or --image PATH")
    settings = _settings(args)
    profile = args.profile or settings.generator
    if (args.minus or args.plus or args.image) and not profile.startswith("lite"):
        raise UsageError(f"the '{profile}' generator takes a text prompt only; --image, --minus and --plus need "
                         "the lite generator, which is conditioned on MIRAGE's joint space")
    out = Path(args.out) if args.out else Path("generated") / time.strftime("%Y%m%d-%H%M%S")
    targets = [out / f"synthetic-{args.seed + i:06d}.png" for i in range(max(args.n, 0))]
    if existing := [path for path in targets if path.exists()]:
        raise UsageError(f"{existing[0]} exists: choose another --out or --seed (nothing is overwritten)")
    encoder = create_encoder(settings.encoder, settings.device) if profile.startswith("lite") else None
    condition, label = (open_image(args.image), f"image {Path(args.image).name}") if args.image else (args.prompt, "")
    if args.minus or args.plus:
        from .arithmetic import compose

        composition = compose(encoder, _parse_term(args.prompt or f"image:{args.image}"),
                              [_parse_term(t) for t in args.minus], [_parse_term(t) for t in args.plus])
        condition, label = composition.result, f"vector: {composition.expression()}"
    request = GenerationRequest(condition, n=args.n, steps=args.steps, guidance=args.guidance, seed=args.seed,
                                sampler=args.sampler, size=args.size, label=label)
    request.check()  # before loading the model: a wrong argument should not cost seconds
    generator = create_generator(profile, encoder, settings.device)
    images = generator.generate(request)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, synthetic in zip(targets, images):
        write_bytes(path, synthetic.png_bytes())
        written.append({"path": str(path), **synthetic.metadata})
    print(json.dumps(written, indent=2) if args.json else "\n".join(f"{w['path']}  ({w['Sampler']}, "
                                                                      f"{w['Seconds']} s)" for w in written))
    return 0


def cmd_train_generator(args) -> int:
    from .config import REPO_ROOT
    from .encoders import create_encoder
    from .generation.training import STAGES, train_generator

    steps = {}
    for item in args.steps:
        stage, _, value = item.partition("=")
        if stage not in STAGES or not value.isdigit():
            raise UsageError(f"--steps takes STAGE=N with STAGE one of {', '.join(STAGES)}, not '{item}'")
        steps[stage] = int(value)
    settings = _settings(args)
    encoder = create_encoder(settings.encoder, settings.device)
    report = train_generator(
        settings.load_corpus(), encoder, Path(args.out) if args.out else REPO_ROOT / "assets" / "lite-generator",
        Path(args.work) if args.work else settings.generator_work_dir(), args.stage or STAGES, steps,
        settings.device, log=lambda line: print(line, file=sys.stderr, flush=True),
        unet_from=Path(args.unet_from) if args.unet_from else None,
    )
    print(json.dumps(report, indent=2) if args.json else f"trained: {json.dumps(report)}")
    return 0


def cmd_quiz(args) -> int:
    from .encoders import create_encoder
    from .quiz import KINDS, QuestionGenerator, make_pack, save_pack
    from .quiz.packs import dump_pack

    if not 1 <= args.n <= 500:
        raise UsageError("--n must be between 1 and 500")
    kinds = [k.strip() for value in (args.type or []) for k in value.split(",") if k.strip()] or None
    settings = _settings(args)
    _check_corpus_exists(args, settings)
    encoder = create_encoder(settings.encoder, settings.device)
    index = _open_index(args, settings, encoder)
    generator = QuestionGenerator(index, encoder, seed=args.seed)
    started = time.perf_counter()
    questions = generator.questions(args.n, kinds or list(KINDS), args.difficulty, args.topic)
    seconds = time.perf_counter() - started
    pack = make_pack(questions, args.title, args.author, str(index.manifest.get("corpus", "")))
    summary = {"questions": len(questions), "rejected": generator.rejected, "attempts": generator.attempts,
               "rejected_share": round(generator.rejected_share, 3),
               "ms_per_question": round(1000 * seconds / len(questions), 2)}
    if args.out:
        path = save_pack(pack, args.out)
        print(json.dumps({**summary, "out": str(path)}, indent=2) if args.json else
              f"{len(questions)} questions written to {path} ({summary['rejected']} candidates rejected by "
              f"validation, {summary['ms_per_question']} ms per question)")
    else:
        print(dump_pack(pack, "json"))
    return 0


def cmd_bench(args) -> int:
    from . import bench
    from .encoders import create_encoder

    settings = _settings(args)
    if args.what in ("generate", "report", "quiz"):
        encoder = create_encoder(settings.encoder, settings.device)
    if args.what == "generate":
        result = bench.bench_generate(encoder, settings, n=args.n or 8, repeats=min(args.repeats, 5))
    elif args.what == "report":
        result = bench.bench_report(_open_index(args, settings, encoder), encoder, settings, n=args.n or 50,
                                    with_llm=not args.no_llm)
    elif args.what == "quiz":
        result = bench.bench_quiz(_open_index(args, settings, encoder), encoder, n=args.n or 250)
    elif args.what == "search":
        result = bench.bench_search(n=args.n or 65536, repeats=args.repeats)
    elif args.what == "startup":
        result = bench.bench_startup(settings)
    else:
        result = bench.bench_build(settings.load_corpus(), n=args.n or 256)
    print(json.dumps(result, indent=2) if args.json else bench.describe(result))
    return 0


COMMANDS = {
    "build-index": cmd_build_index, "search": cmd_search, "arith": cmd_arith, "eval": cmd_eval,
    "train-encoder": cmd_train_encoder, "fetch-roco": cmd_fetch_roco, "quiz": cmd_quiz,
    "report": cmd_report, "generate": cmd_generate, "train-generator": cmd_train_generator,
    "bench": cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except MirageError as error:
        print(f"mirage: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mirage: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
