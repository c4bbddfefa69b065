"""One sitting of a quiz: the questions, where the learner is, what they answered; no Streamlit in here.

The page keeps a `QuizSession` in its session state and calls `hint`, `answer` and `advance`; each answer
is written to the `ProgressStore` (when a learner is named) as soon as it is given.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..errors import MirageError
from .questions import Question
from .store import ProgressStore

LETTERS = "ABCD"


@dataclass
class Result:
    question: Question
    chosen: int
    used_hint: bool

    @property
    def correct(self) -> bool:
        return self.chosen == self.question.answer


@dataclass
class QuizSession:
    questions: list[Question]
    learner: str = ""
    title: str = "Practice"
    position: int = 0
    results: list[Result] = field(default_factory=list)
    hint_shown: bool = False

    def __post_init__(self):
        if not self.questions:
            raise MirageError("a quiz needs at least one question")

    @property
    def current(self) -> Question | None:
        return self.questions[self.position] if self.position < len(self.questions) else None

    @property
    def answered_current(self) -> Result | None:
        return self.results[-1] if len(self.results) > self.position else None

    @property
    def finished(self) -> bool:
        return self.position >= len(self.questions)

    def hint(self) -> str:
        self.hint_shown = True
        return self.current.hint if self.current else ""

    def answer(self, chosen: int, store: ProgressStore | None = None) -> Result:
        """Mark the current question; the answer is stored before this returns."""
        question = self.current
        if question is None:
            raise MirageError("the quiz is over")
        if self.answered_current is not None:
            return self.answered_current
        if not 0 <= chosen < len(question.options):
            raise MirageError("choose one of the options")
        if store is not None and self.learner:
            store.record_answer(self.learner, question, chosen, self.hint_shown)
        result = Result(question, chosen, self.hint_shown)
        self.results.append(result)
        return result

    def advance(self) -> None:
        if self.answered_current is None:
            raise MirageError("answer the question first")
        self.position += 1
        self.hint_shown = False

    def summary(self) -> dict:
        by_topic: dict[str, Counter] = {}
        for result in self.results:
            counts = by_topic.setdefault(result.question.topic, Counter())
            counts["answered"] += 1
            counts["right"] += int(result.correct)
        return {
            "answered": len(self.results), "right": sum(r.correct for r in self.results),
            "hints": sum(r.used_hint for r in self.results),
            "by_topic": {topic: dict(counts) for topic, counts in sorted(by_topic.items())},
        }


PRESENTER_STEPS = ("question", "answer", "why the others are wrong", "source")


@dataclass
class Presentation:
    """An instructor showing a pack to a room: one question at a time, revealed step by step
    (`PRESENTER_STEPS`): the question, then its answer, then why each distractor is wrong, then the source."""

    questions: list[Question]
    title: str = "Quiz"
    position: int = 0
    step: int = 0

    def __post_init__(self):
        if not self.questions:
            raise MirageError("there are no questions to present")

    @property
    def current(self) -> Question:
        return self.questions[self.position]

    def shows(self, step: str) -> bool:
        """Whether `step` (one of `PRESENTER_STEPS`) is on screen."""
        return self.step >= PRESENTER_STEPS.index(step)

    @property
    def fully_revealed(self) -> bool:
        return self.step == len(PRESENTER_STEPS) - 1

    @property
    def coming(self) -> str | None:
        """What `advance` shows next: the next step, "next question", or None at the very end."""
        if not self.fully_revealed:
            return PRESENTER_STEPS[self.step + 1]
        return "next question" if self.position + 1 < len(self.questions) else None

    def advance(self) -> None:
        """One press of a clicker: the next step of this question, or the next question once all is shown."""
        if not self.fully_revealed:
            self.step += 1
        else:
            self.next()

    def next(self) -> None:
        """The next question from its start; past the last one, nothing changes."""
        if self.position + 1 < len(self.questions):
            self.position, self.step = self.position + 1, 0

    def previous(self) -> None:
        if self.position > 0:
            self.position, self.step = self.position - 1, 0
