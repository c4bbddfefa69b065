"""Index backends behind one interface: exact scan, FAISS and pgvector (a real PostgreSQL) give the same hits
for the same queries, filters stay exact, and replicas share one corpus through the database."""

from __future__ import annotations

import numpy as np
import pytest

from mirage_core.backends import FaissSearch, PgVectorSearch, backend_kind, faiss_for, upload_index
from mirage_core.corpus import Record
from mirage_core.errors import MirageError
from mirage_core.index import FORMAT_VERSION, Index, load_index, save_index
from mirage_core.startup import download_index, open_or_build_index

MODALITIES = ["CT", "MRI", "X-ray", "ultrasound"]


def clustered_index(n: int = 3000, dim: int = 64, seed: int = 0) -> Index:
    """Rows around 40 centres (as real embeddings cluster), four modalities, a small hubness bias."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    rows = centres[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    captions = rows + 0.15 * rng.standard_normal((n, dim)).astype(np.float32)
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    sentences = rows[:, ::-1] + 0.15 * rng.standard_normal((n, dim)).astype(np.float32)  # another space
    sentences /= np.linalg.norm(sentences, axis=1, keepdims=True)
    records = [Record(id=f"r{i}", image_path="", caption=f"case {i}", modality=MODALITIES[i % 4],
                      licence="CC BY" if i % 3 else "CC0") for i in range(n)]
    bias = (0.02 * rng.random((2, n))).astype(np.float32)
    manifest = {"fingerprint": "synthetic", "encoder": "synthetic", "format_version": FORMAT_VERSION}
    return Index(rows, captions, records, manifest, bias, sentences=sentences)


def queries(index: Index, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(1)
    picked = index.captions[rng.choice(len(index), n, replace=False)]
    noisy = picked + 0.3 * rng.standard_normal(picked.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def recall(index: Index, other: Index, target: str = "images", **filters) -> float:
    found = total = 0
    for vector in queries(index):
        exact = {h.record.id for h in index.search(vector, 10, target=target, **filters)}
        approx = {h.record.id for h in other.search(vector, 10, target=target, **filters)}
        found, total = found + len(exact & approx), total + len(exact)
    return found / total


def test_backend_names_are_checked():
    assert backend_kind("") == "exact" and backend_kind("faiss") == "faiss"
    assert backend_kind("postgresql://u@h/db") == "postgresql"
    with pytest.raises(MirageError, match="MIRAGE_INDEX"):
        backend_kind("annoy")


def test_faiss_recall_filters_and_reload(tmp_path):
    exact = clustered_index()
    folder = save_index(exact, tmp_path / "index")
    ann = load_index(folder)
    ann = ann.using(faiss_for(ann, folder))
    assert isinstance(ann.backend, FaissSearch) and (folder / "faiss-images.index").exists()
    assert recall(exact, ann) >= 0.95 and recall(exact, ann, target="captions") >= 0.95
    assert recall(exact, ann, target="sentences") >= 0.95  # the captions' meaning vectors have their own index
    filtered = ann.search(queries(exact)[0], 10, modalities=["MRI"], licences=["CC0"])
    assert len(filtered) == 10 and all(h.record.modality == "MRI" and h.record.licence == "CC0" for h in filtered)
    assert recall(exact, ann, modalities=["MRI"], licences=["CC0"]) >= 0.9
    again = load_index(folder)
    again = again.using(faiss_for(again, folder))  # loads the saved FAISS files, builds nothing
    vector = queries(exact)[3]
    assert [h.record.id for h in again.search(vector, 10)] == [h.record.id for h in ann.search(vector, 10)]


def test_a_damaged_faiss_file_is_a_clear_error(tmp_path):
    folder = save_index(clustered_index(500), tmp_path / "index")
    faiss_for(load_index(folder), folder)
    (folder / "faiss-images.index").write_bytes(b"not faiss")
    with pytest.raises(MirageError, match="FAISS index .* is damaged"):
        faiss_for(load_index(folder), folder)


def test_pgvector_gives_the_exact_hits_and_filters(postgres_url):
    exact = clustered_index(1500)
    upload_index(exact, postgres_url, "corpus-a")
    shared = download_index(postgres_url, "corpus-a")
    assert isinstance(shared.backend, PgVectorSearch) and len(shared) == len(exact)
    assert [r.id for r in shared.records] == [r.id for r in exact.records]
    assert recall(exact, shared) >= 0.95 and recall(exact, shared, target="sentences") >= 0.95
    hits = shared.search(queries(exact)[0], 10, modalities=["CT"])
    assert len(hits) == 10 and all(h.record.modality == "CT" for h in hits)
    assert recall(exact, shared, modalities=["CT"]) >= 0.95
    best = exact.search(queries(exact)[5], 1)[0]
    assert abs(shared.search(queries(exact)[5], 1)[0].score - best.score) < 1e-5  # cosines, not distances
    assert download_index(postgres_url, "corpus-b") is None


def test_replicas_share_one_corpus_through_postgresql(tmp_path, postgres_url, lite_encoder, demo_slice):
    first = open_or_build_index(tmp_path / "replica-1" / "idx", lite_encoder, lambda: demo_slice,
                                backend=postgres_url)

    def no_corpus():
        raise AssertionError("a second replica must not embed the corpus again")

    second = open_or_build_index(tmp_path / "replica-2" / "idx", lite_encoder, no_corpus, backend=postgres_url)
    assert not (tmp_path / "replica-2").exists()  # nothing local: the corpus came from the database
    vector = lite_encoder.encode_text(["chest x-ray"])[0]
    assert [h.record.id for h in second.search(vector, 5)] == [h.record.id for h in first.search(vector, 5)]
    from mirage_core.search import search_text

    assert second.sentences is not None  # the captions' meaning vectors travel through the database too
    for query in ("chest x-ray", "fluid around the lung"):  # a replica on PostgreSQL searches hybrid, the same
        assert [h.record.id for h in search_text(second, lite_encoder, query, 5)] == [
            h.record.id for h in search_text(first, lite_encoder, query, 5)]


def test_hybrid_search_through_faiss_matches_the_exact_scan(lite_index_dir, lite_encoder, tmp_path):
    import shutil

    from mirage_core.search import search_text

    folder = tmp_path / "index"
    shutil.copytree(lite_index_dir, folder)
    exact = load_index(folder)
    ann = exact.using(faiss_for(exact, folder))
    assert (folder / "faiss-sentences.index").exists()
    for query in ("chest x-ray", "ct of the abdomen", "blocked bowel"):
        assert [h.record.id for h in search_text(ann, lite_encoder, query, 5)] == [
            h.record.id for h in search_text(exact, lite_encoder, query, 5)]
