"""Classes: an instructor's cohort, joined with a short code, given packs as assignments, seen on one dashboard.

- An instructor creates a class (a name and a join code that is hard to guess: 8 characters from 31, ~10¹²) and
  assigns packs to it, with an optional due date. Instructors are whoever holds the deployment's instructor key
  (`MIRAGE_INSTRUCTOR_KEY`, see `InstructorGate`); the command line, which runs where the database is, needs none.
- A student joins with the code and their nickname. Joining claims the nickname: the student is given a PIN once,
  and from then on the nickname's answers and progress open only with it (only a salted scrypt hash is kept), so
  no classmate can read or add to them by typing the name.
- `ClassReport` is the dashboard's content: mastery per topic and question kind, participation per day, the most
  missed questions with the distractors chosen and why each is wrong, and completion per assignment; as CSV too.
  It counts a member's answers from the moment they joined.

The tables live in the progress database beside answers and cards (`store.MIGRATIONS`, schema 4).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import secrets
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from ..errors import MirageError
from .explain import topic_name
from .packs import parse_pack
from .questions import KIND_NAMES, Question, why_wrong
from .store import (
    ProgressStore,
    answers_table,
    assignments_table,
    check_learner,
    claims_table,
    classes_table,
    members_table,
    now_utc,
    stamp,
)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed from a projector
CODE_LENGTH = 8
MAX_CLASS_NAME = 60


def normalise_code(code: str) -> str:
    cleaned = "".join(ch for ch in str(code).upper() if ch.isalnum())
    if len(cleaned) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in cleaned):
        raise MirageError(f"a join code is {CODE_LENGTH} letters and digits, like ABCD-EFGH")
    return cleaned


def show_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def _hash_pin(pin: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"{salt.hex()}:{digest.hex()}"


def _pin_matches(pin: str, stored: str) -> bool:
    salt, _, _ = stored.partition(":")
    return hmac.compare_digest(_hash_pin(pin, bytes.fromhex(salt)), stored)


@dataclass(frozen=True)
class ClassInfo:
    code: str
    name: str
    created: datetime
    members: int = 0
    assignments: int = 0


@dataclass(frozen=True)
class Assignment:
    id: int
    code: str
    title: str
    questions: list[Question]
    due: datetime | None
    created: datetime


@dataclass(frozen=True)
class AssignmentProgress:
    assignment: Assignment
    answered: int  # distinct questions of the assignment the learner has answered since it was set

    @property
    def done(self) -> bool:
        return self.answered >= len(self.assignment.questions)


@dataclass
class MissedQuestion:
    question: Question
    answers: int
    wrong: int
    distractors: list[tuple[str, int, str]]  # (option text, times chosen, why it is wrong)


@dataclass
class ClassReport:
    info: ClassInfo
    members: list[str]
    topics: list[dict] = field(default_factory=list)  # {dimension, topic, name, answers, right, share}
    days: list[dict] = field(default_factory=list)  # {day, answers, students}
    missed: list[MissedQuestion] = field(default_factory=list)
    completion: list[dict] = field(default_factory=list)  # {title, due, questions, done, started, members}

    def to_dict(self) -> dict:
        return {
            "class": {"code": show_code(self.info.code), "name": self.info.name, "members": len(self.members)},
            "topics": self.topics, "days": self.days, "completion": self.completion,
            "most_missed": [{"question": m.question.summary(120), "answers": m.answers, "wrong": m.wrong,
                             "distractors": [{"option": text, "chosen": n, "why_wrong": why}
                                             for text, n, why in m.distractors]} for m in self.missed],
        }

    def to_csv(self) -> str:
        """One table a spreadsheet opens: a section column, then the section's fields (no nickname in it)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["section", "item", "detail", "answers", "right_or_done", "share_or_students"])
        for row in self.topics:
            writer.writerow(["mastery", row["dimension"], row["name"], row["answers"], row["right"],
                             f"{row['share']:.3f}"])
        for row in self.days:
            writer.writerow(["participation", row["day"], "", row["answers"], "", row["students"]])
        for missed in self.missed:
            for text, chosen, why in missed.distractors:
                writer.writerow(["most missed", missed.question.summary(120), text, missed.answers, chosen, why])
        for row in self.completion:
            writer.writerow(["assignment", row["title"], row["due"] or "", row["questions"], row["done"],
                             row["started"]])
        return buffer.getvalue()


