"""`mirage build-index`, `search`, `arith` and `eval`: the index and what is asked of it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..files import check_writable
from ..images import open_image
from .common import (
    check_modalities,
    corpus_options,
    encoder_option,
    exactly_one,
    hit_dict,
    opened,
    parse_term,
    print_hits,
    progress_bar,
    settings_from,
)


def register(commands) -> dict:
    build = commands.add_parser("build-index", help="embed a corpus into an index folder")
    corpus_options(build)
    encoder_option(build)
    build.add_argument("--out", metavar="DIR", help="index folder (default: under MIRAGE_HOME, keyed by model+corpus)")
    build.add_argument("--json", action="store_true", help="print the manifest as JSON")

    search = commands.add_parser("search", help="find images (or captions) for a text or an image")
    search.add_argument("query", nargs="?", help="the text query")
    search.add_argument("--image", metavar="PATH", help="query with an image instead of text")
    search.add_argument("--captions", action="store_true", help="return captions instead of images")
    search.add_argument("--k", type=int, default=10)
    search.add_argument("--modality", action="append", help="keep only this modality (repeatable)")
    search.add_argument("--index", metavar="DIR", help="an index folder built by build-index")
    corpus_options(search)
    encoder_option(search)
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
    corpus_options(arith)
    encoder_option(arith)
    arith.add_argument("--json", action="store_true")

    evaluate = commands.add_parser("eval", help="text→image and image→text recall on a corpus")
    corpus_options(evaluate, required=True)
    encoder_option(evaluate)
    evaluate.add_argument("--heldout", action="store_true", help="only the deterministic held-out 20%% split")
    evaluate.add_argument("--json", action="store_true")
    return {"build-index": cmd_build_index, "search": cmd_search, "arith": cmd_arith, "eval": cmd_eval}


def cmd_build_index(args) -> int:
    from ..encoders import create_encoder
    from ..index import build_index, save_index

    settings = settings_from(args)
    corpus = settings.load_corpus()
    encoder = create_encoder(settings.encoder, settings.device)
    folder = Path(args.out or settings.index_dir(encoder.fingerprint))
    check_writable(folder.parent, "the index folder")
    index = build_index(corpus, encoder, progress=progress_bar("embedding corpus"))
    folder = save_index(index, folder)
    manifest = {**index.manifest, "path": str(folder)}
    print(json.dumps(manifest, indent=2) if args.json else f"index of {manifest['count']} images written to {folder}")
    return 0


def cmd_search(args) -> int:
    from ..relevance import assess
    from ..search import search_image, search_text

    exactly_one(args.query, args.image)
    check_modalities(args.modality)
    _, encoder, index = opened(args)
    target = "captions" if args.captions else "images"
    if args.image is not None:
        hits = search_image(index, encoder, open_image(args.image), args.k, target=target, modalities=args.modality)
    else:
        hits = search_text(index, encoder, args.query, args.k, modalities=args.modality)
    verdict = assess(index, hits, args.query, "image" if args.image else "text", target)
    print_hits(hits, args.json, {"query": args.query or args.image, "relevance": {
        "level": verdict.level, "best": round(verdict.best, 4) if hits else None, "floor": round(verdict.floor, 4),
        "reason": verdict.reason}})
    if not verdict.relevant and not args.json:
        print(f"note: {verdict.reason}", file=sys.stderr)
    return 0


def cmd_arith(args) -> int:
    from ..arithmetic import dual_search

    _, encoder, index = opened(args)
    result = dual_search(
        index, encoder, parse_term(args.query), [parse_term(t) for t in args.minus],
        [parse_term(t) for t in args.plus], k=args.k,
    )
    if args.json:
        print(json.dumps({
            "query": args.query, "minus": args.minus, "plus": args.plus,
            "original": [hit_dict(h) for h in result.original],
            "results": [hit_dict(h) for h in result.modified],
            "vectors": {label: [round(float(x), 5) for x in vector] for label, vector in result.composition.path()},
        }, ensure_ascii=False, indent=2))
    else:
        print("original query:")
        print_hits(result.original, False)
        print("after arithmetic:")
        print_hits(result.modified, False)
    return 0


def cmd_eval(args) -> int:
    from ..encoders import create_encoder
    from ..evaluation import evaluate_corpus

    settings = settings_from(args)
    corpus = settings.load_corpus()
    encoder = create_encoder(settings.encoder, settings.device)
    metrics = evaluate_corpus(corpus, encoder, heldout_only=args.heldout,
                              progress=progress_bar("embedding"))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"n = {metrics['n']}")
        for direction in ("t2i", "i2t"):
            values = metrics[direction]
            print(f"{direction}: R@1 {values['R@1']:.1f}  R@5 {values['R@5']:.1f}  R@10 {values['R@10']:.1f}  "
                  f"median rank {values['median_rank']:g}")
    return 0
