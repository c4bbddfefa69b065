"""Learners' progress: every answer and each card's spaced-repetition state, on SQLite or PostgreSQL.

One schema in SQLAlchemy Core serves both engines: a local SQLite file (the offline default, WAL journal
with full sync) or a PostgreSQL database that several app replicas share (`MIRAGE_DATABASE_URL`), which is
what keeps progress across Community Cloud's reboots. An answer and its card update are one transaction,
and the card is locked for it (SQLite: the transaction begins IMMEDIATE; PostgreSQL: SELECT … FOR UPDATE
after making sure the row exists), so concurrent answers for one learner and card never lose an update.
A newer version of MIRAGE migrates an older database in place (`MIGRATIONS`). Learners are nicknames (no
passwords): this is a self-study log, not an account system.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import MirageError
from ..files import write_text
from .explain import topic_name
from .questions import Question
from .schedule import Card, replay, review

metadata = sa.MetaData()
answers_table = sa.Table(
    "answers", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("learner", sa.Text, nullable=False),
    sa.Column("answered_at", sa.Text, nullable=False),
    sa.Column("question_id", sa.Text, nullable=False),
    sa.Column("card_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("difficulty", sa.Text, nullable=False),
    sa.Column("subject_id", sa.Text, nullable=False),
    sa.Column("chosen", sa.Integer, nullable=False),
    sa.Column("correct", sa.Integer, nullable=False),
    sa.Column("used_hint", sa.Integer, nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Index("answers_by_learner", "learner", "answered_at"),
)
cards_table = sa.Table(
    "cards", metadata,
    sa.Column("learner", sa.Text, primary_key=True),
    sa.Column("card_id", sa.Text, primary_key=True),
    sa.Column("ease", sa.Float, nullable=False),
    sa.Column("interval_days", sa.Float, nullable=False),
    sa.Column("repetitions", sa.Integer, nullable=False),
    sa.Column("lapses", sa.Integer, nullable=False),
    sa.Column("due", sa.Text, nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("memory", sa.Text, nullable=False, server_default=""),  # FSRS's card, JSON (schema 3)
)
classes_table = sa.Table(
    "classes", metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created", sa.Text, nullable=False),
)
members_table = sa.Table(
    "class_members", metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("learner", sa.Text, primary_key=True),
    sa.Column("joined", sa.Text, nullable=False),
)
claims_table = sa.Table(  # nicknames claimed by joining a class: a salted scrypt hash of each one's PIN
    "learner_claims", metadata,
    sa.Column("learner", sa.Text, primary_key=True),
    sa.Column("pin_hash", sa.Text, nullable=False),
    sa.Column("claimed", sa.Text, nullable=False),
)
assignments_table = sa.Table(
    "assignments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("pack", sa.Text, nullable=False),
    sa.Column("due", sa.Text, nullable=True),
    sa.Column("created", sa.Text, nullable=False),
)
# `ease` is SM-2's ease factor, kept for the cards of schema 1–2; FSRS (schema 3) keeps its state in `memory`
version_table = sa.Table("mirage_schema", metadata, sa.Column("version", sa.Integer, nullable=False))


def _create_v1(connection: sa.Connection) -> None:
    """Version 1: the answers and cards tables (the layout of the first, SQLite-only releases)."""
    answers_table.create(connection, checkfirst=True)
    cards_table.create(connection, checkfirst=True)


def _index_due_cards(connection: sa.Connection) -> None:
    """Version 2: reviews look cards up by learner and due time."""
    connection.execute(sa.text("CREATE INDEX IF NOT EXISTS cards_due ON cards (learner, due)"))


def _fsrs_memory(connection: sa.Connection) -> None:
    """Version 3: FSRS replaces SM-2. Each card gets FSRS's memory, rebuilt by replaying its answers in order, and
    its due time, repetitions and lapses from that replay; no answer is changed or lost."""
    if "memory" not in {column["name"] for column in sa.inspect(connection).get_columns("cards")}:
        connection.execute(sa.text("ALTER TABLE cards ADD COLUMN memory TEXT NOT NULL DEFAULT ''"))
    answers = answers_table.c
    history: dict[tuple[str, str], list] = {}
    for learner, card_id, at, correct, hint in connection.execute(
            sa.select(answers.learner, answers.card_id, answers.answered_at, answers.correct, answers.used_hint)
            .order_by(answers.id)):
        history.setdefault((learner, card_id), []).append((datetime.fromisoformat(at), bool(correct), bool(hint)))
    for (learner, card_id), answered in history.items():
        card = replay(card_id, answered)
        connection.execute(cards_table.update().where(
            cards_table.c.learner == learner, cards_table.c.card_id == card_id).values(
            interval_days=card.interval_days, repetitions=card.repetitions, lapses=card.lapses,
            due=stamp(card.due), memory=card.memory))


def _classes(connection: sa.Connection) -> None:
    """Version 4: classes, members, claimed nicknames and assignments (see `classes`)."""
    for table in (classes_table, members_table, claims_table, assignments_table):
        table.create(connection, checkfirst=True)


MIGRATIONS: list[Callable[[sa.Connection], None]] = [_create_v1, _index_due_cards, _fsrs_memory, _classes]  # index + 1
SCHEMA_VERSION = len(MIGRATIONS)
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


def stamp(moment: datetime) -> str:
    """UTC ISO text of one fixed width, so that SQLite can compare stamps as strings."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Answer:
    answered_at: datetime
    question: Question
    chosen: int
    correct: bool
    used_hint: bool


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL: `postgresql://…` (driven by psycopg 3), `sqlite:///…`, or a plain file path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().absolute()}"


