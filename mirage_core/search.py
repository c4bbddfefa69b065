"""Retrieval: a text or an image as the query, images or captions as the answer.

A **text** query is answered by hybrid search, three channels fused:

* **image** — the joint space: the query's embedding against every image's (what knows modality and region);
* **meaning** — the query's meaning vector against every caption's (a sentence model, text to text: what finds
  "collapsed lung" in a caption that says "pneumothorax");
* **words** — BM25 over captions and keywords (`lexical`): the caption that names the finding.

The query is first read through the lay-words table (`glossary`), so "air outside the bowel" also asks the
caption channels for "pneumoperitoneum". Each channel ranks its best `Fusion.pool` rows; their union is scored by a
small learnt combiner, a linear score over six per-query features of each row (`features`): the joint-space score
and the caption-meaning cosine, each standardised over the candidates, BM25 over the best BM25 among them, whether
its modality label is one the query names, whether its body region is the one the query names, and its coverage —
the share of the query's stems its caption and keywords hold, each weighted by its rarity (BM25 saturates per stem,
so a caption saying "pneumothorax" twice can outscore one naming both "tension" and "pneumothorax"). Its weights
were fitted, non-negative (a channel's evidence never counts against a row), on tuning queries only (`mirage bench
findings --tune`); the held-out queries that report the figures never chose anything. Each hit says which
channels found it (ranked it in their top 3k), which caption words matched, and a 0–100 match: the combiner's
score as a probability that the row shows what was asked (balanced classes, so 50 is even odds, not the base rate).

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
FEATURES = ("image", "meaning", "words", "modality", "region", "coverage")


@dataclass(frozen=True)
class Fusion:
    """The learnt combiner: a row's match is sigmoid(bias + Σ weight × feature) (see the module docstring)."""

    weights: dict[str, float] = field(default_factory=lambda: {
        "image": 0.0, "meaning": 0.446, "words": 1.297, "modality": 2.681, "region": 0.0, "coverage": 2.309})
    bias: float = -1.279
    pool: int = 100

    def logits(self, columns: np.ndarray) -> np.ndarray:
        """The combiner's log-odds for rows of `features` (columns in `FEATURES` order)."""
        return self.bias + columns @ np.array([self.weights.get(name, 0.0) for name in FEATURES])


# Fitted by `mirage bench findings --tune` on the tuning queries over the five folds of the training split (3,010
# cases; each fold searched with heads trained on the other four): 104 (query, fold) pairs with at least 3 answers.
# Under 4-fold cross-validation over the queries: 71.5 % (71.6 ± 0.2 % over random fold deals), against 69.4 %
# (69.7 ± 0.4 %) for the previous release's combiner (the same features, the modality and region agreement summed in
# one, fitted by a logistic regression over all queries' candidates pooled), 67.9 % without the coverage feature and
# 67.5 % (66.5 ± 0.9 %) for the best weighted reciprocal-rank fusion of a 180-setting grid. The joint space and the
# region came out at 0: for a finding, the captions' meaning and words carry the query's region as well; the image
# channel still brings its candidates into the pool.
FUSION = Fusion()


@dataclass(frozen=True)
class Channels:
    """Each channel's ranked rows for one query (best first), and what fusion needs to explain them."""

    rankings: dict[str, np.ndarray]
    vector: np.ndarray  # the query in the joint space
    meaning: np.ndarray | None  # the query's meaning vector (None when the index has no caption meanings)
    stems: set[str]  # the query's stems (lay words expanded) that the captions use
    word_scores: np.ndarray  # BM25 of every row (0 where a row holds none of the stems)
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
        return Channels({}, vector, None, set(), np.zeros(len(index), dtype=np.float32), (), UNKNOWN)
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
    return Channels(rankings, vector, meaning, set(stems), scores, named, region_of(text))


def _ranked(index: Index, vector: np.ndarray, target: str, k: int, allowed: np.ndarray | None) -> np.ndarray:
    rows, cosines = index.backend.candidates(vector, target, k, allowed)
    cosines, ranking = index.rank(vector, rows, target, cosines)
    return np.asarray(rows)[top_k(ranking, k)]


def features(index: Index, found: Channels, pool: int = FUSION.pool) -> tuple[np.ndarray, np.ndarray]:
    """(candidate rows, their [rows, 6] features in `FEATURES` order): the union of the channels' top `pool` rows,
    each scored per query so that the combiner's weights mean the same for any query, corpus or encoder."""
    ranked = [rows[:pool] for rows in found.rankings.values()]
    rows = np.unique(np.concatenate(ranked)) if ranked else np.zeros(0, dtype=np.int64)
    columns = np.zeros((len(rows), len(FEATURES)), dtype=np.float64)
    if not len(rows):
        return rows, columns
    columns[:, 0] = _standardised(index.rank(found.vector, rows)[1])
    if found.meaning is not None:
        columns[:, 1] = _standardised(index.sentences[rows] @ found.meaning)
    words = np.maximum(found.word_scores[rows], 0.0)
    columns[:, 2] = words / words.max() if words.max() > 0 else 0.0
    if found.modalities:
        columns[:, 3] = np.isin(index.modalities[rows], found.modalities)
    if found.region != UNKNOWN:
        columns[:, 4] = [index.records[row].region == found.region for row in rows]
    columns[:, 5] = index.lexical.coverage(sorted(found.stems), rows)
    return rows, columns


def _standardised(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def fuse(index: Index, found: Channels, k: int, fusion: Fusion = FUSION) -> list[Hit]:
    """The k rows the learnt combiner scores highest among the channels' candidates, as hits."""
    rows, columns = features(index, found, fusion.pool)
    if not len(rows):
        return []
    logits = fusion.logits(columns)
    order = np.lexsort((rows, -logits))[:k]
    rows, logits = rows[order], logits[order]
    explained = max(3 * k, 10)  # a channel "found" a row it ranked this high, not merely one it scored
    by = {}
    for channel, ranked in found.rankings.items():
        for row in ranked[:explained].tolist():
            by.setdefault(row, []).append(channel)
    cosines, ranking = index.rank(found.vector, rows)
    meanings = index.sentences[rows] @ found.meaning if found.meaning is not None else [None] * len(rows)
    top = found.rankings.get("image", np.zeros(0, dtype=np.int64))[:1]
    query_best = float(index.rank(found.vector, top)[1][0]) if len(top) else None
    return [Hit(index.records[row], float(cosine), int(row), float(rank_score),
                match=round(100.0 / (1.0 + np.exp(-logit)), 1), channels=tuple(by.get(row, ())),
                matched=matching_words(index.records[row].caption, found.stems),
                meaning=None if meaning is None else float(meaning), query_best=query_best)
            for row, logit, cosine, rank_score, meaning in zip(rows.tolist(), logits, cosines, ranking, meanings)]


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
