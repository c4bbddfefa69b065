"""AppTest of classes: an instructor creates a class, assigns a pack and reads the dashboard; students join, see the
assignment first and answer; and each way a student might try to see what is not theirs is refused."""

from __future__ import annotations

import json

import pytest
from helpers import write_csv_slice
from streamlit.testing.v1 import AppTest

from mirage_core.quiz import LETTERS

TIMEOUT = 240
KEY = "a long instructor key, 42 words of it"


@pytest.fixture(scope="module")
def class_env(tmp_path_factory, demo_corpus):
    folder = tmp_path_factory.mktemp("class-app")
    patch = pytest.MonkeyPatch()
    patch.setenv("MIRAGE_CORPUS", str(write_csv_slice(folder / "slice.csv", demo_corpus.records[:160])))
    patch.setenv("MIRAGE_HOME", str(folder / "home"))
    patch.setenv("MIRAGE_QUIZ_DB", str(folder / "progress.sqlite"))
    patch.setenv("MIRAGE_INSTRUCTOR_KEY", KEY)
    yield folder
    patch.undo()


def _open(page: str) -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def _dashboard_shown(at) -> bool:
    return bool(at.get("plotly_chart")) or any("Most missed" in m.value for m in at.markdown) or bool(at.tabs)


def test_without_a_key_the_instructor_area_is_off_and_says_how(class_env, monkeypatch):
    monkeypatch.delenv("MIRAGE_INSTRUCTOR_KEY")
    at = _open("pages/classes.py")
    assert any("MIRAGE_INSTRUCTOR_KEY" in i.value and "Secrets" in i.value for i in at.info)
    assert not _dashboard_shown(at) and not at.text_input


def test_a_class_from_creation_to_dashboard(class_env):
    teacher = _open("pages/classes.py")
    teacher.text_input[0].input("not the key")
    _button(teacher, "Sign in").click().run()
    assert any("not the instructor key" in e.value for e in teacher.error) and not teacher.tabs
    teacher.text_input[0].input(KEY)
    _button(teacher, "Sign in").click().run()
    assert teacher.tabs and not teacher.exception
    assert KEY not in json.dumps([str(e) for e in teacher.main]) and KEY not in str(teacher.session_state)
    next(t for t in teacher.text_input if t.label == "New class name").input("Radiology 101")
    _button(teacher, "Create").click().run()
    code = next(m.value for m in teacher.markdown if m.value.startswith("## "))[3:]
    assert len(code) == 9 and code[4] == "-"

    builder = _open("pages/quiz.py")  # the instructor builds a pack on the Quiz page, as the page says
    _button(builder, "Generate candidates").click().run()
    questions = builder.session_state["quiz_flow"].candidates[:3]
    pack = {"mirage_pack": 1, "title": "Week 1", "questions": [q.to_dict() for q in questions]}
    teacher.file_uploader[0].set_value(("week1.json", json.dumps(pack).encode(), "application/json"))
    _button(teacher, "Assign").click().run()
    assert any("Week 1" in s.value and "assigned" in s.value for s in teacher.success), teacher.error

    pins = {}
    for name, right in (("Ana", False), ("Ben", True)):
        student = _open("pages/quiz.py")
        student.text_input(key="learner_input").input(name).run()
        next(t for t in student.text_input if t.label.startswith("Join code")).input(code.lower())
        _button(student, "Join").click().run()
        pins[name] = next(s.value for s in student.success if "PIN" in s.value).split("**")[1]
        assert any("Week 1" in m.value and "0 of 3 answered" in m.value for m in student.markdown)
        _button(student, "Start it").click().run()
        session = student.session_state["quiz_flow"].session
        assert session.title == "Week 1" and len(session.questions) == 3
        choice = session.current.answer if right else (session.current.answer + 1) % 4
        student.radio(key="choice-0").set_value(LETTERS[choice])
        _button(student, "Submit").click().run()
        assert not student.exception

    teacher.run()
    assert not teacher.exception
    assert len(teacher.get("plotly_chart")) >= 2  # mastery and participation
    assert any(m.value.startswith("### Most missed") for m in teacher.markdown)
    assert any("chosen 1×" in m.value for m in teacher.markdown)  # Ana's distractor, with why it is wrong
    assert any(s.value.startswith("Radiology 101") and "2 students" in s.value for s in teacher.subheader)
    assert any(d.label.startswith("Download the class report") for d in teacher.get("download_button"))
    teacher.toggle(key="class-projector").set_value(True).run()
    assert not teacher.exception
    class_env.joinpath("pins.json").write_text(json.dumps(pins))


def test_what_a_student_cannot_see(class_env):
    pins = json.loads(class_env.joinpath("pins.json").read_text())
    deep_link = _open("pages/classes.py")  # straight to the Class page, without the key
    assert not _dashboard_shown(deep_link) and [t.label for t in deep_link.text_input] == ["Instructor key"]
    for forged in (True, "x" * 64, "instructor"):  # session state edited by hand
        deep_link.session_state["instructor_token"] = forged
        deep_link.run()
        assert not _dashboard_shown(deep_link), forged

    ben = _open("pages/quiz.py")
    ben.text_input(key="learner_input").input("Ana").run()  # Ben types Ana's nickname
    pin = next(t for t in ben.text_input if t.key == "learner_pin")
    assert any("belongs to a class member" in e.value for e in ben.error)
    assert ben.session_state["quiz_flow"].learner == "" and not ben.get("plotly_chart")
    pin.input("000-000").run()
    assert any("belongs to a class member" in e.value for e in ben.error)
    assert ben.session_state["quiz_flow"].learner == ""
    ben.session_state["quiz_flow"].learner = "Ana"  # forged in the session
    ben.run()
    assert ben.session_state["quiz_flow"].learner == "" and not ben.get("plotly_chart")
    next(t for t in ben.text_input if t.key == "learner_pin").input(pins["Ana"]).run()
    assert ben.session_state["quiz_flow"].learner == "Ana" and not ben.error  # with her PIN, it is hers
