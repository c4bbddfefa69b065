"""A 2D picture of the joint space: PCA of a corpus sample, onto which query moves are drawn.

Image and caption embeddings of a contrastive model sit in two separate cones (the modality gap); a PCA
of both would spend its first axis on that gap and squash every move of a query. So each modality is
centred on its own mean before fitting, and every vector is projected after subtracting the mean of
the modality it came from (text terms and their sums: the caption mean; images: the image mean).

The map has landmarks — the corpus coloured by modality, and the centres of its largest modality · region
groups named ("X-ray · chest") — so that a move reads as "from chest films toward CT". Labels are placed by
`place_labels` so that no two overlap and none sits on a point of the path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import PCA

from .index import Index
from .labels import UNKNOWN

CENTRING_NOTE = (
    "PCA of a corpus sample with images and captions each centred on their own mean, so that the gap "
    "between the two modalities does not hide the moves."
)


@dataclass(frozen=True)
class Landmark:
    """The centre of one modality · region group of the corpus sample on the map."""

    name: str
    point: tuple[float, float]
    share: float  # of the sample


@dataclass
class Projection:
    pca: PCA
    image_mean: np.ndarray
    caption_mean: np.ndarray
    sample_rows: np.ndarray
    sample_images: np.ndarray  # [M, 2]
    sample_captions: np.ndarray  # [M, 2]
    sample_modalities: np.ndarray  # [M] modality label of each sampled record
    landmarks: list[Landmark]

    @property
    def explained_variance(self) -> tuple[float, float]:
        first, second = self.pca.explained_variance_ratio_[:2]
        return float(first), float(second)

    def project(self, vectors: np.ndarray, modality: str = "text") -> np.ndarray:
        """2D coordinates of vectors from one modality ('text' or 'image')."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        mean = self.caption_mean if modality == "text" else self.image_mean
        return self.pca.transform(vectors - mean)


def fit_projection(index: Index, sample_size: int = 800, seed: int = 0, landmarks: int = 8,
                   min_share: float = 0.03) -> Projection:
    """Fit on up to `sample_size` records' image and caption embeddings (a fixed random sample); name the
    centres of the `landmarks` largest modality · region groups holding at least `min_share` of it."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(index), size=min(sample_size, len(index)), replace=False))
    image_mean, caption_mean = index.images.mean(0), index.captions.mean(0)
    images, captions = index.images[rows] - image_mean, index.captions[rows] - caption_mean
    pca = PCA(n_components=2, random_state=seed).fit(np.concatenate([images, captions]))
    image_points, caption_points = pca.transform(images), pca.transform(captions)
    records = [index.records[int(row)] for row in rows]
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        if UNKNOWN not in (record.modality, record.region):
            groups.setdefault(f"{record.modality} · {record.region}", []).append(i)
    largest = sorted(groups.items(), key=lambda item: -len(item[1]))[:landmarks]
    named = [Landmark(name, tuple(np.concatenate([image_points[members], caption_points[members]]).mean(0)),
                      len(members) / len(rows))
             for name, members in largest if len(members) >= max(3, min_share * len(rows))]
    return Projection(pca, image_mean, caption_mean, rows, image_points, caption_points,
                      np.array([record.modality for record in records]), named)


@dataclass
class PathPicture:
    """2D coordinates for drawing a dual search on a fitted `Projection`: the path of the query and the hits
    (the corpus sample, its landmarks and the explained variance are the projection's)."""

    projection: Projection
    path_labels: list[str]
    path_points: np.ndarray  # [steps + 2, 2]: query, each running sum, the normalised result
    hit_points: np.ndarray
    hit_labels: list[str]
    step_names: list[str] = field(default_factory=list)  # each path point in plain words, for the projector

    def view(self, margin: float = 0.08) -> tuple[tuple[float, float], tuple[float, float]]:
        """The x and y ranges that show every point with a margin (the figure fixes its axes to them, so
        that label placement knows where the points land on screen)."""
        points = np.concatenate([self.projection.sample_images, self.projection.sample_captions, self.path_points,
                                 self.hit_points])
        low, high = points.min(0), points.max(0)
        pad = (high - low) * margin + 1e-6
        return (float(low[0] - pad[0]), float(high[0] + pad[0])), (float(low[1] - pad[1]), float(high[1] + pad[1]))


def picture_of(projection: Projection, composition, hits, index: Index, query_modality: str = "text") -> PathPicture:
    """Project a `Composition`'s path and the hits' images onto the fitted plane."""
    labels, vectors = zip(*composition.path())
    path = projection.project(np.stack(vectors), query_modality)
    rows = [hit.row for hit in hits]
    hit_points = projection.project(index.images[rows], "image") if rows else np.zeros((0, 2))
    return PathPicture(projection, list(labels), path, hit_points, [hit.record.id for hit in hits],
                       composition.step_names())


# Label placement works in screen pixels: a label is a box of about 0.6 em per character, and the plot is at
# least PLOT_PX wide and tall (a wider screen only spreads the points further apart).
PLOT_PX = (760.0, 480.0)
_DIRECTIONS = [(0, 1), (1, 1), (-1, 1), (1, 0), (-1, 0), (0, -1), (1, -1), (-1, -1)]  # above first
_RADII = (16, 30, 48, 70, 96, 126, 160)


@dataclass(frozen=True)
class PlacedLabel:
    """A label's box centre as a pixel offset from its point (x right, y up) and its box size in pixels."""

    dx: float
    dy: float
    width: float
    height: float


def label_box(text: str, font_px: float) -> tuple[float, float]:
    return 0.6 * font_px * len(text) + 8, 1.4 * font_px


def to_pixels(points: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float],
              plot_px: tuple[float, float] = PLOT_PX) -> np.ndarray:
    points = np.atleast_2d(np.asarray(points, dtype=float)).reshape(-1, 2)
    scale = np.array([plot_px[0] / (x_range[1] - x_range[0]), plot_px[1] / (y_range[1] - y_range[0])])
    return (points - np.array([x_range[0], y_range[0]])) * scale


