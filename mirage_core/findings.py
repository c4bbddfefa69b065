"""The finding channel of text search: a query's finding words, matched in the captions.

The joint space knows modality and body region well and the finding poorly: "chest x-ray pneumothorax" returns
chest films, few of them pneumothoraces, while cases whose captions say "pneumothorax" rank below them. So a text
query's *finding words* — words of the corpus' vocabulary that name neither a modality nor a region, are not
generic, and occur in at most `MAX_SHARE` of the captions (a finding is specific) — are looked up in an inverted
index of the captions and keywords; every record that names them joins the candidates, and each candidate's
ranking score gets `BONUS` × the share of the finding words its caption names. The dense score still orders
records that name the finding equally. `BONUS` was chosen on `TUNING_QUERIES` only; `mirage bench findings`
measures precision on `HELD_OUT_QUERIES`, written before it was measured.
"""

from __future__ import annotations

import bisect
import itertools

import numpy as np

from .index import WORD, Hit, Index
from .labels import UNKNOWN, modalities_named, region_of
from .relevance import GENERIC_WORDS

BONUS = 0.3  # chosen on TUNING_QUERIES (mirage bench findings --tune)
MAX_SHARE = 0.05
# Diseases that `labels` also reads as a region cue (a pneumothorax is in the chest): findings all the same
DISEASES_NAMING_A_REGION = frozenset({"pneumothorax", "glioma", "glioblastoma", "astrocytoma", "meningioma",
                                      "subdural", "subarachnoid", "herniation", "appendicitis"})


def finding_words(index: Index, text: str) -> list[str]:
    """The words of the query that name a finding in this corpus (see the module docstring)."""
    limit = max(1, MAX_SHARE * len(index))
    words = []
    for word in dict.fromkeys(WORD.findall(text.lower())):
        if (word not in GENERIC_WORDS and 0 < index.word_counts[word] <= limit and not modalities_named(word)
                and (region_of(word) == UNKNOWN or word in DISEASES_NAMING_A_REGION)):
            words.append(word)
    return words


def stem(word: str) -> str:
    """What a finding word's forms share: words of more than six letters lose their last two ("metastases" →
    "metastas", matching metastasis; "fracture" → "fractu", matching fractured); shorter ones stay whole."""
    return word[:-2] if len(word) > 6 else word


def rows_naming(index: Index, word: str) -> np.ndarray:
    """Rows whose caption or keywords hold a word that starts with the word's stem (or, for a short word, is it
    or its plural)."""
    prefix = stem(word)
    if prefix == word:
        forms = [w for w in (word, word + "s", word + "es") if w in index.postings]
    else:
        start = bisect.bisect_left(index.vocabulary, prefix)
        forms = list(itertools.takewhile(lambda w: w.startswith(prefix), index.vocabulary[start:start + 200]))
    found = [index.postings[form] for form in forms]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


def with_findings(index: Index, vector: np.ndarray, text: str, hits: list[Hit], k: int,
                  allowed: np.ndarray | None = None, bonus: float = BONUS) -> list[Hit]:
    """The dense hits re-ranked with the finding channel (unchanged when the query names no finding)."""
    words = finding_words(index, text)
    if not words or bonus == 0:
        return hits
    named = np.zeros(len(index), dtype=np.float32)
    for word in words:
        named[rows_naming(index, word)] += 1.0 / len(words)
    candidates = set(np.flatnonzero(named).tolist())
    if allowed is not None:
        candidates = {row for row in candidates if allowed[row]}
    candidates |= {hit.row for hit in hits}
    rows = np.fromiter(candidates, dtype=np.int64)
    cosines, ranking = index.rank(vector, rows)
    ranking = ranking + bonus * named[rows]
    order = np.lexsort((rows, -ranking))[:k]
    return [Hit(index.records[rows[j]], float(cosines[j]), int(rows[j]), float(ranking[j]),
                float(bonus * named[rows[j]])) for j in order]
