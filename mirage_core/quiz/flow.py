"""The Quiz page's flow as a state machine, without Streamlit: which screen a student is on and every move between
screens (start, answer, next, review, take or present a pack, leave), so the page only draws and calls.

`QuizFlow.screen` is derived from the state, never stored, so it cannot disagree with it:

    choosing ──start/review/take──▶ answering ──answer──▶ feedback ──next──▶ answering … ▶ finished ──new──▶ choosing
        └─────────────present──────▶ presenting ──leave──▶ (back where it was)

A move that needs the progress store raises `MirageError` when the store refuses (a database down, a full disk)
and leaves the state as it was, so nothing is shown as done that was not.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ..errors import MirageError
from ..labels import MODALITIES, REGIONS, UNKNOWN
from .questions import KIND_NAMES, Question, QuestionGenerator
from .session import LETTERS, Presentation, QuizSession, Result
from .store import ProgressStore, TopicMastery, check_learner, mastery_by_topic, weakest_topics


def quiz_topics(records) -> list[str]:
    """"mixed", then each modality and region the corpus holds: what a quiz can be about."""
    modalities, regions = {r.modality for r in records}, {r.region for r in records}
    return (["mixed"] + [f"modality:{m}" for m in MODALITIES if m in modalities and m != UNKNOWN]
            + [f"region:{r}" for r in REGIONS if r in regions and r != UNKNOWN])


class Screen(StrEnum):
    CHOOSING = "choosing"
    ANSWERING = "answering"
    FEEDBACK = "feedback"
    FINISHED = "finished"
    PRESENTING = "presenting"


@dataclass
class ReviewState:
    due: list[Question]
    upcoming: datetime | None  # when the next card returns, if none is due now
    schedule: list[tuple[Question, datetime]]


@dataclass
class ProgressState:
    days: list[dict]  # the store's mastery rows: day, topic, answers, accuracy
    by_topic: list[TopicMastery]
    weakest: list[TopicMastery]


@dataclass
class QuizFlow:
    learner: str = ""
    session: QuizSession | None = None
    presentation: Presentation | None = None
    notes: list[str] = field(default_factory=list)  # what the generator could not make, said on the page
    candidates: list[Question] = field(default_factory=list)  # an instructor's pack in the making

    @property
    def screen(self) -> Screen:
        if self.presentation is not None:
            return Screen.PRESENTING
        if self.session is None:
            return Screen.CHOOSING
        if self.session.finished:
            return Screen.FINISHED
        return Screen.FEEDBACK if self.session.answered_current is not None else Screen.ANSWERING

    def generate(self, index, encoder, n: int, kinds: list[str], difficulty: str, topic: str,
                 seed: int | None = None) -> list[Question]:
        """Up to `n` new questions; what could not be made is kept in `notes`, for the page to say."""
        generator = QuestionGenerator(index, encoder, seed=random.randrange(2**31) if seed is None else seed)
        questions = generator.questions(n, kinds, difficulty, topic, allow_fewer=True)
        self.notes = generator.notes(KIND_NAMES, n, len(questions), topic)
        return questions

    def name_learner(self, nickname: str, pin: str = "", claims=None) -> str:
        """The checked nickname ('' for none). A nickname claimed by joining a class (`claims`: a `Classroom`) opens
        only with its PIN. A bad nickname or PIN raises and leaves the learner unnamed."""
        self.learner = ""
        name = check_learner(nickname) if nickname.strip() else ""
        if name and claims is not None and not claims.unlock(name, pin):
            raise MirageError(f"'{name}' belongs to a class member: enter its PIN (from joining the class) to open it, "
                              "or choose another nickname")
        self.learner = name
        return self.learner

    @staticmethod
    def claimed(nickname: str, claims) -> bool:
        """Whether `nickname` is a class member's (and so needs its PIN); False for one that is not a nickname."""
        try:
            return bool(nickname.strip()) and claims.is_claimed(nickname)
        except MirageError:
            return False

    def start_practice(self, store: ProgressStore, length: int, make: Callable[[int], list[Question]]) -> None:
        """Up to half the quiz from the learner's due reviews, the rest fresh from `make(n)`."""
        due = store.due_questions(self.learner, limit=length // 2) if self.learner else []
        fresh = make(length - len(due)) if length > len(due) else []
        self.take(due + fresh, "Practice")

    def start_review(self, store: ProgressStore) -> None:
        due = store.due_questions(self.learner) if self.learner else []
        if not due:
            raise MirageError("nothing is due for review")
        self.take(due, "Review")

    def take(self, questions: list[Question], title: str) -> None:
        self.session = QuizSession(questions, self.learner, title)

    def answer(self, letter: str | None, store: ProgressStore | None) -> Result:
        """Mark the current question with the option `letter`; stored before it counts as answered."""
        if self.screen is not Screen.ANSWERING:
            raise MirageError("there is no open question to answer")
        if letter is None:
            raise MirageError("choose an option first")
        return self.session.answer(LETTERS.index(letter), store)

    def hint(self) -> str:
        if self.screen is not Screen.ANSWERING:
            raise MirageError("there is no open question")
        return self.session.hint()

    def next(self) -> None:
        if self.screen is not Screen.FEEDBACK:
            raise MirageError("answer the question first")
        self.session.advance()

    def new_quiz(self) -> None:
        self.session = None

    def present(self, questions: list[Question], title: str) -> None:
        self.presentation = Presentation(list(questions), title)

    def leave_presenter(self) -> None:
        self.presentation = None

    def review_state(self, store: ProgressStore) -> ReviewState:
        due = store.due_questions(self.learner)
        return ReviewState(due, None if due else store.next_due(self.learner), store.schedule(self.learner))

    def progress_state(self, store: ProgressStore) -> ProgressState:
        rows = store.mastery(self.learner)
        return ProgressState(rows, mastery_by_topic(rows), weakest_topics(rows))
