"""Retrieval: a text or an image as the query, images or captions as the answer.

A **text** query is answered by hybrid search, three channels fused:

* **image** — the joint space: the query's embedding against every image's (what knows modality and region);
* **meaning** — the query's meaning vector against every caption's (a sentence model, text to text: what finds
  "collapsed lung" in a caption that says "pneumothorax");
* **words** — BM25 over captions and keywords (`lexical`): the caption that names the finding.

The query is first read through the lay-words table (`glossary`), so "air outside the bowel" also asks the
caption channels for "pneumoperitoneum". Each channel ranks its best `Fusion.pool` rows; the fusion is
weighted reciprocal-rank fusion (Cormack et al., 2009): a row scores Σ weight / (k0 + rank) over the channels
that ranked it, plus `labels` / (k0 + 1) for each of the query's named modality and body region that its
labels agree with ("pneumothorax on a chest x-ray" puts chest X-rays that show one first). The weights, k0 and
the label weight were chosen by cross-validation on tuning queries only (`mirage bench findings --tune`); the
held-out queries that report the figures never chose anything. Each hit says which channels found it (ranked it
in their top 3k), which caption words matched, and a 0–100 match: its fused score over the best a row could get.

An **image** query searches the joint space only (images, or captions with target='captions').
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .backends import top_k
from .encoders.base import Encoder
from .glossary import expand
from .index import Hit, Index
from .labels import UNKNOWN, modalities_named, region_of
from .query import as_unit_vector, check_query_text
from .text import matching_words

CHANNELS = ("image", "meaning", "words")


@dataclass(frozen=True)
class Fusion:
    """How the channels' rankings combine (see the module docstring)."""

    weights: dict[str, float] = field(default_factory=lambda: {"image": 0.5, "meaning": 1.0, "words": 2.0})
    k0: float = 5.0
    labels: float = 0.0
    pool: int = 100

    def best_possible(self, named: int) -> float:
        return (sum(self.weights.values()) + self.labels * named) / (self.k0 + 1)


# Chosen by `mirage bench findings --tune` on its 18 tuning queries over training fold 0 (618 cases, heads trained
# on folds 1–4): the grid's best (69.8 %), 65.7 % under 4-fold cross-validation over the queries, against 63.3 % for
# the untuned weights (image 0.5, meaning 1, words 1, k0 20, labels 1). The label weight came out 0: the image
# channel already carries a query's modality and region.
FUSION = Fusion()


@dataclass(frozen=True)
class Channels:
    """Each channel's ranked rows for one query (best first), and what fusion needs to explain them."""

    rankings: dict[str, np.ndarray]
    vector: np.ndarray  # the query in the joint space
    meaning: np.ndarray | None  # the query's meaning vector (None when the index has no caption meanings)
    stems: set[str]  # the query's stems (lay words expanded) that the captions use
    modalities: tuple[str, ...]
    region: str


def channels_of(index: Index, encoder: Encoder, text: str, allowed: np.ndarray | None = None,
                pool: int = FUSION.pool) -> Channels:
    """Every channel's ranking of the rows `allowed` for a text query (exposed for tuning and benchmarks)."""
    text = check_query_text(text)
    expanded = expand(text)
    vector = as_unit_vector(encoder, text)
    count = len(index) if allowed is None else int(allowed.sum())
    pool = min(pool, count)
    rankings: dict[str, np.ndarray] = {}
    if pool <= 0:
        return Channels({}, vector, None, set(), (), UNKNOWN)
    rankings["image"] = _ranked(index, vector, "images", pool, allowed)
    meaning = None
    if index.sentences is not None:
        meaning = encoder.encode_sentences([expanded], query=True)[0]
        rankings["meaning"] = _ranked(index, meaning, "sentences", pool, allowed)
    stems = index.lexical.query_stems(expanded)
    scores = index.lexical.scores(stems, allowed)
    best = top_k(scores, pool)
    rankings["words"] = best[scores[best] > 0]
    named = tuple(m for m in modalities_named(text) if m != UNKNOWN)
    return Channels(rankings, vector, meaning, set(stems), named, region_of(text))


def _ranked(index: Index, vector: np.ndarray, target: str, k: int, allowed: np.ndarray | None) -> np.ndarray:
    rows, cosines = index.backend.candidates(vector, target, k, allowed)
    cosines, ranking = index.rank(vector, rows, target, cosines)
    return np.asarray(rows)[top_k(ranking, k)]


