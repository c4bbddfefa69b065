"""Spaced repetition with FSRS (the `fsrs` package: the Free Spaced Repetition Scheduler that Anki uses).

A card is a kind of question about one image. Each answer is rated (`rating`): right → Good, right with the
hint → Hard, wrong → Again. FSRS keeps a memory model per card (stability, difficulty) and schedules the next
review for 90 % recall; a missed card returns after FSRS's relearning step (10 minutes), later in the same
sitting. Intervals never pass `MAX_INTERVAL_DAYS` (a course-length horizon), and fuzzing is off, so the same
answers always give the same schedule. `Card.memory` is FSRS's own card (JSON), stored beside the answer history.

Cards scheduled by the SM-2 of earlier releases are migrated by replaying their answers, in order, through FSRS
(`quiz.store`'s schema 3), so a returning student's history keeps counting.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

MAX_INTERVAL_DAYS = 365  # a course-length horizon: what is known this well is reviewed once a year


@dataclass(frozen=True)
class Card:
    card_id: str
    repetitions: int = 0  # right answers in a row
    lapses: int = 0  # wrong answers in all
    due: datetime | None = None  # None: new, due now
    interval_days: float = 0.0  # from the last answer to `due`
    memory: str = ""  # FSRS's card (JSON); empty for a card never answered


@functools.cache
def scheduler():
    """FSRS with one 10-minute learning and relearning step: a miss returns later in the sitting, a right answer
    graduates at once (FSRS's default first step of one minute would ask it again before the next question)."""
    from fsrs import Scheduler

    step = (timedelta(minutes=10),)
    return Scheduler(learning_steps=step, relearning_steps=step, maximum_interval=MAX_INTERVAL_DAYS,
                     enable_fuzzing=False)


def rating(correct: bool, used_hint: bool = False):
    from fsrs import Rating

    if not correct:
        return Rating.Again
    return Rating.Hard if used_hint else Rating.Good


def review(card: Card, correct: bool, used_hint: bool, now: datetime) -> Card:
    """The card after an answer at `now`."""
    from fsrs import Card as Memory

    memory = Memory.from_json(card.memory) if card.memory else Memory(due=now)
    memory, _ = scheduler().review_card(memory, rating(correct, used_hint), review_datetime=now)
    return replace(card, repetitions=card.repetitions + 1 if correct else 0,
                   lapses=card.lapses + (not correct), due=memory.due,
                   interval_days=round((memory.due - now).total_seconds() / 86400, 4), memory=memory.to_json())


def replay(card_id: str, answers) -> Card:
    """A card rebuilt from its (answered_at, correct, used_hint) history, in order (migrating SM-2 cards)."""
    card = Card(card_id)
    for answered_at, correct, used_hint in answers:
        card = review(card, correct, used_hint, answered_at)
    return card


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
