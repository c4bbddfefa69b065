"""The benchmark commands run and report what they promise (speed itself is measured, not asserted)."""

from mirage_core import bench
from mirage_core.corpus import Corpus


def test_bench_search_reports_percentiles(lite_encoder):
    result = bench.bench_search(n=2048, repeats=5, encoder=lite_encoder, baseline=False)
    assert result["n"] == 2048 and result["mirage"]["dim"] == lite_encoder.dim
    assert 0 < result["mirage"]["p50_ms"] <= result["mirage"]["p95_ms"]
    assert "p50" in bench.describe(result)


def test_bench_build_reports_throughput(lite_encoder, demo_slice):
    result = bench.bench_build(Corpus("slice", demo_slice.records), n=16, encoder=lite_encoder)
    assert result["images"] == 16 and result["images_per_s"] > 0
    assert "images/s" in bench.describe(result)


def test_bench_quiz_reports_time_and_rejections(lite_encoder, demo_slice):
    from mirage_core.index import build_index

    index = build_index(Corpus("slice", demo_slice.records), lite_encoder)
    result = bench.bench_quiz(index, lite_encoder, n=5)
    for difficulty in ("easy", "medium", "hard"):
        assert result[difficulty]["ms_per_question"] > 0 and 0 <= result[difficulty]["rejected_share"] < 1
        assert result[difficulty]["attempts"] >= 5
    assert "rejected" in bench.describe(result)
