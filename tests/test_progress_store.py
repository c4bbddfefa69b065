"""The progress store on both engines: SQLite (offline default) and a real PostgreSQL. Concurrent writers,
interval caps, migration of an older database, and a server restart mid-session."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import timedelta

import pytest
from helpers import start_again

from mirage_core.errors import MirageError
from mirage_core.quiz import ProgressStore
from mirage_core.quiz.questions import Option, Question
from mirage_core.quiz.schedule import MAX_INTERVAL_DAYS
from mirage_core.quiz.store import SCHEMA_VERSION, now_utc

QUESTION = Question("modality", "Which modality?", tuple(
    Option(text=name, modality=name) for name in ("CT", "MRI", "X-ray", "ultrasound")), 0,
    subject_id="ROCO_00001", topic="modality:CT")


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "progress.sqlite")
    return request.getfixturevalue("postgres_url")


def _answer_wrong(target: str, times: int) -> int:
    store = ProgressStore(target)
    for _ in range(times):
        store.record_answer("ana", QUESTION, chosen=1)
    return times


def test_four_writers_on_one_card_lose_no_update(target):
    ProgressStore(target)  # create the schema once, before the writers race
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        acknowledged = sum(pool.starmap(_answer_wrong, [(target, 25)] * 4))
    store = ProgressStore(target)
    assert acknowledged == 100 == len(store.answers("ana"))
    assert store.card("ana", QUESTION.card_id).lapses == 100


def test_thirty_right_answers_in_a_row_stay_within_the_cap(target):
    store = ProgressStore(target)
    at = now_utc()
    for _ in range(30):
        store.record_answer("ben", QUESTION, chosen=0, at=at)
        card = store.card("ben", QUESTION.card_id)
        at = card.due  # answer each time it falls due
    assert card.repetitions == 30 and card.interval_days <= MAX_INTERVAL_DAYS
    assert store.next_due("ben") - now_utc() < timedelta(days=30 * MAX_INTERVAL_DAYS + 1)


def test_an_older_sqlite_database_is_migrated_with_its_answers(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)  # the schema of the SQLite-only releases, with one answer in it
    old.executescript("""
        CREATE TABLE answers (id INTEGER PRIMARY KEY AUTOINCREMENT, learner TEXT NOT NULL, answered_at TEXT NOT NULL,
            question_id TEXT NOT NULL, card_id TEXT NOT NULL, kind TEXT NOT NULL, topic TEXT NOT NULL,
            difficulty TEXT NOT NULL, subject_id TEXT NOT NULL, chosen INTEGER NOT NULL, correct INTEGER NOT NULL,
            used_hint INTEGER NOT NULL, question TEXT NOT NULL);
        CREATE TABLE cards (learner TEXT NOT NULL, card_id TEXT NOT NULL, ease REAL NOT NULL,
            interval_days REAL NOT NULL, repetitions INTEGER NOT NULL, lapses INTEGER NOT NULL, due TEXT NOT NULL,
            question TEXT NOT NULL, PRIMARY KEY (learner, card_id));
    """)
    old.close()
    ProgressStore(path).record_answer("cleo", QUESTION, chosen=0)
    check = sqlite3.connect(path)
    assert check.execute("SELECT version FROM mirage_schema").fetchone() == (SCHEMA_VERSION,)
    assert "cards_due" in {row[1] for row in check.execute("PRAGMA index_list(cards)")}
    check.close()
    reopened = ProgressStore(path)
    assert len(reopened.answers("cleo")) == 1 and reopened.card("cleo", QUESTION.card_id).repetitions == 1


def test_sm2_cards_of_schema_2_are_replayed_into_fsrs(tmp_path):
    import json

    path = tmp_path / "sm2.sqlite"
    store = ProgressStore(path)
    store.record_answer("dora", QUESTION, chosen=0, at=now_utc() - timedelta(days=3))
    store.record_answer("dora", QUESTION, chosen=1, at=now_utc() - timedelta(days=2))
    check = sqlite3.connect(path)  # turn it back into what schema 2 left: SM-2 columns, no FSRS memory
    check.executescript("UPDATE cards SET memory = '', ease = 2.36, interval_days = 0, repetitions = 0;"
                        "UPDATE mirage_schema SET version = 2;")
    check.commit()
    check.close()
    migrated = ProgressStore(path).card("dora", QUESTION.card_id)
    assert migrated.memory and json.loads(migrated.memory)["stability"] > 0
    assert (migrated.repetitions, migrated.lapses) == (0, 1) and len(ProgressStore(path).answers("dora")) == 2


def test_a_database_newer_than_this_version_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    ProgressStore(path)
    connection = sqlite3.connect(path)
    connection.execute("UPDATE mirage_schema SET version = 99")
    connection.commit()
    connection.close()
    with pytest.raises(MirageError, match="upgrade MIRAGE"):
        ProgressStore(path)


def test_a_postgresql_restart_mid_session_is_a_clear_message_then_works(postgres, postgres_url):
    store = ProgressStore(postgres_url)
    store.record_answer("dan", QUESTION, chosen=0)
    postgres.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                  "AND datname IS NOT NULL;")  # every open connection dropped, as a restart drops them
    store.record_answer("dan", QUESTION, chosen=1)  # a dead pooled connection is replaced, unseen
    postgres._stop()  # the server goes away under a running app
    try:
        with pytest.raises(MirageError, match="unavailable.*try again"):
            store.record_answer("dan", QUESTION, chosen=1)
    finally:
        start_again(postgres)
    store.record_answer("dan", QUESTION, chosen=1)  # the same store object, after the restart
    assert [a.correct for a in store.answers("dan")] == [True, False, False]


def test_two_replicas_share_one_learner(postgres_url):
    first, second = ProgressStore(postgres_url), ProgressStore(postgres_url)
    first.record_answer("eve", QUESTION, chosen=1)
    second.record_answer("eve", QUESTION, chosen=0)
    assert len(first.answers("eve")) == 2 and first.card("eve", QUESTION.card_id).lapses == 1
    assert "postgresql" in first.where and "password" not in first.where
