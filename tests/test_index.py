import json

import numpy as np
import pytest

from mirage_core.backends import top_k
from mirage_core.corpus import Record
from mirage_core.errors import IndexMismatchError, MirageError, QueryError
from mirage_core.index import FORMAT_VERSION, Index, IndexFormatError, load_index, save_index


def _index(n=50, dim=8, seed=0, fingerprint="abc"):
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    modalities = ["CT", "MRI", "X-ray"]
    records = [
        Record(id=f"r{i}", image_path=f"/x/{i}.jpg", caption=f"c{i}", modality=modalities[i % 3],
               licence="CC0" if i % 5 == 0 else "CC BY", keywords=("a", "b"))
        for i in range(n)
    ]
    manifest = {"format_version": FORMAT_VERSION, "encoder": "test", "fingerprint": fingerprint, "dim": dim, "count": n}
    return Index(rows, rows[::-1].copy(), records, manifest)


class _Fingerprinted:
    def __init__(self, fingerprint):
        self.fingerprint, self.name = fingerprint, "other"


def test_top_k_matches_full_sort():
    scores = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    for k in (1, 10, 999, 1000, 5000):
        assert list(top_k(scores, k)) == list(np.argsort(-scores, kind="stable")[: min(k, 1000)])
    assert len(top_k(scores, 0)) == 0


def _brute_force(index, vector, k, bias):
    scores = index.images.astype(np.float64) @ vector.astype(np.float64) - bias
    return list(np.argsort(-scores, kind="stable")[:k])


def test_int8_scan_still_ranks_exactly():
    """The int8 scan only preselects: the ranking is float32's, even for rows closer than int8 can tell."""
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((5000, 64)).astype(np.float32)
    query = rows[0] / np.linalg.norm(rows[0])
    # 40 rows a hair apart around the query: they differ in float32, collide in int8
    rows[1:41] = query + rng.standard_normal((40, 64)).astype(np.float32) * 2e-4
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    bias = (rng.random((2, 5000)) * 1e-4).astype(np.float32)
    records = [Record(id=str(i), image_path="", caption="") for i in range(5000)]
    index = Index(rows, rows, records, {"fingerprint": "f"}, bias=bias)
    scan = index.backend.scan("images")
    assert np.ptp(rows[:41] @ query) < scan.error_bound(query)  # the scan alone could not order them
    for k in (1, 10, 41, 100, 5000, 6000):  # up to the whole index and beyond
        hits = index.search(query, k)
        assert [h.row for h in hits] == _brute_force(index, query, k, bias[0])
        exact_cosines = index.images[[h.row for h in hits]] @ query
        np.testing.assert_allclose([h.score for h in hits], exact_cosines, rtol=0, atol=1e-6)
    for length in (3.0, 1e6):  # not unit length, and far from it
        vector = rng.standard_normal(64).astype(np.float32) * length
        assert [h.row for h in index.search(vector, 10)] == _brute_force(index, vector, 10, bias[0])
    with pytest.raises(QueryError, match="infinite or undefined"):
        index.search(np.full(64, np.nan, dtype=np.float32), 10)


