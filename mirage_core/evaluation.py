"""Retrieval quality of a corpus: each caption queries its own image among all images, and each image its caption
(the recall arithmetic is `encoders.metrics.recall_metrics`), and the held-out figures the app shows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .corpus import Corpus, Record
from .encoders.metrics import recall_metrics, recall_summary, true_ranks
from .errors import MirageError
from .index import build_index
from .splits import is_heldout, split_records


def evaluate_corpus(corpus, encoder, heldout_only: bool = False, progress=None) -> dict:
    """Embed a corpus with `encoder` (never training on it) and measure recall among all its pairs. The held-out
    split leaves out the records the encoder was trained on (weights trained on everything saw them all)."""
    if heldout_only:
        unseen = [r for r in split_records(corpus.records)[1] if r.id not in encoder.training_ids]
        if not unseen:
            raise MirageError(f"encoder '{encoder.name}' was trained on every held-out pair of this corpus, so no "
                              "figure measured on it would be honest: evaluate on data it never saw")
        corpus = Corpus(corpus.name, unseen, corpus.skipped)
    index = build_index(corpus, encoder, progress=progress)
    metrics = recall_metrics(index.images, index.captions, index.image_bias, index.caption_bias)
    # text→image as a user searches: each caption through the encoder's query path (see Encoder.encode_query)
    queries = encoder.encode_query([record.caption for record in index.records])
    metrics["t2i"] = recall_summary(true_ranks(queries, index.images, index.image_bias))
    metrics["encoder"] = encoder.name
    metrics["skipped"] = index.manifest["skipped"]
    metrics["seen_in_training"] = sum(record.id in encoder.training_ids for record in index.records)
    return metrics


@dataclass(frozen=True)
class Failure:
    record: Record  # a held-out case whose caption did not find its own image
    rank: int
    found_instead: Record  # what came first


def heldout_report(index, worst: int = 3, limit: int = 500, seen: frozenset[str] = frozenset()) -> dict:
    """What the model can and cannot do on this index: recall of its held-out pairs (the articles training
    never saw, so neither split nor the `seen` training ids; up to `limit` of them) among all its images, and
    the held-out captions that ranked their own image worst."""
    heldout = [i for i, record in enumerate(index.records) if is_heldout(record)]
    rows = np.array([i for i in heldout if index.records[i].id not in seen], dtype=np.int64)
    trained_on = len(heldout) - len(rows)  # held-out pairs these weights were trained on after all
    rows = rows[:: max(1, len(rows) // limit)][:limit]
    if not len(rows):
        return {"n": 0, "candidates": len(index), "t2i": {}, "i2t": {}, "failures": [], "trained_on": trained_on}
    scores = index.captions[rows] @ index.images.T - index.image_bias[None, :]
    ranks = (scores > scores[np.arange(len(rows)), rows][:, None]).sum(axis=1) + 1
    image_scores = index.images[rows] @ index.captions.T - index.caption_bias[None, :]
    image_ranks = (image_scores > image_scores[np.arange(len(rows)), rows][:, None]).sum(axis=1) + 1
    failures = [Failure(index.records[rows[i]], int(ranks[i]), index.records[int(np.argmax(scores[i]))])
                for i in np.argsort(-ranks, kind="stable")[:worst]]
    return {"n": len(rows), "candidates": len(index), "t2i": recall_summary(ranks), "i2t": recall_summary(image_ranks),
            "failures": failures, "trained_on": trained_on}


def search_figures() -> dict | None:
    """The held-out figures of text search that ship with MIRAGE (`assets/search/figures.json`, written from
    `mirage bench findings --weights-dir …`), for the Home page; None when they are missing or unreadable."""
    import json

    from .config import shipped

    try:
        return json.loads((shipped("search") / "figures.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
