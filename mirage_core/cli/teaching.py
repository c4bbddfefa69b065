"""`mirage quiz`, `report` and `generate`: what a class is given — packs, grounded reports, synthetic images."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..files import write_bytes, write_text
from ..images import open_image
from .common import (
    UsageError,
    corpus_options,
    encoder_option,
    exactly_one,
    opened,
    parse_term,
    settings_from,
)


def register(commands) -> dict:
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
    corpus_options(quiz)
    encoder_option(quiz)
    quiz.add_argument("--json", action="store_true", help="print the pack (or, with --out, a summary) as JSON")

    report = commands.add_parser("report", help="a grounded report (optionally LLM-enriched) for a text or image")
    report.add_argument("query", nargs="?", help="the text query")
    report.add_argument("--image", metavar="PATH", help="report on an image instead of a text")
    report.add_argument("--k", type=int, default=8, help="cases to ground the report in")
    report.add_argument("--llm", nargs="?", const="", metavar="SPEC",
                        help="also let a language model explain the report ('smollm2' default, 'hf:<id>', or "
                             "'openai:<model>' at MIRAGE_LLM_BASE_URL)")
    report.add_argument("--enrich", action="store_true", help="expand the query and show the re-ranking")
    report.add_argument("--out", metavar="FILE", help="write the report as Markdown")
    report.add_argument("--index", metavar="DIR")
    corpus_options(report)
    encoder_option(report)
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
    encoder_option(generate)
    generate.add_argument("--json", action="store_true")
    return {"quiz": cmd_quiz, "report": cmd_report, "generate": cmd_generate}


def cmd_quiz(args) -> int:
    from ..quiz import KINDS, QuestionGenerator, make_pack, save_pack
    from ..quiz.packs import dump_pack

    if not 1 <= args.n <= 500:
        raise UsageError("--n must be between 1 and 500")
    kinds = [k.strip() for value in (args.type or []) for k in value.split(",") if k.strip()] or None
    _, encoder, index = opened(args)
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


def cmd_report(args) -> int:
    from dataclasses import asdict

    from ..reports import enrich_query, grounded_report

    if not 1 <= args.k <= 50:
        raise UsageError("--k must be between 1 and 50")
    if args.enrich and args.image:
        raise UsageError("--enrich expands a text query's words; an image query has none (drop --enrich)")
    exactly_one(args.query, args.image)
    settings, encoder, index = opened(args)
    query = open_image(args.image) if args.image else args.query
    report = grounded_report(index, encoder, query, k=args.k)
    llm = enrichment = query_enrichment = None
    if args.llm is not None:
        from ..llm import enrich_report, llm_for

        llm = llm_for(settings, args.llm)
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
    from ..encoders import create_encoder
    from ..generation import GenerationRequest, create_generator

    exactly_one(args.prompt, args.image, "prompt")
    settings = settings_from(args)
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
        from ..arithmetic import compose

        composition = compose(encoder, parse_term(args.prompt or f"image:{args.image}"),
                              [parse_term(t) for t in args.minus], [parse_term(t) for t in args.plus])
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
