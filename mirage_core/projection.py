"""A 2D picture of the joint space: PCA of a corpus sample, onto which query moves are drawn.

Image and caption embeddings of a contrastive model sit in two separate cones (the modality gap); a PCA
of both would spend its first axis on that gap and squash every move of a query. So each modality is
centred on its own mean before fitting, and every vector is projected after subtracting the mean of
the modality it came from (text terms and their sums: the caption mean; images: the image mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

from .index import Index

CENTRING_NOTE = (
    "PCA of a corpus sample with images and captions each centred on their own mean, so that the gap "
    "between the two modalities does not hide the moves."
)


@dataclass
class Projection:
    pca: PCA
    image_mean: np.ndarray
    caption_mean: np.ndarray
    sample_rows: np.ndarray
    sample_images: np.ndarray  # [M, 2]
    sample_captions: np.ndarray  # [M, 2]

    @property
    def explained_variance(self) -> tuple[float, float]:
        first, second = self.pca.explained_variance_ratio_[:2]
        return float(first), float(second)

    def project(self, vectors: np.ndarray, modality: str = "text") -> np.ndarray:
        """2D coordinates of vectors from one modality ('text' or 'image')."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        mean = self.caption_mean if modality == "text" else self.image_mean
        return self.pca.transform(vectors - mean)


def fit_projection(index: Index, sample_size: int = 800, seed: int = 0) -> Projection:
    """Fit on up to `sample_size` records' image and caption embeddings (a fixed random sample)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(index), size=min(sample_size, len(index)), replace=False))
    image_mean, caption_mean = index.images.mean(0), index.captions.mean(0)
    images, captions = index.images[rows] - image_mean, index.captions[rows] - caption_mean
    pca = PCA(n_components=2, random_state=seed).fit(np.concatenate([images, captions]))
    return Projection(pca, image_mean, caption_mean, rows, pca.transform(images), pca.transform(captions))


@dataclass
class PathPicture:
    """2D coordinates for drawing a dual search: the corpus sample, the path of the query, the hits."""

    sample_images: np.ndarray
    sample_captions: np.ndarray
    path_labels: list[str]
    path_points: np.ndarray  # [steps + 2, 2]: query, each running sum, the normalised result
    hit_points: np.ndarray
    hit_labels: list[str]
    explained_variance: tuple[float, float]


def picture_of(projection: Projection, composition, hits, index: Index, query_modality: str = "text") -> PathPicture:
    """Project a `Composition`'s path and the hits' images onto the fitted plane."""
    labels, vectors = zip(*composition.path())
    path = projection.project(np.stack(vectors), query_modality)
    rows = [hit.row for hit in hits]
    hit_points = projection.project(index.images[rows], "image") if rows else np.zeros((0, 2))
    return PathPicture(
        projection.sample_images, projection.sample_captions, list(labels), path, hit_points,
        [hit.record.id for hit in hits], projection.explained_variance,
    )

