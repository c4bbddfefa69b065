"""Retrieval recall of row-aligned image–caption pairs, ranked as the index ranks them.

`recall_metrics(image_embeddings, text_embeddings)` takes row-aligned matrices (row i of both is pair i)
and returns R@1/5/10 in percent and the median rank (1 = first), for text→image and image→text. It lives
beside the encoders so their training can score itself without reaching up into the index or the app.
"""

from __future__ import annotations

import numpy as np


def true_ranks(queries: np.ndarray, candidates: np.ndarray, candidate_bias: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of the true candidate (same row index) for each query, ranked as the index ranks."""
    scores = queries @ candidates.T
    if candidate_bias is not None:
        scores = scores - candidate_bias[None, :]
    true = np.diagonal(scores)[:, None]
    return (scores > true).sum(axis=1) + 1


def recall_summary(ranks: np.ndarray) -> dict:
    return {
        "R@1": round(float((ranks <= 1).mean() * 100), 2),
        "R@5": round(float((ranks <= 5).mean() * 100), 2),
        "R@10": round(float((ranks <= 10).mean() * 100), 2),
        "median_rank": float(np.median(ranks)),
    }


def recall_metrics(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray,
    image_bias: np.ndarray | None = None, caption_bias: np.ndarray | None = None,
) -> dict:
    """Recall of row-aligned pairs; the optional biases are the index's hubness corrections."""
    if image_embeddings.shape != text_embeddings.shape:
        raise ValueError("image and text embeddings must be row-aligned pairs of the same shape")
    return {
        "n": int(len(image_embeddings)),
        "t2i": recall_summary(true_ranks(text_embeddings, image_embeddings, image_bias)),
        "i2t": recall_summary(true_ranks(image_embeddings, text_embeddings, caption_bias)),
    }