class ProgressStore:
    """Open (creating and migrating if needed) the progress database at `target`: a file path or a URL."""

    def __init__(self, target: str | Path):
        url = database_url(target)
        self.url = sa.engine.make_url(url)
        try:
            if self.url.get_backend_name() == "sqlite" and self.url.database:
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MirageError(f"the progress database {self.where} cannot be used: its folder cannot be made "
                              f"({error.strerror or error})") from None
        try:
            self.engine = _engine(url)
            self._migrate()
        except SQLAlchemyError as error:
            raise MirageError(f"the progress database {self.where} cannot be used: {_reason(error)}") from None

    @property
    def where(self) -> str:
        """The database as a person writes it: no password, and no SQLAlchemy driver name ("+psycopg")."""
        return self.url.set(drivername=self.url.get_backend_name()).render_as_string(hide_password=True)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One transaction; a database that is down or restarting becomes a clear, retryable MirageError."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except DBAPIError as error:
            raise MirageError(f"the progress database is unavailable ({_reason(error)}); nothing was saved — "
                              "try again in a moment") from None

    @contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """One read-only transaction: a consistent snapshot that, on SQLite, waits for no writer."""
        try:
            with self.engine.connect().execution_options(mirage_read=True) as connection, connection.begin():
                yield connection
        except DBAPIError as error:
            raise MirageError(f"the progress database is unavailable ({_reason(error)}); try again in a moment") \
                from None

    def _migrate(self) -> None:
        with self.engine.begin() as connection:
            version_table.create(connection, checkfirst=True)
            row = connection.execute(sa.select(version_table.c.version)).first()
            inspector = sa.inspect(connection)
            version = row.version if row else (1 if inspector.has_table("answers") else 0)
            if version > SCHEMA_VERSION:
                raise MirageError(f"the progress database has schema {version}, newer than this MIRAGE "
                                  f"({SCHEMA_VERSION}): upgrade MIRAGE")
            for migration in MIGRATIONS[version:]:
                migration(connection)
            if row is None:
                connection.execute(version_table.insert().values(version=SCHEMA_VERSION))
            elif version < SCHEMA_VERSION:
                connection.execute(version_table.update().values(version=SCHEMA_VERSION))

    # -- writing -----------------------------------------------------------------------------------------
    def record_answer(self, learner: str, question: Question, chosen: int, used_hint: bool = False,
                      at: datetime | None = None) -> Answer:
        """Store the answer and reschedule its card in one transaction that holds the card's lock."""
        learner = check_learner(learner)
        at = at or now_utc()
        correct = chosen == question.answer
        payload = json.dumps(question.to_dict())
        fresh = Card(question.card_id)
        with self.transaction() as connection:
            insert = _insert(connection)(cards_table).values(
                learner=learner, card_id=fresh.card_id, ease=0.0, interval_days=fresh.interval_days,
                repetitions=0, lapses=0, due=stamp(at), question=payload, memory="")
            connection.execute(insert.on_conflict_do_nothing())  # the row exists, so it can be locked
            row = connection.execute(
                sa.select(cards_table).where(cards_table.c.learner == learner,
                                             cards_table.c.card_id == question.card_id).with_for_update()
            ).one()
            card = review(Card(row.card_id, row.repetitions, row.lapses, None, row.interval_days, row.memory),
                          correct, used_hint, at)
            connection.execute(answers_table.insert().values(
                learner=learner, answered_at=stamp(at), question_id=question.id, card_id=question.card_id,
                kind=question.kind, topic=question.topic, difficulty=question.difficulty,
                subject_id=question.subject_id, chosen=chosen, correct=int(correct), used_hint=int(used_hint),
                question=payload))
            connection.execute(cards_table.update().where(
                cards_table.c.learner == learner, cards_table.c.card_id == card.card_id).values(
                interval_days=card.interval_days, repetitions=card.repetitions, lapses=card.lapses,
                due=stamp(card.due), question=payload, memory=card.memory))
        return Answer(at, question, chosen, correct, used_hint)

    def reset(self, learner: str) -> int:
        """Forget everything about a learner; returns how many answers were deleted."""
        learner = check_learner(learner)
        with self.transaction() as connection:
            deleted = connection.execute(answers_table.delete().where(answers_table.c.learner == learner)).rowcount
            connection.execute(cards_table.delete().where(cards_table.c.learner == learner))
        return deleted

    # -- reading -----------------------------------------------------------------------------------------
    def answers(self, learner: str) -> list[Answer]:
        learner = check_learner(learner)
        columns = answers_table.c
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(columns.answered_at, columns.question, columns.chosen, columns.correct, columns.used_hint)
                .where(columns.learner == learner).order_by(columns.id)
            ).all()
        return [Answer(datetime.fromisoformat(at), Question.from_dict(json.loads(q)), chosen, bool(ok), bool(hint))
                for at, q, chosen, ok, hint in rows]

    def card(self, learner: str, card_id: str) -> Card | None:
        with self.reading() as connection:
            row = connection.execute(sa.select(cards_table).where(
                cards_table.c.learner == learner, cards_table.c.card_id == card_id)).first()
        if row is None:
            return None
        return Card(row.card_id, row.repetitions, row.lapses, datetime.fromisoformat(row.due), row.interval_days,
                    row.memory)

    def schedule(self, learner: str) -> list[tuple[Question, datetime]]:
        """Every card of the learner with when it returns, soonest first."""
        learner = check_learner(learner)
        columns = cards_table.c
        with self.reading() as connection:
            rows = connection.execute(sa.select(columns.question, columns.due).where(columns.learner == learner)
                                      .order_by(columns.due)).all()
        return [(Question.from_dict(json.loads(question)), datetime.fromisoformat(due)) for question, due in rows]

    def due_questions(self, learner: str, at: datetime | None = None, limit: int = 50) -> list[Question]:
        """Questions whose cards are due (missed ones first, then the most overdue)."""
        learner = check_learner(learner)
        at = at or now_utc()
        columns = cards_table.c
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(columns.question).where(columns.learner == learner, columns.due <= stamp(at))
                .order_by(columns.repetitions, columns.due).limit(limit)
            ).all()
        return [Question.from_dict(json.loads(row.question)) for row in rows]

    def next_due(self, learner: str) -> datetime | None:
        """When the learner's earliest card falls due (None when they have no cards)."""
        learner = check_learner(learner)
        with self.reading() as connection:
            due = connection.execute(sa.select(sa.func.min(cards_table.c.due))
                                     .where(cards_table.c.learner == learner)).scalar()
        return datetime.fromisoformat(due) if due else None

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