class Classroom:
    """Classes, members and assignments in the progress database of `store` (one transaction per call)."""

    def __init__(self, store: ProgressStore):
        self.store = store

    # -- instructors ---------------------------------------------------------------------------------------
    def create(self, name: str) -> ClassInfo:
        name = " ".join(str(name).split())
        if not 1 <= len(name) <= MAX_CLASS_NAME:
            raise MirageError(f"a class name is 1–{MAX_CLASS_NAME} characters")
        created = now_utc()
        for _ in range(5):  # a clash among 10¹² codes is rare; a second draw settles it
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            with self.store.transaction() as connection:
                if connection.execute(sa.select(classes_table.c.code).where(classes_table.c.code == code)).first():
                    continue
                connection.execute(classes_table.insert().values(code=code, name=name, created=stamp(created)))
            return ClassInfo(code, name, created)
        raise MirageError("could not draw a free join code: try again")

    def classes(self) -> list[ClassInfo]:
        with self.store.reading() as connection:
            rows = connection.execute(sa.select(classes_table).order_by(classes_table.c.created)).all()
            members = Counter(r.code for r in connection.execute(sa.select(members_table.c.code)))
            assigned = Counter(r.code for r in connection.execute(sa.select(assignments_table.c.code)))
        return [ClassInfo(r.code, r.name, datetime.fromisoformat(r.created), members[r.code], assigned[r.code])
                for r in rows]

    def info(self, code: str) -> ClassInfo:
        code = normalise_code(code)
        for info in self.classes():
            if info.code == code:
                return info
        raise MirageError(f"no class has the code {show_code(code)}")

    def assign(self, code: str, data: bytes, name: str, index, due: datetime | None = None) -> Assignment:
        """Set the pack file `data` (checked as any uploaded pack is, against the corpus `index`) for the class."""
        info = self.info(code)
        header, questions = parse_pack(data, name, index)
        created = now_utc()
        stored = json.dumps({"title": header["title"], "author": header["author"],
                             "questions": [q.to_dict() for q in questions]})
        with self.store.transaction() as connection:
            result = connection.execute(assignments_table.insert().values(
                code=info.code, title=header["title"], pack=stored, due=stamp(due) if due else None,
                created=stamp(created)))
            number = result.inserted_primary_key[0]
        return Assignment(number, info.code, header["title"], questions, due, created)

    def assignments(self, code: str) -> list[Assignment]:
        code = normalise_code(code)
        with self.store.reading() as connection:
            rows = connection.execute(sa.select(assignments_table).where(assignments_table.c.code == code)
                                      .order_by(assignments_table.c.id)).all()
        return [_assignment(row) for row in rows]

    # -- students ------------------------------------------------------------------------------------------
    def join(self, code: str, learner: str, pin: str = "") -> str | None:
        """Put `learner` in the class. A nickname no one has claimed is claimed now and its new PIN returned (shown
        once); a claimed one joins only with its PIN. None when the learner was already in the class."""
        learner, code = check_learner(learner), normalise_code(code)
        self.info(code)
        new_pin = None
        with self.store.transaction() as connection:
            claim = connection.execute(sa.select(claims_table).where(claims_table.c.learner == learner)).first()
            if claim is None:
                new_pin = "-".join(str(secrets.randbelow(10**3)).zfill(3) for _ in range(2))
                connection.execute(claims_table.insert().values(learner=learner, pin_hash=_hash_pin(new_pin),
                                                                claimed=stamp(now_utc())))
            elif not _pin_matches(pin, claim.pin_hash):
                raise MirageError(f"the nickname '{learner}' is taken: give its PIN, or choose another nickname")
            member = sa.select(members_table).where(members_table.c.code == code, members_table.c.learner == learner)
            if connection.execute(member).first():
                return None
            connection.execute(members_table.insert().values(code=code, learner=learner, joined=stamp(now_utc())))
        return new_pin

    def is_claimed(self, learner: str) -> bool:
        with self.store.reading() as connection:
            return connection.execute(sa.select(claims_table.c.learner)
                                      .where(claims_table.c.learner == check_learner(learner))).first() is not None

    def unlock(self, learner: str, pin: str) -> bool:
        """Whether `pin` opens the claimed nickname `learner` (True for an unclaimed one)."""
        with self.store.reading() as connection:
            claim = connection.execute(sa.select(claims_table)
                                       .where(claims_table.c.learner == check_learner(learner))).first()
        return claim is None or _pin_matches(pin, claim.pin_hash)

    def classes_of(self, learner: str) -> list[ClassInfo]:
        learner = check_learner(learner)
        with self.store.reading() as connection:
            codes = {r.code for r in connection.execute(sa.select(members_table.c.code)
                                                          .where(members_table.c.learner == learner))}
        return [info for info in self.classes() if info.code in codes]

    def open_assignments(self, learner: str) -> list[AssignmentProgress]:
        """The learner's assignments not yet done, soonest due first (those without a date last)."""
        learner = check_learner(learner)
        progress = []
        for info in self.classes_of(learner):
            for assignment in self.assignments(info.code):
                answered = self._answered(learner, assignment)
                if answered < len(assignment.questions):
                    progress.append(AssignmentProgress(assignment, answered))
        far = datetime.max.replace(tzinfo=now_utc().tzinfo)
        return sorted(progress, key=lambda p: (p.assignment.due or far, p.assignment.id))

    def _answered(self, learner: str, assignment: Assignment) -> int:
        ids = {q.id for q in assignment.questions}
        columns = answers_table.c
        with self.store.reading() as connection:
            rows = connection.execute(sa.select(columns.question_id).distinct().where(
                columns.learner == learner, columns.answered_at >= stamp(assignment.created))).all()
        return len(ids & {r.question_id for r in rows})

    # -- the dashboard -------------------------------------------------------------------------------------
    def report(self, code: str, most_missed: int = 8) -> ClassReport:
        code = normalise_code(code)
        columns = answers_table.c
        with self.store.reading() as connection:  # one snapshot, however many students are answering
            row = connection.execute(sa.select(classes_table).where(classes_table.c.code == code)).first()
            if row is None:
                raise MirageError(f"no class has the code {show_code(code)}")
            members = {r.learner: r.joined for r in connection.execute(
                sa.select(members_table).where(members_table.c.code == code))}
            assignments = [_assignment(r) for r in connection.execute(
                sa.select(assignments_table).where(assignments_table.c.code == code).order_by(assignments_table.c.id))]
            rows = connection.execute(
                sa.select(columns.learner, columns.answered_at, columns.question_id, columns.kind, columns.topic,
                          columns.chosen, columns.correct, columns.question)
                .select_from(answers_table.join(members_table, members_table.c.learner == columns.learner))
                .where(members_table.c.code == code, columns.answered_at >= members_table.c.joined)).all()
        info = ClassInfo(row.code, row.name, datetime.fromisoformat(row.created), len(members), len(assignments))
        report = ClassReport(info, sorted(members))
        topics: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        days: dict[str, list] = defaultdict(lambda: [0, set()])
        by_question: dict[str, dict] = {}
        for row in rows:
            dimension, _, _ = row.topic.partition(":")
            for key in ((dimension, row.topic), ("kind", row.kind)):
                topics[key][0] += 1
                topics[key][1] += row.correct
            day = row.answered_at[:10]
            days[day][0] += 1
            days[day][1].add(row.learner)
            entry = by_question.setdefault(row.question_id,
                                           {"question": row.question, "answers": 0, "chosen": Counter()})
            entry["answers"] += 1
            if not row.correct:
                entry["chosen"][row.chosen] += 1
        report.topics = sorted(({"dimension": d, "topic": t, "answers": n, "right": r, "share": r / n,
                                 "name": KIND_NAMES.get(t, t) if d == "kind" else topic_name(t)}
                                for (d, t), (n, r) in topics.items()), key=lambda row: (row["share"], -row["answers"]))
        report.days = [{"day": day, "answers": n, "students": len(who)} for day, (n, who) in sorted(days.items())]
        worst = sorted((e for e in by_question.values() if e["chosen"]),
                       key=lambda e: (-sum(e["chosen"].values()), -e["answers"]))[:most_missed]
        for entry in worst:
            question = Question.from_dict(json.loads(entry["question"]))
            distractors = [(question.options[i].text, n, why_wrong(question, i))
                           for i, n in entry["chosen"].most_common() if 0 <= i < len(question.options)]
            report.missed.append(MissedQuestion(question, entry["answers"], sum(entry["chosen"].values()),
                                                distractors))
        for assignment in assignments:
            since, wanted = stamp(assignment.created), {q.id for q in assignment.questions}
            answered: dict[str, set] = defaultdict(set)
            for row in rows:
                if row.answered_at >= since and row.question_id in wanted:
                    answered[row.learner].add(row.question_id)
            report.completion.append({
                "title": assignment.title, "due": assignment.due.date().isoformat() if assignment.due else None,
                "questions": len(wanted), "members": len(members),
                "done": sum(len(seen) >= len(wanted) for seen in answered.values()),
                "started": len(answered)})
        return report


