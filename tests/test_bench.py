"""The benchmark commands run and report what they promise (speed itself is measured, not asserted)."""

import mmap

import numpy as np

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


def test_modality_yardstick_votes_among_known_neighbours():
    vectors = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2]]  # two CT rows, two MRI rows, one unlabelled row
    yardstick = bench.ModalityYardstick(vectors, ["ct", "ct", "mri", "mri", "unknown"], k=3)
    assert yardstick(np.array([1, 0, 0.1, 0], dtype=np.float32)) == "ct"  # ct, ct, then one mri
    assert yardstick(np.array([0, 0.1, 1, 0], dtype=np.float32)) == "mri"  # the unlabelled row has no vote
    excluded = np.array([True, True, False, False, False])
    assert yardstick(np.array([1, 0, 0, 0], dtype=np.float32), excluded) == "mri"
    assert bench.ModalityYardstick(vectors[4:], ["unknown"], k=3)(vectors[4]) == "unknown"


def test_resident_memory_is_split_into_own_data_and_mapped_files():
    before = bench.resident_split_mib()
    assert before["anonymous"] > 0 and before["file_backed"] > 0  # Linux: this process holds both
    # 64 MiB of the process's own data, in pages fresh from the kernel (a heap allocation could land in memory
    # that earlier tests freed but the allocator kept resident)
    ballast = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    np.frombuffer(ballast, dtype=np.uint8)[:] = 1
    after = bench.resident_split_mib()
    assert after["anonymous"] - before["anonymous"] >= 60 and abs(after["file_backed"] - before["file_backed"]) < 60
    ballast.close()
