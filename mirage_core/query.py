"""A query — a text, an image or a vector — becomes one checked unit vector of the joint space, in one place.

Every path that searches, composes, reports or generates from a query calls `as_unit_vector`, so each of them
refuses the same things with the same words: an empty or over-long text, a blank image, a vector that is zero,
not finite or of another encoder's width. Errors are `QueryError`s written for the user.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .encoders.base import Encoder
from .errors import QueryError

MAX_QUERY_CHARS = 1000
MIN_NORM = 1e-6
Query = str | Image.Image | np.ndarray


def check_query_text(text: str, what: str = "query") -> str:
    """The text with its whitespace folded, or a QueryError saying why it cannot be a query."""
    cleaned = " ".join(str(text).split())
    if not cleaned:
        raise QueryError(f"the {what} is empty: type a few words, e.g. 'chest x-ray pneumothorax'")
    if len(cleaned) > MAX_QUERY_CHARS:
        raise QueryError(f"the {what} has {len(cleaned):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    return cleaned


def kind_of(query: Query) -> str:
    """'text', 'image' or 'vector'."""
    if isinstance(query, str):
        return "text"
    return "image" if isinstance(query, Image.Image) else "vector"


def as_unit_vector(encoder: Encoder, query: Query, what: str = "query") -> np.ndarray:
    """The query's unit vector in the encoder's joint space."""
    kind = kind_of(query)
    if kind == "text":
        vector = encoder.encode_query([check_query_text(query, what)])[0]
    elif kind == "image":
        if np.asarray(query.convert("L"), dtype=np.float32).std() < 2.0:
            raise QueryError(f"the {what} image is blank (one flat colour): there is nothing to compare")
        vector = encoder.encode_image([query])[0]
    else:
        vector = np.asarray(query, dtype=np.float32).reshape(-1)
        if vector.shape[0] != encoder.dim:
            raise QueryError(f"the {what} vector has {vector.shape[0]} dimensions; the encoder uses {encoder.dim}")
    norm = float(np.linalg.norm(vector)) if vector.size else 0.0
    if not np.isfinite(norm) or norm < MIN_NORM:
        raise QueryError(f"the {what} vector is zero or not finite: there is no direction to search in")
    return (vector / norm).astype(np.float32)
