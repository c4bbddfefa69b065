"""One class answering at once while its instructor's dashboard refreshes: N students (threads, as Streamlit's
sessions are) join a class and answer an assigned pack, pausing a moment over each question (`think_s`, far
quicker than a real student); meanwhile the dashboard is recomputed again and again.
Reports errors, `lost` (acknowledged answers missing from the database afterwards) and the dashboard's p50/p95."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from pathlib import Path

from . import BenchResult, p50_p95


@dataclasses.dataclass
class ClassResult(BenchResult):
    students: int
    database: str
    answers_each: int
    errors: int
    error_examples: list
    acknowledged: int
    lost: int
    answer_p95_ms: float
    dashboard_refreshes: int
    dashboard_p50_ms: float
    dashboard_p95_ms: float
    wall_s: float

    def describe(self) -> str:
        return (f"{self.students} students of one class on {self.database}, {self.answers_each} answers each: "
                f"{self.errors} errors, {self.lost} of {self.acknowledged} acknowledged answers lost; answer p95 "
                f"{self.answer_p95_ms} ms; dashboard p50 {self.dashboard_p50_ms} ms, p95 {self.dashboard_p95_ms} ms "
                f"over {self.dashboard_refreshes} refreshes; {self.wall_s} s")


def bench_class(index, encoder, students: int = 30, answers: int = 10, database: str | None = None,
                think_s: float = 0.2) -> ClassResult:
    from ..quiz import KINDS, ProgressStore, QuestionGenerator, make_pack
    from ..quiz.classes import Classroom
    from ..quiz.packs import dump_pack

    with tempfile.TemporaryDirectory(prefix="mirage-class-") as folder:
        store = ProgressStore(database or Path(folder) / "progress.sqlite")
        room = Classroom(store)
        questions = QuestionGenerator(index, encoder, seed=0).questions(answers, KINDS, "medium", allow_fewer=True)
        code = room.create(f"bench {time.time_ns()}").code
        room.assign(code, dump_pack(make_pack(questions, "Bench pack"), "json").encode(), "bench.json", index)
        names = [f"bench {time.time_ns() % 10**8} {i}" for i in range(students)]
        for name in names:
            room.join(code, name)
        errors: list[str] = []
        answer_times: list[float] = []
        dashboard_times: list[float] = []
        acknowledged = 0
        lock = threading.Lock()
        done = threading.Event()

        def student(name: str, offset: int) -> None:
            nonlocal acknowledged
            for i in range(len(questions)):
                time.sleep(think_s * (0.5 + (i * 7 + offset) % 10 / 10))  # reading the question: 0.5–1.4 × think_s
                question = questions[(i + offset) % len(questions)]
                started = time.perf_counter()
                try:
                    store.record_answer(name, question, chosen=(question.answer + i) % len(question.options))
                except Exception as error:  # every failure is counted, whatever its type
                    with lock:
                        errors.append(f"answer: {type(error).__name__}: {error}")
                    continue
                with lock:
                    acknowledged += 1
                    answer_times.append((time.perf_counter() - started) * 1000)

        def dashboard() -> None:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    room.report(code)
                except Exception as error:
                    with lock:
                        errors.append(f"dashboard: {type(error).__name__}: {error}")
                dashboard_times.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        refresher = threading.Thread(target=dashboard)
        refresher.start()
        threads = [threading.Thread(target=student, args=(name, i)) for i, name in enumerate(names)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        refresher.join()
        wall = time.perf_counter() - started
        stored = sum(len(store.answers(name)) for name in names)
        _, answer_p95 = p50_p95(answer_times) if answer_times else (0.0, 0.0)
        board_p50, board_p95 = p50_p95(dashboard_times)
        return ClassResult(
            students=students, database="PostgreSQL" if database else "SQLite", answers_each=len(questions),
            errors=len(errors), error_examples=errors[:3], acknowledged=acknowledged, lost=acknowledged - stored,
            answer_p95_ms=answer_p95, dashboard_refreshes=len(dashboard_times), dashboard_p50_ms=board_p50,
            dashboard_p95_ms=board_p95, wall_s=round(wall, 1))
