"""Grounded reports: modality agreement on held-out captions, latency; a language model's load and speed."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..index import Index
from . import BenchResult


@dataclasses.dataclass
class ReportResult(BenchResult):
    n: int
    modality_agreement: float
    modality_uncertain: float
    report_ms_p50: float
    llm: dict | None = None


def bench_report(index: Index, encoder, settings, n: int = 50, with_llm: bool = True, llm_reports: int = 3
                 ) -> ReportResult:
    """Modality agreement of grounded reports on held-out captions, report latency, LLM load and speed.

    Each of the first n held-out records with a known modality queries the index with its caption, its own
    article left out; the report's modality is compared with the record's label."""
    from ..reports import grounded_report
    from ..splits import split_records

    _, heldout = split_records(index.records)
    cases = [r for r in heldout if r.modality != "unknown"][:n]
    agree = uncertain = 0
    samples, reports = [], []
    for record in cases:
        same_article = [i for i, other in enumerate(index.records) if other.pmc_id == record.pmc_id]
        started = time.perf_counter()
        report = grounded_report(index, encoder, record.caption, exclude=same_article)
        samples.append((time.perf_counter() - started) * 1000)
        agree += report.modality_label == record.modality
        uncertain += report.modality_label == "unknown"
        reports.append(report)
    result = ReportResult(n=len(cases), modality_agreement=round(agree / max(len(cases), 1), 3),
                          modality_uncertain=round(uncertain / max(len(cases), 1), 3),
                          report_ms_p50=round(float(np.percentile(samples, 50)), 1))
    if with_llm:
        from ..llm import enrich_report, llm_for

        spec = settings.llm or "smollm2"
        llm = llm_for(settings, spec)
        figures = {"model": spec, "load_s": round(llm.load_seconds, 2)}
        runs = []
        for report in reports[:llm_reports]:
            started = time.perf_counter()
            enrichment = enrich_report(llm, report)
            runs.append((time.perf_counter() - started, enrichment))
        generations = [e.generation for _, e in runs if e.generation]
        tokens = sum(g.new_tokens for g in generations)
        figures["tokens_per_s"] = round(tokens / max(sum(g.seconds for g in generations), 1e-9), 2)
        with_llm = float(np.mean([s for s, _ in runs])) + result.report_ms_p50 / 1000
        figures["report_with_llm_s_mean"] = round(with_llm, 2)
        figures["accepted"] = sum(e.accepted for _, e in runs)
        figures["reports"] = len(runs)
        result.llm = figures
    return result
