"""Spaced repetition: SM-2 (Wozniak, 1990) with a short relearning step for missed questions.

A card is a kind of question about one image. Each answer is graded 0–5 (`grade`): right → 5, right
with the hint → 3, wrong → 1. Grades ≥ 3 grow the interval (1 day, 6 days, then × the ease factor);
a miss resets the repetitions and brings the card back after `RELEARN_MINUTES`, later in the same sitting,
then the next day. The ease factor follows SM-2's formula and never drops below 1.3; an interval never grows
past `MAX_INTERVAL_DAYS` (SM-2 alone reaches centuries after a dozen right answers, and the date overflows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

MIN_EASE = 1.3
START_EASE = 2.5
RELEARN_MINUTES = 10
MAX_INTERVAL_DAYS = 365.0  # a course-length horizon: what is known this well is reviewed once a year


@dataclass(frozen=True)
class Card:
    card_id: str
    ease: float = START_EASE
    interval_days: float = 0.0
    repetitions: int = 0
    lapses: int = 0
    due: datetime | None = None  # None: new, due now


def grade(correct: bool, used_hint: bool = False) -> int:
    if not correct:
        return 1
    return 3 if used_hint else 5


def review(card: Card, quality: int, now: datetime) -> Card:
    """The card after an answer of the given quality (0–5) at `now`."""
    if not 0 <= quality <= 5:
        raise ValueError(f"quality must be 0–5, not {quality}")
    ease = max(MIN_EASE, card.ease + 0.1 - (5 - quality) * (0.08 + (5 - quality) * 0.02))
    if quality < 3:
        return replace(card, ease=ease, interval_days=0.0, repetitions=0, lapses=card.lapses + 1,
                       due=now + timedelta(minutes=RELEARN_MINUTES))
    repetitions = card.repetitions + 1
    if repetitions == 1:
        interval = 1.0
    elif repetitions == 2:
        interval = 6.0
    else:
        interval = min(round(card.interval_days * ease, 2), MAX_INTERVAL_DAYS)
    return replace(card, ease=ease, interval_days=interval, repetitions=repetitions,
                   due=now + timedelta(days=interval))


def when_due(due: datetime, now: datetime | None = None) -> str:
    """'in 10 minutes', 'in 3 hours', 'in 6 days' or 'now': when a card returns, in a learner's words."""
    seconds = (due - (now or datetime.now(due.tzinfo))).total_seconds()
    if seconds <= 0:
        return "now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size)
            return f"in {count} {unit}{'s' if count != 1 else ''}"
    return "in under a minute"
