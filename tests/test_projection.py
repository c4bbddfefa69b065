import numpy as np
import pytest

from mirage_core.arithmetic import combine, walk
from mirage_core.corpus import Record
from mirage_core.index import Index
from mirage_core.projection import fit_projection, picture_of


def _index(n=200, dim=16, gap=3.0):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((n, dim)).astype(np.float32)
    captions = images + 0.1 * rng.standard_normal((n, dim)).astype(np.float32)
    images[:, 0] += gap  # a modality gap along the first axis
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    return Index(images, captions, [Record(id=f"r{i}", image_path="", caption="") for i in range(n)], {})


def test_centring_each_modality_removes_the_gap():
    index = _index()
    projection = fit_projection(index, sample_size=100)
    assert len(projection.sample_rows) == 100
    first, second = projection.explained_variance
    assert 0 < second <= first < 1
    # with each modality centred, paired image and caption land close together
    distance = np.linalg.norm(projection.sample_images - projection.sample_captions, axis=1).mean()
    spread = np.linalg.norm(projection.sample_images - projection.sample_images.mean(0), axis=1).mean()
    assert distance < spread


def test_picture_of_a_composition():
    index = _index()
    projection = fit_projection(index)
    composition = combine(index.captions[0], [(index.captions[1], 1.0, "b")], [(index.captions[2], 0.5, "c")])
    hits = index.search(composition.result, 5)
    picture = picture_of(projection, composition, hits, index)
    assert picture.path_labels == ["query", "− b", "+ c", "result"]
    assert picture.path_points.shape == (4, 2) and picture.hit_points.shape == (5, 2)
    assert picture.hit_labels == [h.record.id for h in hits]


def test_walk_interpolates_on_the_sphere():
    a, b = np.array([1, 0, 0], np.float32), np.array([0, 1, 0], np.float32)
    np.testing.assert_allclose(walk(a, b, 0.0), a, atol=1e-6)
    np.testing.assert_allclose(walk(a, b, 1.0), b, atol=1e-6)
    middle = walk(a, b, 0.5)
    np.testing.assert_allclose(middle, [np.sqrt(0.5), np.sqrt(0.5), 0], atol=1e-6)
    np.testing.assert_allclose(walk(a, a, 0.3), a, atol=1e-6)
    assert walk(a, b, 0.25) @ a == pytest.approx(np.cos(np.pi / 8), abs=1e-6)
