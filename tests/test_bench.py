"""The benchmark commands run and report what they promise (speed itself is measured, not asserted)."""

import mmap

import numpy as np
import pytest

from mirage_core import bench
from mirage_core.bench.build import bench_build
from mirage_core.bench.generate import ModalityYardstick
from mirage_core.bench.load import bench_load
from mirage_core.bench.quiz import bench_quiz
from mirage_core.bench.search import bench_search
from mirage_core.corpus import Corpus


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_bench_search_reports_latency_and_recall(lite_encoder, backend):
    result = bench_search(n=4096, repeats=5, backend=backend, encoder=lite_encoder, baseline=False)
    assert result.n == 4096 and result.backend == backend
    assert 0 < result.p50_ms <= result.p95_ms and result.rss_mib > 0
    assert result.recall_at_10 == 1.0 if backend == "exact" else result.recall_at_10 >= 0.9
    assert set(result.to_dict()) >= {"backend", "n", "p50_ms", "p95_ms", "recall_at_10", "build_s", "rss_mib"}
    assert "p50" in result.describe() and "back to back" in result.describe()
    assert result.back_to_back_p50_ms > 0 and 0 < result.dense_p50_ms <= result.dense_p95_ms
    assert result.bytes_per_image["meaning vectors (float32)"] == 4 * lite_encoder.encode_sentences(["x"]).shape[1]
    assert result.bytes_per_image["BM25 postings"] > 0 and "hybrid" in result.describe()


def test_bench_search_pgvector(lite_encoder, postgres_url):
    result = bench_search(n=2000, repeats=3, backend="pgvector", encoder=lite_encoder, baseline=False,
                          database_url=postgres_url)
    assert result.recall_at_10 >= 0.9 and result.build_s > 0


def test_interleaved_runs_variants_in_turn():
    order = []
    samples = bench.interleaved({"a": lambda i: order.append("a"), "b": lambda i: order.append("b")}, 3, warm=1)
    assert order == ["a", "b"] * 4 and all(len(v) == 3 for v in samples.values())


def test_bench_build_reports_throughput(lite_encoder, demo_slice):
    result = bench_build(Corpus("slice", demo_slice.records), n=16, encoder=lite_encoder)
    assert result.images == 16 and result.images_per_s > 0
    assert "images/s" in result.describe()


def test_bench_quiz_reports_time_and_rejections(lite_encoder, lite_index_dir):
    from mirage_core.index import load_index

    result = bench_quiz(load_index(lite_index_dir), lite_encoder, n=5)
    for values in (result.easy, result.medium, result.hard):
        assert values["ms_per_question"] > 0 and 0 <= values["rejected_share"] < 1
        assert values["attempts"] >= 5
    assert "rejected" in result.describe()


def test_bench_load_stores_every_acknowledged_answer(lite_encoder, lite_index_dir):
    from mirage_core.generation import create_generator
    from mirage_core.index import load_index

    result = bench_load(load_index(lite_index_dir), lite_encoder, create_generator("lite", lite_encoder),
                        sessions=3, searches=2, answers=2)
    assert result.errors == 0, result.error_examples
    assert result.answers_acknowledged == result.answers_stored == 6
    assert result.actions["generation"]["n"] == 3 and result.actions["search"]["n"] == 6


def test_modality_yardstick_votes_among_known_neighbours():
    vectors = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2]]  # two CT rows, two MRI rows, one unlabelled row
    yardstick = ModalityYardstick(vectors, ["ct", "ct", "mri", "mri", "unknown"], k=3)
    assert yardstick(np.array([1, 0, 0.1, 0], dtype=np.float32)) == "ct"  # ct, ct, then one mri
    assert yardstick(np.array([0, 0.1, 1, 0], dtype=np.float32)) == "mri"  # the unlabelled row has no vote
    excluded = np.array([True, True, False, False, False])
    assert yardstick(np.array([1, 0, 0, 0], dtype=np.float32), excluded) == "mri"
    assert ModalityYardstick(vectors[4:], ["unknown"], k=3)(vectors[4]) == "unknown"


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


def test_bench_tour_visits_every_page_on_a_fresh_home(tmp_path, demo_corpus):
    from helpers import write_csv_slice

    from mirage_core.bench.tour import bench_tour
    from mirage_core.config import Settings

    corpus = write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:40])
    result = bench_tour(Settings(corpus=str(corpus)))
    assert result.errors == 0 and result.peak_rss_mib > 0
    assert 0 < result.first_start_s <= result.first_result_s <= result.tour_s
    assert "MiB" in result.describe()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_bench_class_loses_no_answer_while_the_dashboard_refreshes(lite_encoder, lite_index_dir, engine, request):
    from mirage_core.bench.classes import bench_class
    from mirage_core.index import load_index

    database = request.getfixturevalue("postgres_url") if engine == "postgresql" else None
    result = bench_class(load_index(lite_index_dir, lite_encoder), lite_encoder, students=5, answers=4,
                         database=database)
    assert result.errors == 0 and result.lost == 0 and result.acknowledged == 5 * result.answers_each
    assert result.dashboard_refreshes >= 1 and result.dashboard_p95_ms >= result.dashboard_p50_ms > 0
    assert "lost" in result.describe()


def test_bench_findings_reports_every_path_and_tunes_the_combiner(lite_encoder):
    from mirage_core.bench.findings import PATHS, bench_findings
    from mirage_core.corpus import Record
    from mirage_core.index import Index

    cases = [("Axial CT shows a simple renal cyst", "CT"), ("Contrast CT: large cyst of the left kidney", "CT"),
             ("Chest radiograph with a right pneumothorax", "X-Ray"), ("Tension pneumothorax on chest film", "X-Ray"),
             ("CT of the abdomen with liver metastases", "CT"), ("Multiple hepatic metastases on CT", "CT"),
             ("Femur fracture on plain film", "X-Ray"), ("Displaced fracture of the femoral shaft", "X-Ray"),
             ("Normal chest radiograph", "X-Ray"), ("Unremarkable brain MRI", "MRI"), ("Normal abdominal CT", "CT")]
    records = [Record(id=f"r{i}", image_path="", caption=f"{caption} (case {i})", modality=modality)
               for i, (caption, modality) in enumerate(cases * 4)]
    captions = lite_encoder.encode_text([r.caption for r in records])
    rng = np.random.default_rng(0)
    images = captions + 0.5 * rng.standard_normal(captions.shape).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    sentences = lite_encoder.encode_sentences([r.caption for r in records])
    index = Index(images.astype(np.float32), captions, records, {"corpus": "planted"}, sentences=sentences)
    result = bench_findings(index, lite_encoder, [(index, lite_encoder)])
    assert result.queries >= 2 and set(result.precision) == set(PATHS)  # "CT liver metastases", "CT kidney cyst"
    assert all(0.0 <= figures["all"] <= 1.0 for figures in result.precision.values())
    assert result.precision["fused"]["all"] >= 0.75  # the captions name every finding: fusion must find them
    assert all(row["answers"] >= 3 and all(path in row for path in PATHS) for row in result.per_query)
    tuning = result.tuning
    assert tuning["queries"] >= 2 and 0.0 <= tuning["cv_precision"] <= 1.0
    assert all(w >= 0 for w in tuning["chosen"]["weights"].values()) and "tuning:" in result.describe()
