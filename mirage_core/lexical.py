"""The words channel of text search: BM25 over each record's caption and keywords (the `bm25s` library, with
the Snowball stemmer of PyStemmer and English stop words).

BM25 scores a record by how many of the query's stems its caption holds, how rare each stem is in the corpus
(idf) and how long the caption is. It is what finds "pneumothorax" in a caption when the joint space only knows
the query is a chest film. The index is built from the records when first needed (~0.1 s per 1,000 captions)
and kept for the life of the `Index`; its vocabulary also tells the relevance test which stems the corpus uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .text import _stemmer

STOPWORDS = "en"


def document_of(record) -> str:
    """What the words channel reads of a record: its caption, then its keywords."""
    return f"{record.caption} {' '.join(record.keywords)}"


class LexicalIndex:
    """BM25 over documents (one per index row); `scores` answers a query for every row at once."""

    def __init__(self, documents: Sequence[str]):
        import bm25s

        tokens = bm25s.tokenize(list(documents), stopwords=STOPWORDS, stemmer=_stemmer(), show_progress=False,
                                allow_empty=True)
        self.vocabulary: dict[str, int] = tokens.vocab
        self.size = len(documents)
        self.bm25 = None  # a corpus without a word (captions all empty) has nothing to score
        self.document_frequency: dict[str, int] = {}
        if any(len(ids) for ids in tokens.ids):
            self.bm25 = bm25s.BM25()
            self.bm25.index(tokens, show_progress=False)
            frequency = np.diff(self.bm25.scores["indptr"])  # one column of the score matrix per stem
            self.document_frequency = {stem: int(frequency[i]) for stem, i in self.vocabulary.items()
                                       if i < len(frequency)}

    def query_stems(self, text: str) -> list[str]:
        """The query's stems that occur in the corpus, in the order typed, each once."""
        import bm25s

        stems = bm25s.tokenize([text], stopwords=STOPWORDS, stemmer=_stemmer(), return_ids=False,
                               show_progress=False)[0]
        return [s for s in dict.fromkeys(stems) if self.document_frequency.get(s, 0) > 0]

    def scores(self, stems: Sequence[str], allowed: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every row for these stems (0 where a row holds none; -inf where a filter excludes it)."""
        if not stems or self.bm25 is None:
            scores = np.zeros(self.size, dtype=np.float32)
        else:
            scores = np.asarray(self.bm25.get_scores(list(stems)), dtype=np.float32)
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf).astype(np.float32)
        return scores

    def coverage(self, stems: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """For each of `rows`, the share of the stems' weight (idf, log(N / df)) that its document holds: 1 where
        a caption names every stem of the query, more for the rare ones. Read from the BM25 matrix's columns."""
        rows = np.asarray(rows, dtype=np.int64)
        held = np.zeros(len(rows), dtype=np.float64)
        weights = [np.log(self.size / self.document_frequency[s]) for s in stems if self.document_frequency.get(s)]
        if not weights or self.bm25 is None or sum(weights) <= 0:
            return held
        indptr, documents = self.bm25.scores["indptr"], self.bm25.scores["indices"]
        # a stem's column lists the documents that hold it; marking them in a table and reading `rows` from it costs
        # two passes over the column, where np.isin would hash it (60 ms a query at a million captions)
        holds = np.zeros(self.size, dtype=bool)
        for stem, weight in zip((s for s in stems if self.document_frequency.get(s)), weights):
            column = self.vocabulary[stem]
            holding = documents[indptr[column]:indptr[column + 1]]
            holds[holding] = True
            held += weight * holds[rows]
            holds[holding] = False
        return held / sum(weights)

    def frequency(self, stem: str) -> int:
        """In how many rows the stem occurs."""
        return self.document_frequency.get(stem, 0)
