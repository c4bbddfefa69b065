"""What a dashboard user waits for: a fresh process importing Streamlit and MIRAGE, loading the encoder and a
built index, up to the first retrieval result; then warm text and dual searches; and its peak memory."""

from __future__ import annotations

import dataclasses

from . import QUERIES, BenchResult


@dataclasses.dataclass
class StartupResult(BenchResult):
    cold_start_to_first_result_s: float
    warm_text_search_p50_ms: float
    warm_dual_search_p50_ms: float
    images: int
    peak_rss_mb: float
    resident_now_mb: dict


_STARTUP_PROBE = """
import json, sys, time
started = time.perf_counter()
import streamlit  # noqa: F401  (the app imports it before anything else)
from mirage_core.arithmetic import Term, dual_search
from mirage_core.config import load_settings
from mirage_core.encoders import create_encoder
from mirage_core.index import load_index
from mirage_core.bench import peak_rss_mib, resident_split_mib
from mirage_core.search import search_text
settings = load_settings()
encoder = create_encoder(settings.encoder, settings.device)
index = load_index(settings.index_dir(encoder.fingerprint), encoder)
search_text(index, encoder, "chest x-ray pneumothorax", 12)
cold = time.perf_counter() - started
def timed(run, n=20):
    samples = []
    for i in range(n):
        t = time.perf_counter(); run(i); samples.append((time.perf_counter() - t) * 1000)
    return sorted(samples)[n // 2]
queries = sys.argv[1:]
text_ms = timed(lambda i: search_text(index, encoder, queries[i % len(queries)], 12))
dual_ms = timed(lambda i: dual_search(index, encoder, Term(queries[i % len(queries)]), [Term("bones")],
                                      [Term("soft tissue")], k=8))
print(json.dumps({"cold_start_to_first_result_s": round(cold, 2), "warm_text_search_p50_ms": round(text_ms, 1),
                  "warm_dual_search_p50_ms": round(dual_ms, 1), "images": len(index),
                  "peak_rss_mb": round(peak_rss_mib()),
                  "resident_now_mb": resident_split_mib()}))
"""


def bench_startup(settings) -> StartupResult:
    """Cold start to first result in a fresh process (index already built), warm latencies, peak RSS."""
    import dataclasses
    import json
    import os
    import subprocess
    import sys

    from ..encoders import create_encoder
    from ..startup import open_or_build_index

    encoder = create_encoder(settings.encoder, settings.device)
    open_or_build_index(settings.index_dir(encoder.fingerprint), encoder, settings.load_corpus,
                        backend=settings.index)
    del encoder
    env = {**os.environ, **{f"MIRAGE_{k.upper()}": str(v) for k, v in dataclasses.asdict(settings).items()}}
    done = subprocess.run([sys.executable, "-c", _STARTUP_PROBE, *QUERIES], capture_output=True, text=True,
                          check=True, env=env)
    return StartupResult(**json.loads(done.stdout.strip().splitlines()[-1]))
