"""Classes on both engines: create, join (claimed nicknames and PINs), assign, the dashboard's figures, concurrent
answers of one class, migration of a populated schema-3 database, and the instructor key's gate."""

from __future__ import annotations

import json
import threading
import time

import pytest
import sqlalchemy as sa
from test_quiz import generated, quiz_index  # noqa: F401  (fixtures)

from mirage_core.cli import main
from mirage_core.errors import MirageError
from mirage_core.quiz import ProgressStore, make_pack
from mirage_core.quiz.classes import CODE_ALPHABET, Classroom, InstructorGate, normalise_code, show_code
from mirage_core.quiz.packs import dump_pack
from mirage_core.quiz.store import SCHEMA_VERSION


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "progress.sqlite")
    return request.getfixturevalue("postgres_url")


def _pack(questions, title="Week 1") -> bytes:
    return dump_pack(make_pack(questions, title, "Dr Who"), "json").encode()


def test_a_class_from_creation_to_dashboard(target, generated, quiz_index):  # noqa: F811
    _, questions = generated
    store = ProgressStore(target)
    room = Classroom(store)
    info = room.create("  Radiology   101 ")
    assert info.name == "Radiology 101" and len(info.code) == 8 and set(info.code) <= set(CODE_ALPHABET)
    assert normalise_code(show_code(info.code).lower()) == info.code
    with pytest.raises(MirageError, match="join code"):
        room.join("nope", "ana")
    pin = room.join(show_code(info.code), "ana")
    assert pin and room.is_claimed("ana") and room.unlock("ana", pin) and not room.unlock("ana", "000-000")
    assert room.join(info.code, "ana", pin) is None  # already a member
    with pytest.raises(MirageError, match="taken"):
        room.join(info.code, "ana", "wrong")  # a classmate typing Ana's nickname
    ben = room.join(info.code, "ben")
    assigned = room.assign(info.code, _pack(questions[:3]), "week1.json", quiz_index)
    assert [a.title for a in room.assignments(info.code)] == ["Week 1"]
    assert [p.answered for p in room.open_assignments("ana")] == [0]
    first = assigned.questions[0]
    store.record_answer("ana", first, chosen=(first.answer + 1) % 4)
    store.record_answer("ben", first, chosen=(first.answer + 1) % 4)
    for question in assigned.questions:
        store.record_answer("ben", question, chosen=question.answer)
    assert room.open_assignments("ben") == [] and [p.answered for p in room.open_assignments("ana")] == [1]
    assert ben and room.classes_of("ben")[0].members == 2

    report = room.report(info.code)
    assert report.members == ["ana", "ben"] and sum(day["answers"] for day in report.days) == 5
    assert report.days[-1]["students"] == 2
    kinds = {row["topic"]: row for row in report.topics if row["dimension"] == "kind"}
    assert kinds[first.kind]["answers"] >= 3
    (missed, *_) = report.missed
    assert missed.question.id == first.id and missed.wrong == 2
    assert missed.distractors[0][1] == 2 and missed.distractors[0][2]  # chosen twice, with why it is wrong
    assert report.completion == [{"title": "Week 1", "due": None, "questions": 3, "members": 2, "done": 1,
                                  "started": 2}]
    exported = report.to_csv()
    assert "most missed" in exported and "ana" not in exported and "ben" not in exported  # no nickname leaves
    assert json.loads(json.dumps(report.to_dict()))["class"]["members"] == 2


def test_answers_before_joining_do_not_count(tmp_path, generated):  # noqa: F811
    _, questions = generated
    store = ProgressStore(tmp_path / "p.sqlite")
    store.record_answer("cleo", questions[0], chosen=questions[0].answer)
    room = Classroom(store)
    code = room.create("Anatomy").code
    room.join(code, "cleo")
    assert room.report(code).days == []


