"""AppTest of the Quiz page: answer right and wrong, feedback, finish, progress that survives a restart, packs."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from helpers import write_csv_slice
from streamlit.testing.v1 import AppTest

from mirage_core.quiz import LETTERS, ProgressStore
from mirage_core.quiz.store import now_utc

TIMEOUT = 240


@pytest.fixture(scope="module")
def quiz_env(tmp_path_factory, demo_corpus):
    folder = tmp_path_factory.mktemp("quiz-app")
    path = write_csv_slice(folder / "slice.csv", demo_corpus.records[:160])
    patch = pytest.MonkeyPatch()
    patch.setenv("MIRAGE_CORPUS", str(path))
    patch.setenv("MIRAGE_HOME", str(folder / "home"))
    patch.setenv("MIRAGE_QUIZ_DB", str(folder / "progress.sqlite"))
    yield folder
    patch.undo()


def _quiz_page() -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/quiz.py")
    at.run()
    assert not at.exception, at.exception
    return at


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def _answer(at, right: bool):
    question = at.session_state["quiz_flow"].session.current
    choice = question.answer if right else (question.answer + 1) % len(question.options)
    at.radio(key=f"choice-{at.session_state['quiz_flow'].session.position}").set_value(LETTERS[choice])
    _button(at, "Submit").click().run()
    assert not at.exception, at.exception


def test_a_quiz_from_start_to_score_and_progress_after_a_restart(quiz_env):
    at = _quiz_page()
    at.text_input(key="learner_input").input("Ana").run()
    at.slider(key="quiz-length").set_value(3)
    at.multiselect(key="quiz-kinds").set_value(["modality"])  # every topic known, so a miss names a weak topic
    _button(at, "Start").click().run()
    assert not at.exception and not at.error
    assert "question 1 of 3" in at.get("progress")[0].proto.text

    _button(at, "Show a hint").click().run()
    assert any(i.value.startswith("Hint:") for i in at.info)
    _answer(at, right=True)
    assert at.success[0].value.startswith("Right")
    assert any("True caption" in m.value for m in at.markdown)
    assert any("ncbi.nlm.nih.gov/pmc/articles/PMC" in m.value for m in at.markdown)
    _button(at, "Next question").click().run()

    _answer(at, right=False)
    assert at.error[0].value.startswith("Not quite")
    assert any(m.value.startswith("**Why") for m in at.markdown)
    _button(at, "Next question").click().run()
    _answer(at, right=True)
    _button(at, "Next question").click().run()
    assert any(s.value == "Score: 2 / 3" for s in at.subheader)
    assert len(at.get("plotly_chart")) == 2  # progress tab: mastery by topic, and by day
    assert any(m.value.startswith("Your weakest topics:") and "(" in m.value for m in at.markdown)
    assert not any("modality:" in m.value for m in at.markdown)  # topics by name, never raw keys

    restarted = _quiz_page()  # a new session: nothing in memory, only the database
    restarted.text_input(key="learner_input").input("Ana").run()
    assert len(restarted.get("plotly_chart")) == 2
    next(b for b in restarted.button if b.label.startswith("Practise")).click().run()
    assert not restarted.exception
    assert restarted.session_state["quiz_flow"].session.title.startswith("Practice: ")
    assert restarted.get("metric")[0].proto.body == "0"  # the missed question returns in 10 minutes
    assert any(i.value == "Next review in 10 minutes." for i in restarted.info)
    store = ProgressStore(quiz_env / "progress.sqlite")
    assert [a.correct for a in store.answers("Ana")] == [True, False, True]
    assert len(store.due_questions("Ana", at=now_utc() + timedelta(minutes=11))) == 1


def test_an_instructor_pack_is_imported_and_presented(quiz_env, tmp_path):
    at = _quiz_page()
    _button(at, "Generate candidates").click().run()
    assert not at.exception and not at.error
    download = [d for d in at.get("download_button")]
    assert len(download) >= 2
    questions = at.session_state["quiz_flow"].candidates
    pack = {"mirage_pack": 1, "title": "Week 1", "questions": [q.to_dict() for q in questions[:2]]}
    at.file_uploader[0].set_value(("week1.json", json.dumps(pack).encode(), "application/json")).run()
    assert any("Week 1" in s.value for s in at.success)
    _button(at, "Present it").click().run()
    assert not at.exception
    assert not at.tabs  # the presenter owns the page: no tabs, no nickname, no student controls
    assert not [t for t in at.text_input if t.key == "learner_input"]
    assert any(m.value.startswith("# Week 1 · 1 / 2") for m in at.markdown)
    assert not any("**answer**" in m.value for m in at.markdown)
    forward = next(b for b in at.button if b.key == "present-forward")
    assert forward.label == "Show the answer"
    forward.click().run()  # step 1: the answer is marked
    assert any("**answer**" in m.value for m in at.markdown)
    assert not any(c.value.startswith(":red[✗") for c in at.caption)
    next(b for b in at.button if b.key == "present-forward").click().run()  # step 2: why the others are wrong
    reasons = [c.value for c in at.caption if c.value.startswith(":red[✗")]
    assert len(reasons) == 3 and all(len(r.split()) >= 8 for r in reasons)  # a sentence under each distractor
    next(b for b in at.button if b.key == "present-forward").click().run()  # step 3: the source, in small type
    assert any(c.value.startswith("Source:") and "ncbi.nlm.nih.gov/pmc" in c.value for c in at.caption)
    forward = next(b for b in at.button if b.key == "present-forward")
    assert forward.label == "Next question"
    forward.click().run()
    assert any(m.value.startswith("# Week 1 · 2 / 2") for m in at.markdown)
    assert not any("**answer**" in m.value for m in at.markdown)  # a new question starts hidden
    _button(at, "Leave presenter mode").click().run()
    assert at.tabs and at.session_state["quiz_flow"].presentation is None


def test_a_malformed_pack_shows_a_message(quiz_env):
    at = _quiz_page()
    at.file_uploader[0].set_value(("broken.yaml", b"title: [unclosed", "application/yaml")).run()
    assert not at.exception
    assert any("not valid JSON or YAML" in e.value for e in at.error)
