"""Quiz questions generated per second and the share of candidates that validation rejects, per difficulty."""

from __future__ import annotations

import dataclasses
import time

from ..index import Index
from . import BenchResult


@dataclasses.dataclass
class QuizResult(BenchResult):
    n: int
    images: int
    easy: dict
    medium: dict
    hard: dict

    def describe(self) -> str:
        return "\n".join([f"{self.n} questions per difficulty from {self.images} images"] + [
            f"  {d:6s} {v['ms_per_question']:6.2f} ms/question, {100 * v['rejected_share']:.1f} % of "
            f"{v['attempts']} candidates rejected" for d, v in (("easy", self.easy), ("medium", self.medium),
                                                                 ("hard", self.hard))])


def bench_quiz(index: Index, encoder, n: int = 250, seed: int = 0) -> QuizResult:
    from ..quiz import KINDS, QuestionGenerator

    result = {}
    for difficulty in ("easy", "medium", "hard"):
        generator = QuestionGenerator(index, encoder, seed=seed)
        started = time.perf_counter()
        generator.questions(n, KINDS, difficulty)
        seconds = time.perf_counter() - started
        result[difficulty] = {"ms_per_question": round(1000 * seconds / n, 2),
                              "rejected_share": round(generator.rejected_share, 3),
                              "attempts": generator.attempts}
    return QuizResult(n=n, images=len(index), **result)
