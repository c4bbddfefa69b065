"""Whether a query found anything relevant: one calibrated test for Retrieval, Dual search, Reports and the CLI.

A nonsense query still has nearest neighbours; shown as results they look like answers. Two signals decide:

* **words** (text queries): most of the query's words (three letters or more; stop words, generic words and
  the lay words of `glossary` aside) are foreign to the corpus — each in fewer than two of its records' captions
  or keywords, as written: the query is off-topic ("qwxz blorf", "helicopter landing on a ship").
* **score**: the best hit's ranking score (cosine minus the hubness bias, the number results are ranked by)
  is below the index's floor: a weak match. The floor is calibrated on the index itself, per kind of query
  and target: the `QUANTILE` quantile, over up to `SAMPLE` of the corpus' own captions (for text and vector
  queries) or images (for image queries) used as queries, of the best ranking score among the *other* rows.
  So by construction about 5 % of in-corpus queries fall below it; `mirage bench relevance` measures the false
  alarms on held-out captions (never in the calibration) and the hit rate on off-topic queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .glossary import known_lay_words
from .index import Hit, Index
from .text import words

QUANTILE = 0.05
SAMPLE = 1000
MIN_RECORDS = 2  # a word in fewer records than this is not part of the corpus' language
GENERIC_WORDS = frozenset({
    "the", "and", "with", "for", "from", "image", "images", "picture", "photo", "show", "shows", "showing", "case",
    "patient", "normal", "left", "right", "view", "scan", "please", "find", "search", "what", "which", "this",
})


@dataclass(frozen=True)
class Verdict:
    level: str  # "relevant", "weak" or "off_topic"
    best: float  # the best hit's ranking score (nan when there is no hit)
    floor: float
    reason: str = ""

    @property
    def relevant(self) -> bool:
        return self.level == "relevant"


def unknown_words(index: Index, text: str) -> bool:
    """True when most of the text's words (3+ letters; stop words, generic and lay words aside) are foreign to
    the corpus: they occur in fewer than `MIN_RECORDS` of its records ("sunset over the ocean")."""
    from bm25s.stopwords import STOPWORDS_EN

    judged = set(words(text)) - GENERIC_WORDS - set(STOPWORDS_EN) - known_lay_words(text)
    known = [w for w in judged if index.word_frequency[w] >= MIN_RECORDS]
    return bool(judged) and len(known) < len(judged) / 2


def floor_of(index: Index, kind: str = "text", target: str = "images") -> float:
    """The calibrated floor for queries of `kind` ('text', 'vector' or 'image') searching `target`."""
    key = ("image" if kind == "image" else "text", target)
    cache = index.__dict__.setdefault("_relevance_floors", {})
    if key not in cache:
        cache[key] = _calibrate(index, *key)
    return cache[key]


def _calibrate(index: Index, kind: str, target: str) -> float:
    n = len(index)
    if n < 20:
        return -1.0  # too few rows to say what a good match looks like: judge by words alone
    rows = np.random.default_rng(0).choice(n, size=min(n, SAMPLE), replace=False)
    queries = (index.images if kind == "image" else index.captions)[rows]
    matrix, bias = (index.images, index.image_bias) if target == "images" else (index.captions, index.caption_bias)
    best = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), 256):  # bounded memory on a large index
        scores = queries[start : start + 256] @ matrix.T - (bias - index.typical_bias[target])
        scores[np.arange(len(scores)), rows[start : start + 256]] = -np.inf  # not its own row
        best[start : start + 256] = scores.max(axis=1)
    return float(np.quantile(best, QUANTILE))


def assess(index: Index, hits: Sequence[Hit], text: str | None = None, kind: str = "text",
           target: str = "images") -> Verdict:
    """The verdict on a result list: `text` is the query's words (None for an image or vector query)."""
    floor = floor_of(index, kind, target)
    # the joint space's best match: for a hybrid list, the best any row reached, shown or not
    best = max((hit.ranking if hit.query_best is None else max(hit.ranking, hit.query_best) for hit in hits),
               default=float("nan"))
    if text is not None and unknown_words(index, text):
        return Verdict("off_topic", best, floor, "most of the query's words never occur in this corpus' captions "
                                                 "— try radiology terms (a modality, an organ, a finding)")
    if not hits or best < floor:
        return Verdict("weak", best, floor, f"no image here matches closely (best score {best:.2f}, below this "
                                            f"corpus' floor of {floor:.2f}): these are only the nearest")
    return Verdict("relevant", best, floor)
