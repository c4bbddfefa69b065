"""Concurrent sessions on one app process: each does searches, a dual search, a generation and quiz answers,
all at once, on the shared (cached, read-only) encoder, index and generator, as Streamlit's session threads do.
Reports errors, p50/p95 per action, and answers acknowledged against answers stored (SQLite or PostgreSQL)."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import QUERIES, BenchResult, p50_p95


@dataclasses.dataclass
class LoadResult(BenchResult):
    sessions: int
    database: str
    errors: int
    error_examples: list
    actions: dict
    answers_acknowledged: int
    answers_stored: int
    wall_s: float

    def describe(self) -> str:
        lines = [f"{self.sessions} concurrent sessions on {self.database}: {self.errors} errors, "
                 f"{self.answers_stored}/{self.answers_acknowledged} acknowledged answers stored, {self.wall_s} s"]
        lines += [f"  {name:12s} n {v['n']:4d}  p50 {v['p50_ms']:9.1f} ms  p95 {v['p95_ms']:9.1f} ms"
                  for name, v in self.actions.items()]
        return "\n".join(lines + [f"  error: {e}" for e in self.error_examples])


def bench_load(index, encoder, generator, sessions: int = 8, searches: int = 10, answers: int = 5,
               database: str | None = None) -> LoadResult:
    from ..arithmetic import Term, dual_search
    from ..generation import GenerationRequest
    from ..quiz import KINDS, ProgressStore, QuestionGenerator
    from ..search import search_text

    with tempfile.TemporaryDirectory(prefix="mirage-load-") as folder:
        store = ProgressStore(database or Path(folder) / "progress.sqlite")
        questions = QuestionGenerator(index, encoder, seed=0).questions(answers, KINDS, "medium", allow_fewer=True)
        timings: dict[str, list[float]] = {"search": [], "dual_search": [], "generation": [], "quiz_answer": []}
        errors: list[str] = []
        acknowledged = 0
        lock = threading.Lock()
        learners = [f"load-{time.time_ns()}-{i}" for i in range(sessions)]

        def timed(action: str, run) -> bool:
            nonlocal acknowledged
            started = time.perf_counter()
            try:
                run()
            except Exception as error:  # a benchmark counts every failure, whatever its type
                with lock:
                    errors.append(f"{action}: {type(error).__name__}: {error}")
                return False
            with lock:
                timings[action].append((time.perf_counter() - started) * 1000)
            return True

        def session(number: int) -> None:
            nonlocal acknowledged
            for i in range(searches):
                query = QUERIES[(number + i) % len(QUERIES)]
                timed("search", lambda query=query: search_text(index, encoder, query, 12))
            timed("dual_search", lambda: dual_search(index, encoder, Term("chest x-ray"), [Term("bones")],
                                                     [Term("soft tissue")], k=8))
            timed("generation", lambda: generator.generate(GenerationRequest("chest x-ray", n=2, seed=number)))
            for j, question in enumerate(questions):
                chosen = (number + j) % 4
                if timed("quiz_answer", lambda q=question, c=chosen: store.record_answer(learners[number], q, c)):
                    with lock:
                        acknowledged += 1

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=sessions) as pool:
            list(pool.map(session, range(sessions)))
        wall = time.perf_counter() - started
        stored = sum(len(store.answers(learner)) for learner in learners)
        where = store.where.split("@")[-1] if database else "SQLite"
    actions = {}
    for name, samples in timings.items():
        p50, p95 = p50_p95(samples) if samples else (0.0, 0.0)
        actions[name] = {"n": len(samples), "p50_ms": p50, "p95_ms": p95}
    return LoadResult(sessions=sessions, database=where, errors=len(errors), error_examples=errors[:3],
                      actions=actions, answers_acknowledged=acknowledged, answers_stored=stored,
                      wall_s=round(wall, 1))
