"""Deploying, rehearsed without a Docker daemon: the Dockerfile is read and checked against the tree, `mirage
doctor` is run against working and broken deployments, a read-only checkout keeps its files elsewhere, and the
README's commands, variables, files and headings are checked against the code, so a clean-up can never again
delete a recipe without CI saying so."""

from __future__ import annotations

import json
import re
import shlex
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import write_csv_slice

from mirage_core.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    steps = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, arguments = line.strip().partition(" ")
            steps.append((instruction.upper(), arguments.strip()))
    return steps


def test_the_dockerfile_copies_what_exists_and_runs_the_readme_command():
    steps = _dockerfile()
    copies = [args for instruction, args in steps if instruction == "COPY"]
    assert copies
    copied = set()
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            matches = list(REPO.glob(source))
            assert matches, f"the Dockerfile copies {source}, which is not in the repository"
            copied |= {m.relative_to(REPO).parts[0] for m in matches}
    app_files = {p.name for p in REPO.glob("*.py")} | {"pages", "mirage_core", "assets", ".streamlit"}
    assert app_files <= copied, f"the image lacks {app_files - copied}"  # the app imports every root module
    (command,) = [json.loads(args) for instruction, args in steps if instruction == "CMD"]
    assert command[:3] == ["streamlit", "run", "streamlit_app.py"] and "8501" in command
    readme = (REPO / "README.md").read_text()
    assert "streamlit run streamlit_app.py" in readme and "docker run -p 8501:8501" in readme
    assert any(i == "EXPOSE" and a == "8501" for i, a in steps)
    assert any(i == "USER" and a == "user" for i, a in steps)
    assert any(i == "RUN" and "--uid 1000" in a for i, a in steps)  # Spaces runs containers as uid 1000
    assert any(i == "HEALTHCHECK" and "/_stcore/health" in a for i, a in steps)
    assert any(i == "ENV" and "MIRAGE_HOME=/data/" in a for i, a in steps)  # a Space's persistent storage
    order = [a for i, a in steps if i in ("COPY", "RUN")]
    requirements = next(n for n, a in enumerate(order) if "requirements.txt" in a and a.startswith("pip install"))
    code = next(n for n, a in enumerate(order) if "mirage_core" in a)
    assert requirements < code  # a code change never reinstalls torch
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".mirage", "tests"} <= set(ignored)