def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_settings(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's deferred one
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=FULL")

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(connection):
            # a writer takes the write lock before reading the card; a reader (`reading`) takes none: under WAL
            # it sees one consistent snapshot while answers go on being written
            reading = connection.get_execution_options().get("mirage_read", False)
            connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)  # a restarted server's dead connections are replaced


def _insert(connection: sa.Connection):
    """The dialect's INSERT (both know ON CONFLICT DO NOTHING)."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _reason(error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__


@dataclass(frozen=True)
class TopicMastery:
    topic: str
    name: str
    answers: int
    right: int

    @property
    def share(self) -> float:
        return self.right / self.answers if self.answers else 0.0


def mastery_by_topic(rows: list[dict]) -> list[TopicMastery]:
    """Each topic's answers and right answers over all days (rows of `ProgressStore.mastery`), weakest first
    (lowest share right; more answers first among equals)."""
    totals: dict[str, list[int]] = {}
    for row in rows:
        total = totals.setdefault(row["topic"], [0, 0])
        total[0] += row["answers"]
        total[1] += round(row["accuracy"] * row["answers"])
    topics = [TopicMastery(t, topic_name(t), answers, right) for t, (answers, right) in totals.items()]
    return sorted(topics, key=lambda m: (m.share, -m.answers, m.name))


def weakest_topics(rows: list[dict], limit: int = 2, below: float = 0.8) -> list[TopicMastery]:
    """The topics most worth practising: under `below` share right, weakest first."""
    return [m for m in mastery_by_topic(rows) if m.share < below and not m.topic.endswith(":unknown")][:limit]
