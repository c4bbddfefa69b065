"""Learners' progress in SQLite: every answer, and each card's spaced-repetition state.

One database file (path from settings, `MIRAGE_QUIZ_DB`), WAL journal with full sync, so that an answer is
on disk once `record_answer` returns and a process killed mid-write loses nothing already recorded and
never leaves the file corrupt. An answer and its card update are one transaction. Learners are nicknames
(no passwords): this is a self-study log, not an account system.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import MirageError
from ..files import write_text
from .questions import Question
from .schedule import Card, grade, review

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    learner TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    question_id TEXT NOT NULL,
    card_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    difficulty TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    chosen INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    used_hint INTEGER NOT NULL,
    question TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_learner ON answers (learner, answered_at);
CREATE TABLE IF NOT EXISTS cards (
    learner TEXT NOT NULL,
    card_id TEXT NOT NULL,
    ease REAL NOT NULL,
    interval_days REAL NOT NULL,
    repetitions INTEGER NOT NULL,
    lapses INTEGER NOT NULL,
    due TEXT NOT NULL,
    question TEXT NOT NULL,
    PRIMARY KEY (learner, card_id)
);
"""
NICKNAME = re.compile(r"^[\w .'-]{1,40}$")
CSV_COLUMNS = ("answered_at", "kind", "topic", "difficulty", "subject_id", "prompt", "chosen_option",
               "correct_option", "correct", "used_hint")


def check_learner(name: str) -> str:
    cleaned = " ".join(str(name).split())
    if not NICKNAME.match(cleaned):
        raise MirageError("a nickname is 1–40 letters, digits, spaces, dots, dashes or apostrophes")
    return cleaned


def now_utc() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    """UTC ISO text of one fixed width, so that SQLite can compare stamps as strings."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Answer:
    answered_at: datetime
    question: Question
    chosen: int
    correct: bool
    used_hint: bool


class ProgressStore:
    """Open (creating if needed) the progress database at `path`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as connection:
                connection.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise MirageError(f"the progress database {self.path} cannot be used: {error}") from error

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            with connection:  # one transaction: commit on success, roll back on error
                yield connection
        finally:
            connection.close()

    # -- writing -----------------------------------------------------------------------------------------
    def record_answer(self, learner: str, question: Question, chosen: int, used_hint: bool = False,
                      at: datetime | None = None) -> Answer:
        """Store the answer and reschedule its card, atomically; returns the answer."""
        learner = check_learner(learner)
        at = at or now_utc()
        correct = chosen == question.answer
        card = self.card(learner, question.card_id) or Card(question.card_id)
        card = review(card, grade(correct, used_hint), at)
        payload = json.dumps(question.to_dict())
        with self._connect() as connection:
            connection.execute(
                "INSERT INTO answers (learner, answered_at, question_id, card_id, kind, topic, difficulty, subject_id,"
                " chosen, correct, used_hint, question) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (learner, _stamp(at), question.id, question.card_id, question.kind, question.topic,
                 question.difficulty, question.subject_id, chosen, int(correct), int(used_hint), payload),
            )
            connection.execute(
                "INSERT OR REPLACE INTO cards VALUES (?,?,?,?,?,?,?,?)",
                (learner, card.card_id, card.ease, card.interval_days, card.repetitions, card.lapses,
                 _stamp(card.due), payload),
            )
        return Answer(at, question, chosen, correct, used_hint)

    def reset(self, learner: str) -> int:
        """Forget everything about a learner; returns how many answers were deleted."""
        learner = check_learner(learner)
        with self._connect() as connection:
            deleted = connection.execute("DELETE FROM answers WHERE learner = ?", (learner,)).rowcount
            connection.execute("DELETE FROM cards WHERE learner = ?", (learner,))
        return deleted

    # -- reading -----------------------------------------------------------------------------------------
    def answers(self, learner: str) -> list[Answer]:
        learner = check_learner(learner)
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT answered_at, question, chosen, correct, used_hint FROM answers WHERE learner = ? ORDER BY id",
                (learner,),
            ).fetchall()
        return [Answer(datetime.fromisoformat(at), Question.from_dict(json.loads(q)), chosen, bool(ok), bool(hint))
                for at, q, chosen, ok, hint in rows]

    def card(self, learner: str, card_id: str) -> Card | None:
        with self._connect() as connection:
            row = connection.execute(
                "SELECT card_id, ease, interval_days, repetitions, lapses, due FROM cards"
                " WHERE learner = ? AND card_id = ?",
                (learner, card_id),
            ).fetchone()
        if row is None:
            return None
        return Card(row[0], row[1], row[2], row[3], row[4], datetime.fromisoformat(row[5]))

    def due_questions(self, learner: str, at: datetime | None = None, limit: int = 50) -> list[Question]:
        """Questions whose cards are due (missed ones first, then the most overdue)."""
        learner = check_learner(learner)
        at = at or now_utc()
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT question FROM cards WHERE learner = ? AND due <= ? ORDER BY repetitions, due LIMIT ?",
                (learner, _stamp(at), limit),
            ).fetchall()
        return [Question.from_dict(json.loads(row[0])) for row in rows]

    def mastery(self, learner: str) -> list[dict]:
        """Per topic and day: answers, share right, and the running share right up to that day."""
        totals: dict[str, list[int]] = {}
        table: dict[tuple[str, str], list[int]] = {}
        for answer in self.answers(learner):
            key = (answer.question.topic, answer.answered_at.date().isoformat())
            table.setdefault(key, [0, 0])
            table[key][0] += 1
            table[key][1] += int(answer.correct)
        rows = []
        for (topic, day), (count, right) in sorted(table.items(), key=lambda item: (item[0][1], item[0][0])):
            running = totals.setdefault(topic, [0, 0])
            running[0] += count
            running[1] += right
            rows.append({"topic": topic, "day": day, "answers": count, "accuracy": right / count,
                         "mastery": running[1] / running[0]})
        return rows

    def export_csv(self, learner: str, path: str | Path | None = None) -> str:
        """The learner's answers as CSV text; written atomically to `path` when given."""
        rows = []
        for answer in self.answers(learner):
            options = answer.question.options
            rows.append({
                "answered_at": answer.answered_at.isoformat(), "kind": answer.question.kind,
                "topic": answer.question.topic, "difficulty": answer.question.difficulty,
                "subject_id": answer.question.subject_id, "prompt": answer.question.prompt,
                "chosen_option": options[answer.chosen].text if 0 <= answer.chosen < len(options) else "",
                "correct_option": answer.question.correct.text, "correct": answer.correct,
                "used_hint": answer.used_hint,
            })
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
        if path is not None:
            write_text(path, text, newline="")
        return text