def test_one_class_answering_at_once_loses_nothing(target, generated):  # noqa: F811
    _, questions = generated
    store = ProgressStore(target)
    room = Classroom(store)
    code = room.create("Busy class").code
    students = [f"student {i}" for i in range(6)]
    for name in students:
        room.join(code, name)
    acknowledged, errors = [], []

    def answer(name):
        try:
            for question in questions[:5]:
                store.record_answer(name, question, chosen=question.answer)
                acknowledged.append(name)
        except Exception as error:  # noqa: BLE001 - counted, then asserted on
            errors.append(error)

    threads = [threading.Thread(target=answer, args=(name,)) for name in students]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        room.report(code)  # the dashboard refreshing meanwhile
    assert errors == [] and len(acknowledged) == 30
    assert sum(day["answers"] for day in room.report(code).days) == 30


def test_a_populated_schema_3_database_migrates_with_nothing_lost(target, generated):  # noqa: F811
    _, questions = generated
    store = ProgressStore(target)
    for question in questions[:4]:
        store.record_answer("dora", question, chosen=question.answer)
    with store.engine.begin() as connection:  # back to the current release's layout: schema 3, no class tables
        for table in ("assignments", "learner_claims", "class_members", "classes"):
            connection.execute(sa.text(f"DROP TABLE {table}"))
        connection.execute(sa.text("UPDATE mirage_schema SET version = 3"))
    store.engine.dispose()
    migrated = ProgressStore(target)
    assert len(migrated.answers("dora")) == 4 and len(migrated.schedule("dora")) == 4
    with migrated.engine.begin() as connection:
        assert connection.execute(sa.text("SELECT version FROM mirage_schema")).scalar() == SCHEMA_VERSION
    room = Classroom(migrated)
    room.join(room.create("After the upgrade").code, "dora")
    assert room.classes()[0].members == 1


def test_the_instructor_gate(monkeypatch):
    gate = InstructorGate("correct horse battery staple", max_delay_s=0.3)
    assert not InstructorGate("").enabled and InstructorGate("").sign_in("") is None
    started = time.monotonic()
    assert gate.sign_in("guess") is None and gate.sign_in("guess again") is None
    assert gate.delay_s() > 0 and time.monotonic() - started >= 0.2  # the second guess waited
    token = gate.sign_in("correct horse battery staple")
    assert token and gate.admits(token) and gate.delay_s() == 0
    assert "staple" not in token and not gate.admits(True) and not gate.admits("x" * len(token))
    assert not InstructorGate("correct horse battery staple").admits(token)  # another process's token is worthless
    assert "staple" not in repr(gate.__dict__.get("_salt")) and not hasattr(gate, "key")


def test_the_class_commands(tmp_path, generated, quiz_index, capsys, monkeypatch):  # noqa: F811
    from helpers import write_csv_slice

    _, questions = generated
    monkeypatch.setenv("MIRAGE_QUIZ_DB", str(tmp_path / "progress.sqlite"))
    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    corpus = write_csv_slice(tmp_path / "slice.csv", [quiz_index.records[quiz_index.row_of(i)] for i in {
        i for q in questions[:3] for i in [q.subject_id, *(o.record_id for o in q.options)] if i}])
    monkeypatch.setenv("MIRAGE_CORPUS", str(corpus))
    pack = tmp_path / "week1.json"
    pack.write_bytes(_pack(questions[:3]))
    assert main(["class", "create", "Radiology 101", "--json"]) == 0
    code = json.loads(capsys.readouterr().out)["code"]
    assert main(["class", "list"]) == 0 and code in capsys.readouterr().out
    assert main(["class", "assign", code, str(pack), "--due", "2027-01-15"]) == 0
    assert "Week 1" in capsys.readouterr().out
    assert main(["class", "report", code, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["completion"][0]["due"] == "2027-01-15" and report["class"]["name"] == "Radiology 101"
    assert main(["class", "report", "ZZZZ-ZZZZ"]) == 2
    assert "no class" in capsys.readouterr().err
    assert main(["class", "assign", code, str(pack), "--due", "next week"]) == 2