def place_labels(points: np.ndarray, texts: list[str], x_range: tuple[float, float],
                 y_range: tuple[float, float], font_px: float | list[float] = 14.0,
                 obstacles: np.ndarray | None = None, plot_px: tuple[float, float] = PLOT_PX,
                 marker_px: float = 7.0) -> list[PlacedLabel]:
    """Where to put each text near its point so that no two labels overlap, no label covers a point of
    `points` or `obstacles` (markers that must stay visible), and every label stays inside the plot.

    Greedy, in order (put the most important labels first): each label tries offsets of growing radius in eight
    directions and takes the first free one; if none is free it takes the one overlapping least."""
    anchors = to_pixels(points, x_range, y_range, plot_px)
    markers = anchors if obstacles is None or len(obstacles) == 0 else np.concatenate(
        [anchors, to_pixels(obstacles, x_range, y_range, plot_px)])
    sizes = [font_px] * len(texts) if np.isscalar(font_px) else list(font_px)
    placed_boxes: list[tuple[float, float, float, float]] = []  # x0, y0, x1, y1
    placed: list[PlacedLabel] = []
    for anchor, text, size in zip(anchors, texts, sizes):
        width, height = label_box(text, size)
        best, best_cost = None, np.inf
        for radius in _RADII:
            for ux, uy in _DIRECTIONS:
                norm = np.hypot(ux, uy)
                dx = ux / norm * radius + ux * width / 2
                dy = uy / norm * radius + uy * height / 2
                box = (anchor[0] + dx - width / 2, anchor[1] + dy - height / 2,
                       anchor[0] + dx + width / 2, anchor[1] + dy + height / 2)
                cost = _overlap_cost(box, placed_boxes, markers, marker_px, plot_px)
                if cost < best_cost:
                    best, best_cost = (dx, dy, box), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        dx, dy, box = best
        placed_boxes.append(box)
        placed.append(PlacedLabel(float(dx), float(dy), width, height))
    return placed


def _overlap_cost(box, boxes, markers, marker_px, plot_px) -> float:
    x0, y0, x1, y1 = box
    cost = sum(max(0.0, min(x1, b[2]) - max(x0, b[0])) * max(0.0, min(y1, b[3]) - max(y0, b[1])) for b in boxes)
    inside = (markers[:, 0] > x0 - marker_px) & (markers[:, 0] < x1 + marker_px) & \
             (markers[:, 1] > y0 - marker_px) & (markers[:, 1] < y1 + marker_px)
    cost += 400.0 * int(inside.sum())
    outside = max(0.0, -x0) + max(0.0, x1 - plot_px[0]) + max(0.0, -y0) + max(0.0, y1 - plot_px[1])
    return cost + 50.0 * outside
