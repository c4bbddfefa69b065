"""The deterministic train / held-out split used for every published number.

Records are grouped by PMC article, so that sub-figures of one article never sit on both sides, and an
article is held out when the first bytes of the SHA-1 of its id fall in the held-out fraction. The same
corpus therefore always splits the same way, on any machine.
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
