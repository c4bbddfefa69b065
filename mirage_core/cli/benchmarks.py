"""`mirage bench …`: the figures quoted in issues and model cards (see `mirage_core.bench`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import UsageError, corpus_options, opened, settings_from

BENCHMARKS = ("search", "build", "startup", "quiz", "report", "generate", "tour", "load", "relevance", "findings",
              "arithmetic", "class")


def register(commands) -> dict:
    bench = commands.add_parser("bench", help="measure: " + ", ".join(BENCHMARKS))
    bench.add_argument("what", choices=BENCHMARKS)
    bench.add_argument("--n", type=int, help="vectors in the index (search), images to embed (build), cases "
                                             "(report), questions (quiz) or images per run (generate)")
    bench.add_argument("--repeats", type=int, default=50, help="timed queries (search) or runs (generate)")
    bench.add_argument("--backend", default="exact", help="search: exact, faiss or pgvector (needs --database)")
    bench.add_argument("--database", metavar="URL",
                       help="search --backend pgvector, load, class: a postgresql:// database (default: SQLite)")
    bench.add_argument("--sessions", type=int, default=8, help="load: concurrent sessions")
    bench.add_argument("--students", type=int, default=30, help="class: students of one class answering at once")
    bench.add_argument("--bundle", metavar="PATH_OR_URL", help="tour: start from this corpus bundle")
    bench.add_argument("--no-llm", action="store_true", help="report: skip the language model")
    bench.add_argument("--sizes", action="store_true",
                       help="generate: the lite generator (MIRAGE_GENERATOR) at each size it draws, side by side (a "
                            "grown one: its own and its source's); --n held-out captions for fidelity")
    bench.add_argument("--tune", action="store_true",
                       help="findings: also fit the fusion's combiner on the tuning queries (cross-validated there)")
    bench.add_argument("--weights-dir", metavar="DIR",
                       help="findings: measure with lite heads trained without the measured cases (trained into DIR "
                            "on first use: the corpus' training split; for --tune, each training fold's complement)")
    corpus_options(bench)
    bench.add_argument("--json", action="store_true")
    return {"bench": cmd_bench}


def cmd_bench(args) -> int:

    settings = settings_from(args)
    if args.what == "search":
        from ..bench.search import bench_search

        if args.backend not in ("exact", "faiss", "pgvector"):
            raise UsageError(f"--backend must be exact, faiss or pgvector, not '{args.backend}'")
        result = bench_search(n=args.n or 65536, repeats=args.repeats, backend=args.backend,
                              database_url=args.database, captions=_corpus_captions(settings))
    elif args.what == "build":
        from ..bench.build import bench_build

        result = bench_build(settings.load_corpus(), n=args.n or 256)
    elif args.what == "startup":
        from ..bench.startup import bench_startup

        result = bench_startup(settings)
    elif args.what == "tour":
        from ..bench.tour import bench_tour

        result = bench_tour(settings, bundle=args.bundle or "")
    elif args.what == "findings" and args.weights_dir:
        from ..bench.findings import bench_findings, honest_indexes

        honest = honest_indexes(settings.load_corpus(), Path(args.weights_dir), Path(settings.home) / "cache",
                                args.tune, log=lambda line: print(line, file=sys.stderr, flush=True))
        result = bench_findings(*honest)
    else:
        settings, encoder, index = opened(args)
        if args.what == "relevance":
            from ..bench.relevance import bench_relevance

            result = bench_relevance(index, encoder, n=args.n or 300)
        elif args.what == "findings":
            from ..bench.findings import bench_findings

            result = bench_findings(index, encoder, [(index, encoder)] if args.tune else None)
        elif args.what == "arithmetic":
            from ..bench.arithmetic import bench_arithmetic

            result = bench_arithmetic(index, encoder)
        elif args.what == "class":
            from ..bench.classes import bench_class

            if not 1 <= args.students <= 200:
                raise UsageError("--students must be between 1 and 200")
            result = bench_class(index, encoder, students=args.students, database=args.database)
        elif args.what == "quiz":
            from ..bench.quiz import bench_quiz

            result = bench_quiz(index, encoder, n=args.n or 250)
        elif args.what == "report":
            from ..bench.report import bench_report

            result = bench_report(index, encoder, settings, n=args.n or 50, with_llm=not args.no_llm)
        elif args.what == "generate" and args.sizes:
            from ..bench.generate import bench_sizes

            kind, _, folder = settings.generator.partition(":")
            if kind != "lite":
                raise UsageError("--sizes measures a lite generator: MIRAGE_GENERATOR=lite or lite:FOLDER")
            result = bench_sizes(encoder, settings, folder or None, fidelity=args.n or 100,
                                 repeats=min(args.repeats, 5))
        elif args.what == "generate":
            from ..bench.generate import bench_generate

            result = bench_generate(encoder, settings, n=args.n or 8, repeats=min(args.repeats, 5))
        else:
            from ..bench.load import bench_load
            from ..generation import create_generator

            if not 1 <= args.sessions <= 64:
                raise UsageError("--sessions must be between 1 and 64")
            generator = create_generator(settings.generator, encoder, settings.device)
            result = bench_load(index, encoder, generator, sessions=args.sessions, database=args.database)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.describe())
    return 0


def _corpus_captions(settings) -> list[str] | None:
    """The configured corpus' captions, for the benchmark's rows; None (the benchmark's own queries) without one."""
    from ..errors import MirageError

    try:
        return [record.caption for record in settings.load_corpus().records] or None
    except MirageError as error:
        print(f"note: no corpus captions ({error}); the rows repeat the benchmark's queries", file=sys.stderr)
        return None