def test_int8_scan_with_filters_and_a_large_bias_matches_brute_force():
    """Filters, and a bias large enough to reorder the cosines, give the exact scan's answer wherever the k best
    fall; the scan's bound keeps few rows for the float32 pass."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((20, 32)).astype(np.float32)
    rows = centres[rng.integers(0, 20, 1500)] + 0.05 * rng.standard_normal((1500, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    bias = (rng.random((2, 1500)) * 0.9).astype(np.float32)
    modalities = ["ct", "mri", "x-ray"]
    records = [Record(id=str(i), image_path="", caption="", modality=modalities[i % 3]) for i in range(1500)]
    index = Index(rows, rows, records, {"fingerprint": "f"}, bias=bias)
    kept = []
    for trial in range(20):
        vector = centres[trial % 20] + 0.1 * rng.standard_normal(32).astype(np.float32)
        for k in (1, 10, 60):
            assert [h.row for h in index.search(vector, k)] == _brute_force(index, vector, k, bias[0])
            hits = index.search(vector, k, modalities=["mri"], exclude=[1, 4])
            allowed = np.array([r.modality == "mri" for r in records]) & ~np.isin(np.arange(1500), [1, 4])
            scores = np.where(allowed, rows.astype(np.float64) @ vector - bias[0], -np.inf)
            assert [h.row for h in hits] == list(np.argsort(-scores, kind="stable")[:k])
        kept.append(len(index.backend.scan("images").candidates(vector, 10, None)))
    assert np.median(kept) < 150  # of 1,500: a preselection, not the whole matrix again


def test_round_trip_and_read_only(tmp_path):
    index = _index()
    save_index(index, tmp_path / "idx")
    loaded = load_index(tmp_path / "idx", _Fingerprinted("abc"))
    np.testing.assert_array_equal(loaded.images, index.images)
    np.testing.assert_array_equal(loaded.captions, index.captions)
    assert loaded.records == index.records and loaded.manifest == index.manifest
    with pytest.raises(ValueError):
        loaded.images[0, 0] = 1.0
    query = index.images[7]
    assert [h.record.id for h in loaded.search(query, 3)] == [h.record.id for h in index.search(query, 3)]
    assert loaded.search(query, 1)[0].record.id == "r7"


def test_encoder_mismatch_is_a_clear_error(tmp_path):
    save_index(_index(), tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="rebuild it"):
        load_index(tmp_path / "idx", _Fingerprinted("xyz"))


def test_filters_and_exclusion():
    index = _index()
    hits = index.search(index.images[0], 50, modalities=["MRI"])
    assert hits and all(h.record.modality == "MRI" for h in hits) and len(hits) == 17
    hits = index.search(index.images[0], 5, licences=["CC0"])
    assert all(h.record.licence == "CC0" for h in hits)
    assert index.search(index.images[0], 5, exclude=[0])[0].record.id != "r0"
    assert index.search(index.images[0], 5, modalities=["PET"]) == []
    caption_hit = index.search(index.captions[3], 1, target="captions")[0]
    assert caption_hit.row == 3


def test_save_replaces_atomically(tmp_path):
    save_index(_index(n=10), tmp_path / "idx")
    save_index(_index(n=20, seed=2), tmp_path / "idx")
    assert len(load_index(tmp_path / "idx")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no staging or retired folders left


def test_failed_save_keeps_the_old_index(tmp_path, monkeypatch):
    save_index(_index(n=10), tmp_path / "idx")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", explode)
    with pytest.raises(OSError):
        save_index(_index(n=20), tmp_path / "idx")
    monkeypatch.undo()
    assert len(load_index(tmp_path / "idx")) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_damaged_or_missing_index(tmp_path):
    with pytest.raises(MirageError, match="no index"):
        load_index(tmp_path / "none")
    save_index(_index(), tmp_path / "idx")
    (tmp_path / "idx" / "images.npy").write_bytes(b"garbage")
    with pytest.raises(MirageError, match="damaged"):
        load_index(tmp_path / "idx")
    save_index(_index(), tmp_path / "idx2")
    manifest = json.loads((tmp_path / "idx2" / "manifest.json").read_text())
    (tmp_path / "idx2" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(IndexFormatError, match="format 99.*rebuild it with `mirage build-index`"):
        load_index(tmp_path / "idx2")


def test_query_of_wrong_dimension():
    with pytest.raises(IndexMismatchError, match="dimensions"):
        _index().search(np.ones(3), 2)


def test_hubness_bias_demotes_an_image_close_to_everything():
    from mirage_core.encoders.base import hubness

    hub, target = np.array([1, 0, 0], np.float32), np.array([0, 1, 0], np.float32)
    bank = np.tile(np.array([0.99, 0.0, 0.141], np.float32), (30, 1))  # the bank crowds around the hub
    images = np.stack([hub, target])
    records = [Record(id="hub", image_path="", caption=""), Record(id="true", image_path="", caption="")]
    query = np.array([0.8, 0.6, 0], np.float32)
    assert Index(images, images, records, {}).search(query, 1)[0].record.id == "hub"
    bias = np.stack([hubness(images, bank), hubness(images, bank)])
    np.testing.assert_allclose(bias[0], [0.99, 0.0], atol=1e-6)
    assert hubness(images, None).tolist() == [0.0, 0.0]
    hit = Index(images, images, records, {}, bias).search(query, 1)[0]
    assert hit.record.id == "true" and abs(hit.score - 0.6) < 1e-6  # ranked by cos − bias, reported as cos