def _assignment(row) -> Assignment:
    pack = json.loads(row.pack)
    questions = [Question.from_dict(q) for q in pack["questions"]]
    return Assignment(row.id, row.code, row.title, questions, datetime.fromisoformat(row.due) if row.due else None,
                      datetime.fromisoformat(row.created))


class InstructorGate:
    """The instructor area's key check: constant-time comparison, and each failure from anywhere slows the next
    attempt (doubling up to `max_delay_s`, back to nothing after a success), so guessing the key is impractically
    slow. The key itself is held only here and never returned, shown or logged; a session remembers a keyed digest
    of it (`token`), which `admits` checks again on every page run, so nothing a browser sends stands in for it."""

    def __init__(self, key: str, max_delay_s: float = 8.0):
        self._key = key or ""
        self._salt = secrets.token_bytes(16)  # per process: a token is worthless anywhere else
        self._failures = 0
        self._lock = threading.Lock()
        self.max_delay_s = max_delay_s

    @property
    def enabled(self) -> bool:
        return len(self._key) >= 1

    def _digest(self, key: str) -> str:
        return hmac.new(self._salt, key.encode(), hashlib.sha256).hexdigest()

    def delay_s(self) -> float:
        with self._lock:
            return 0.0 if not self._failures else min(self.max_delay_s, 0.25 * 2 ** (self._failures - 1))

    def sign_in(self, attempt: str) -> str | None:
        """A session token when `attempt` is the key, else None (after the throttle's wait)."""
        time.sleep(self.delay_s())
        if self.enabled and hmac.compare_digest(self._digest(attempt), self._digest(self._key)):
            with self._lock:
                self._failures = 0
            return self._digest(self._key)
        with self._lock:
            self._failures += 1
        return None

    def admits(self, token: object) -> bool:
        return self.enabled and isinstance(token, str) and hmac.compare_digest(token, self._digest(self._key))
