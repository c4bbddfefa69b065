"""`mirage bench …`: the figures quoted in issues and model cards (see `mirage_core.bench`)."""

from __future__ import annotations

import json

from .common import (
    corpus_options,
    open_index,
    settings_from,
)


def register(commands) -> dict:
    bench = commands.add_parser("bench", help="timings: search latency, index build throughput, quiz generation")
    bench.add_argument("what", choices=["search", "build", "startup", "quiz", "report", "generate"])
    bench.add_argument("--no-llm", action="store_true", help="bench report: skip the language model")
    bench.add_argument("--n", type=int, help="vectors in the index (search) or images to embed (build)")
    bench.add_argument("--repeats", type=int, default=50)
    corpus_options(bench)
    bench.add_argument("--json", action="store_true")
    return {"bench": cmd_bench}


def cmd_bench(args) -> int:
    from .. import bench
    from ..encoders import create_encoder

    settings = settings_from(args)
    if args.what in ("generate", "report", "quiz"):
        encoder = create_encoder(settings.encoder, settings.device)
    if args.what == "generate":
        result = bench.bench_generate(encoder, settings, n=args.n or 8, repeats=min(args.repeats, 5))
    elif args.what == "report":
        result = bench.bench_report(open_index(args, settings, encoder), encoder, settings, n=args.n or 50,
                                    with_llm=not args.no_llm)
    elif args.what == "quiz":
        result = bench.bench_quiz(open_index(args, settings, encoder), encoder, n=args.n or 250)
    elif args.what == "search":
        result = bench.bench_search(n=args.n or 65536, repeats=args.repeats)
    elif args.what == "startup":
        result = bench.bench_startup(settings)
    else:
        result = bench.bench_build(settings.load_corpus(), n=args.n or 256)
    print(json.dumps(result, indent=2) if args.json else bench.describe(result))
    return 0
