"""Retrieval: a text or an image as the query, images or captions as the answer.

These are the functions the CLI and the pages call; each turns its query into a checked unit vector
(`query.as_unit_vector`: an empty or very long text is a `QueryError` with a message for the user) and
returns `Hit`s from the index.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from .encoders.base import Encoder
from .findings import with_findings
from .index import Hit, Index
from .query import as_unit_vector


def search_text(
    index: Index, encoder: Encoder, text: str, k: int = 10, modalities: Sequence[str] | None = None,
    licences: Sequence[str] | None = None,
) -> list[Hit]:
    """Images whose embedding is nearest to the text's, re-ranked by the finding channel (`findings`) when the
    text names a finding."""
    vector = as_unit_vector(encoder, text)
    hits = index.search(vector, k, modalities=modalities, licences=licences)
    return with_findings(index, vector, text, hits, k, index.mask(modalities, licences))


def search_image(
    index: Index, encoder: Encoder, image: Image.Image, k: int = 10, target: str = "images",
    modalities: Sequence[str] | None = None, licences: Sequence[str] | None = None,
) -> list[Hit]:
    """Similar images (target='images') or the captions that best describe it (target='captions')."""
    return index.search(as_unit_vector(encoder, image), k, target=target, modalities=modalities,
                        licences=licences)


def nearest_images(index: Index, encoder: Encoder, images: Sequence[Image.Image], k: int = 3,
                   prompt: str | None = None) -> list[list[Hit]]:
    """For each image (e.g. a synthetic one), the k corpus images nearest to it; the images embed in one batch.
    A prompt that names a modality keeps the neighbours to it, as a Retrieval filter would: a generated
    "chest x-ray" is compared with chest films, not with whatever else its pixels resemble."""
    from .labels import modalities_named

    named = [m for m in modalities_named(prompt or "") if m in set(index.modalities)]
    return [index.search(vector, k, modalities=named or None) for vector in encoder.encode_image(list(images))]


def more_like_this(index: Index, record_id: str, k: int = 10) -> list[Hit]:
    """Images nearest to one of the corpus' own images, the image itself left out."""
    row = index.row_of(record_id)
    return index.search(index.images[row], k, exclude=[row])