@pytest.fixture
def deployment(tmp_path, demo_corpus, monkeypatch):
    corpus = write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:12])
    monkeypatch.setenv("MIRAGE_CORPUS", str(corpus))
    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    for name in ("MIRAGE_LLM", "MIRAGE_LLM_BASE_URL", "MIRAGE_BUNDLE_URL", "MIRAGE_DATABASE_URL", "MIRAGE_INDEX"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_doctor_says_a_working_deployment_will_work(deployment, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "will work" in out and "FAIL" not in out
    assert re.search(r"^WARN\s+index\s+not built yet", out, re.MULTILINE)  # a risk, said, not a failure
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["will_work"] and {f["check"] for f in report["findings"]} >= {
        "encoder", "corpus", "index", "backend", "progress", "llm", "home", "memory", "torch"}


def test_doctor_fails_a_broken_deployment_and_never_prints_a_key(deployment, monkeypatch, capsys):
    class Down(BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Down)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MIRAGE_CORPUS", str(deployment / "nowhere"))
        monkeypatch.setenv("MIRAGE_LLM", "openai:some-model")
        monkeypatch.setenv("MIRAGE_LLM_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
        monkeypatch.setenv("MIRAGE_LLM_API_KEY", "sk-secret-value-123")
        monkeypatch.setenv("MIRAGE_INSTRUCTOR_KEY", "short-key")
        assert main(["doctor"]) == 1
        out = capsys.readouterr().out
        assert re.search(r"^WARN\s+instructors\s+MIRAGE_INSTRUCTOR_KEY is 9 characters", out, re.MULTILINE)
        assert "short-key" not in out
        assert re.search(r"^FAIL\s+corpus\s+not found", out, re.MULTILINE)
        assert re.search(r"^FAIL\s+llm\s+.*HTTP 503", out, re.MULTILINE)
        assert "sk-secret-value-123" not in out and "will NOT work" in out
    finally:
        server.shutdown()


def test_a_read_only_checkout_keeps_its_files_in_the_users_home(tmp_path, monkeypatch, caplog):
    import os
    import subprocess

    from mirage_core import config

    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root (CI runs as root)")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(checkout)]).returncode != 0:
        pytest.skip("this machine does not let the tests mount a tmpfs")
    try:
        monkeypatch.setattr(config, "REPO_ROOT", checkout)
        monkeypatch.setattr(config, "SOURCE_CHECKOUT", True)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        config._say_once.cache_clear()
        with caplog.at_level("WARNING", logger="mirage"):
            home = config.default_home()
        assert home == tmp_path / "cache" / "mirage"
        assert "not writable" in caplog.text and str(home) in caplog.text  # the log says where
    finally:
        subprocess.run(["umount", "-l", str(checkout)])


# -- README truths ----------------------------------------------------------------------------------------------

README = (REPO / "README.md").read_text(encoding="utf-8")


def _commands() -> list[list[str]]:
    """Every `mirage …` command line the README quotes (code blocks and inline code)."""
    found = []
    for line in README.splitlines():
        for match in re.finditer(r"(?:^\s{4}|`)(mirage [^`#\n]+)", line):
            if not match.group(1).startswith("mirage …"):  # "mirage …" stands for any command
                found.append(shlex.split(match.group(1).replace("…", "X"), comments=True))
    return found


def test_every_command_and_flag_the_readme_quotes_exists():
    parser, table = build_parser()
    commands = _commands()
    assert len(commands) >= 25
    sub = next(a for a in parser._actions if a.dest == "command")
    for words in commands:
        name = words[1]
        assert name in table, f"the README quotes `mirage {name}`, which does not exist"
        command = sub.choices[name]
        flags = {option for action in command._actions for option in action.option_strings}
        for word in words[2:]:
            if word.startswith("--"):
                assert word.split("=")[0] in flags, f"`mirage {name}` has no flag {word}"


def test_every_variable_of_the_configuration_table_is_read():
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    variables = re.findall(r"^\| `(MIRAGE_[A-Z0-9_]+)`", section, re.MULTILINE)
    assert len(variables) >= 10
    sources = "".join(p.read_text() for p in (REPO / "mirage_core").rglob("*.py"))
    for variable in variables:
        field = variable.removeprefix("MIRAGE_").lower()
        assert variable in sources or f"    {field}:" in sources, f"{variable} is documented but never read"


def test_every_file_the_readme_names_exists():
    named = set(re.findall(r"`((?:mirage_core|pages|assets|tests|\.ci|\.streamlit)/[\w./-]+)`", README))
    named |= set(re.findall(r"^\s{4}(mirage_core/|pages/|assets/)", README, re.MULTILINE))
    assert len(named) >= 8
    for path in named:
        assert (REPO / path).exists(), f"the README names {path}, which does not exist"
    for name in ("Dockerfile", "requirements.txt", "streamlit_app.py"):  # what the deploy recipes name
        assert name in README and (REPO / name).exists(), name
    assert (REPO / "Makefile").exists() and "make app" in README and "make test" in README  # the quick start


def test_no_readme_heading_is_empty():
    lines = README.splitlines()
    headings = [(i, len(line) - len(line.lstrip("#"))) for i, line in enumerate(lines) if re.match(r"#+ ", line)]
    for (start, level), following in zip(headings, [*headings[1:], (len(lines), 1)]):
        body = [line for line in lines[start + 1:following[0]] if line.strip()]
        assert body or following[1] > level, f"the heading {lines[start]!r} has nothing under it"


def test_pages_are_thin():
    """Pages draw and call mirage_core; none grows past 150 lines (logic belongs in the package, views in app_*)."""
    root = Path(__file__).resolve().parents[1]
    sizes = {page.name: len(page.read_text(encoding="utf-8").splitlines()) for page in (root / "pages").glob("*.py")}
    assert sizes and max(sizes.values()) <= 150, sizes