def fuse(index: Index, found: Channels, k: int, fusion: Fusion = FUSION) -> list[Hit]:
    """The k best rows by weighted reciprocal-rank fusion of the channels (plus label agreement), as hits."""
    fused: dict[int, float] = {}
    by: dict[int, list[str]] = {}
    explained = max(3 * k, 10)  # a channel "found" a row it ranked this high, not merely one it scored
    for channel, rows in found.rankings.items():
        weight = fusion.weights.get(channel, 0.0)
        for rank, row in enumerate(rows[: fusion.pool].tolist()):
            if rank < explained:
                by.setdefault(row, []).append(channel)
            if weight:
                fused[row] = fused.get(row, 0.0) + weight / (fusion.k0 + rank + 1)
    named = int(bool(found.modalities)) + int(found.region != UNKNOWN)
    if fusion.labels and named:
        for row in fused:
            record = index.records[row]
            agree = (record.modality in found.modalities) + (found.region != UNKNOWN and record.region == found.region)
            fused[row] += fusion.labels * agree / (fusion.k0 + 1)
    if not fused:
        return []
    rows = np.fromiter(fused, dtype=np.int64, count=len(fused))
    scores = np.fromiter(fused.values(), dtype=np.float64, count=len(fused))
    order = np.lexsort((rows, -scores))[:k]
    rows, scores = rows[order], scores[order]
    cosines, ranking = index.rank(found.vector, rows)
    meanings = index.sentences[rows] @ found.meaning if found.meaning is not None else [None] * len(rows)
    ceiling = fusion.best_possible(named)
    top = found.rankings.get("image", np.zeros(0, dtype=np.int64))[:1]
    query_best = float(index.rank(found.vector, top)[1][0]) if len(top) else None
    return [Hit(index.records[row], float(cosine), int(row), float(rank_score),
                match=round(min(100.0, 100.0 * score / ceiling), 1), channels=tuple(by.get(row, ())),
                matched=matching_words(index.records[row].caption, found.stems),
                meaning=None if meaning is None else float(meaning), query_best=query_best)
            for row, score, cosine, rank_score, meaning in zip(rows.tolist(), scores, cosines, ranking, meanings)]


CHANNEL_NAMES = {"image": "image match", "meaning": "caption meaning", "words": "caption words"}


def why(hit: Hit) -> str:
    """One line saying why a hit is in a list: its 0–100 match and the channels that found it, or its
    similarity for a query of the joint space alone."""
    if hit.match is None:
        return f"similarity {hit.score:.2f} (cosine in the joint space; 1 is identical)"
    found = [CHANNEL_NAMES[c] for c in hit.channels if c in CHANNEL_NAMES]
    return f"match {hit.match:.0f}/100 · found by " + (", ".join(found) if found else "the fused ranking alone")


def search_text(
    index: Index, encoder: Encoder, text: str, k: int = 10, modalities: Sequence[str] | None = None,
    licences: Sequence[str] | None = None, exclude: Sequence[int] = (), fusion: Fusion = FUSION,
) -> list[Hit]:
    """Hybrid search (see the module docstring): the k records that the image, meaning and words channels
    together rank highest; filters are exact."""
    allowed = index.mask(modalities, licences, exclude)
    return fuse(index, channels_of(index, encoder, text, allowed, max(fusion.pool, k)), k, fusion)


def search_image(
    index: Index, encoder: Encoder, image: Image.Image, k: int = 10, target: str = "images",
    modalities: Sequence[str] | None = None, licences: Sequence[str] | None = None,
) -> list[Hit]:
    """Similar images (target='images') or the captions that best describe it (target='captions')."""
    return index.search(as_unit_vector(encoder, image), k, target=target, modalities=modalities,
                        licences=licences)


def nearest_images(index: Index, encoder: Encoder, images: Sequence[Image.Image], k: int = 3,
                   condition: str | Image.Image | np.ndarray | None = None, pool: int = 30) -> list[list[Hit]]:
    """For each image (e.g. a synthetic one), the k corpus images nearest to it among the `pool` cases that the
    condition it was made from finds (a prompt by hybrid search, a vector or an image in the joint space): so a
    generated "axial CT of the abdomen" is compared with abdominal CTs, never with whatever else its pixels
    resemble (a modality the prompt names is kept). Without a condition, the nearest of the whole corpus."""
    embedded = encoder.encode_image(list(images))
    if condition is None:
        return [index.search(vector, k) for vector in embedded]
    if isinstance(condition, str):  # a modality the prompt names is a filter, as on the Retrieval page
        named = [m for m in modalities_named(condition) if m in set(index.modalities)]
        found = search_text(index, encoder, condition, pool, modalities=named or None)
    else:
        found = index.search(as_unit_vector(encoder, condition), pool)
    rows = np.array([hit.row for hit in found], dtype=np.int64)
    neighbours = []
    for vector in embedded:
        cosines, ranking = index.rank(vector, rows)
        neighbours.append([Hit(index.records[rows[j]], float(cosines[j]), int(rows[j]), float(ranking[j]))
                           for j in top_k(ranking, min(k, len(rows)))])
    return neighbours


def more_like_this(index: Index, record_id: str, k: int = 10) -> list[Hit]:
    """Images nearest to one of the corpus' own images, the image itself left out."""
    row = index.row_of(record_id)
    return index.search(index.images[row], k, exclude=[row])
