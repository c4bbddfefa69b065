from collections import Counter

import numpy as np
import pytest

from mirage_core.arithmetic import combine, walk
from mirage_core.corpus import Record
from mirage_core.index import Index
from mirage_core.projection import PLOT_PX, fit_projection, picture_of, place_labels, to_pixels


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


def _boxes(points, texts, placed, x_range, y_range):
    anchors = to_pixels(points, x_range, y_range)
    return [(a[0] + p.dx - p.width / 2, a[1] + p.dy - p.height / 2, a[0] + p.dx + p.width / 2,
             a[1] + p.dy + p.height / 2) for a, p in zip(anchors, placed)]


def _overlap(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_labels_of_piled_up_points_never_collide_nor_cover_a_point():
    # "query", "+ CT", "+ haemorrhage" and "result" within a few pixels of each other, as short moves put them
    points = np.array([[0.0, 0.0], [0.01, 0.005], [0.015, 0.0], [0.012, 0.01], [0.5, 0.4], [-0.4, 0.3]])
    texts = ["query", "+ CT", "+ haemorrhage", "result", "X-ray · chest", "CT · abdomen"]
    hits = np.array([[0.02, 0.02], [0.03, -0.01]])
    x_range, y_range = (-0.6, 0.7), (-0.5, 0.6)
    placed = place_labels(points, texts, x_range, y_range, [16] * 4 + [13] * 2, obstacles=hits)
    boxes = _boxes(points, texts, placed, x_range, y_range)
    for i, a in enumerate(boxes):
        assert all(not _overlap(a, b) for b in boxes[i + 1:]), texts[i]
        for marker in to_pixels(np.concatenate([points, hits]), x_range, y_range):
            assert not (a[0] < marker[0] < a[2] and a[1] < marker[1] < a[3]), (texts[i], marker)
        assert a[0] >= 0 and a[1] >= 0 and a[2] <= PLOT_PX[0] and a[3] <= PLOT_PX[1]


def test_the_map_names_the_largest_modality_and_region_groups(demo_corpus):
    records = demo_corpus.records[:300]
    index = _index(n=len(records))
    index = Index(index.images, index.captions, records, {})
    projection = fit_projection(index, sample_size=300)
    assert 3 <= len(projection.landmarks) <= 8
    shares = [landmark.share for landmark in projection.landmarks]
    assert shares == sorted(shares, reverse=True) and shares[-1] >= 0.03
    counts = Counter(f"{r.modality} · {r.region}" for r in records if "unknown" not in (r.modality, r.region))
    assert projection.landmarks[0].name == counts.most_common(1)[0][0]
    assert set(projection.sample_modalities) <= {r.modality for r in records}
    members = [i for i, r in enumerate(records) if f"{r.modality} · {r.region}" == projection.landmarks[0].name]
    centre = np.concatenate([projection.sample_images[members], projection.sample_captions[members]]).mean(0)
    np.testing.assert_allclose(projection.landmarks[0].point, centre, atol=1e-5)
