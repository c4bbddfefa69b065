"""The deterministic train / held-out split used for every published number.

Records are grouped by PMC article, so that sub-figures of one article never sit on both sides, and an
article is held out when the first bytes of the SHA-1 of its id fall in the held-out fraction. The same
corpus therefore always splits the same way, on any machine. `fold_of` deals the articles of the training part
into k cross-validation folds the same way (a differently salted hash), for choosing settings without ever
looking at the held-out part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .corpus import Record

HELDOUT_FRACTION = 0.2


def is_heldout(record: Record, fraction: float = HELDOUT_FRACTION) -> bool:
    group = record.pmc_id or record.id
    value = int.from_bytes(hashlib.sha1(group.encode()).digest()[:4], "big") / 2**32
    return value < fraction


def split_records(records: Sequence[Record], fraction: float = HELDOUT_FRACTION) -> tuple[list[Record], list[Record]]:
    """(train, held-out) in the corpus' own order."""
    train = [r for r in records if not is_heldout(r, fraction)]
    heldout = [r for r in records if is_heldout(r, fraction)]
    return train, heldout


def fold_of(record: Record, folds: int, salt: str = "fold") -> int:
    """The cross-validation fold (0…folds−1) of a record's article. Another `salt` deals an independent folding
    (an inner split inside a fold must not line up with the outer folds)."""
    group = record.pmc_id or record.id
    return int.from_bytes(hashlib.sha1(f"{salt}|{group}".encode()).digest()[:4], "big") % folds


def cv_folds(records: Sequence[Record], folds: int):
    """(training rows, validation rows) of each cross-validation fold, as scikit-learn's `PredefinedSplit` over
    `fold_of`: every article wholly inside one fold, and the same folds on every machine and in every release."""
    from sklearn.model_selection import PredefinedSplit

    return list(PredefinedSplit([fold_of(record, folds) for record in records]).split())
