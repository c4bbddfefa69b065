"""A start rehearsal, as Hugging Face Spaces and Streamlit Community Cloud run the app: a fresh clone of the
committed tree, read-only, started by a user who is not root with an empty HOME; the home page and a search must
work in Chromium, and the index must land in that user's cache folder (the checkout cannot hold `.mirage/`)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import write_csv_slice
from test_browser import CHROMIUM, CHROMIUM_ARGS, REPO, _free_port, wait_healthy

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="switching to a non-root user needs root (CI runs as root)"),
]


def _peak_rss_mib(root: int) -> float:
    """The largest peak resident memory (VmHWM) among a process and its descendants (runuser → streamlit)."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            children.setdefault(int(fields["PPid"]), []).append(int(fields["Pid"]))
        except (OSError, KeyError, ValueError):
            continue
    peak, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak


@pytest.fixture
def interpreter_for_others():
    """Lets another user traverse (not list) the folders down to this interpreter and its packages — a root
    home is often 0700 on a development machine, never on a platform's — and restores their modes after."""
    paths = {Path(sys.executable).resolve(), Path(sys.executable).absolute(), Path(__import__("streamlit").__file__)}
    folders = {parent for path in paths for parent in path.parents}
    changed = {}
    for folder in sorted(folders):
        mode = folder.stat().st_mode
        if not mode & 0o001:
            changed[folder] = mode
            folder.chmod(mode | 0o001)
    yield
    for folder, mode in changed.items():
        folder.chmod(mode & 0o7777)


@pytest.fixture
def tmp_path():
    """A folder another user can reach (pytest's own are 0700 under a root-only parent)."""
    folder = Path(tempfile.mkdtemp(prefix="mirage-rehearsal-"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["chmod", "-R", "u+w", str(folder)])
    shutil.rmtree(folder, ignore_errors=True)


def test_a_read_only_clone_started_by_another_user_serves_a_search(tmp_path, demo_corpus, interpreter_for_others):
    from playwright.sync_api import sync_playwright

    user = pwd.getpwnam("nobody")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    subprocess.run(["chmod", "-R", "a-w", str(clone)], check=True)  # read-only for everyone but root
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, user.pw_uid, user.pw_gid)
    corpus = write_csv_slice(tmp_path / "corpus" / "slice.csv", demo_corpus.records[:40])
    subprocess.run(["chmod", "-R", "a+rX", str(tmp_path / "corpus")], check=True)
    port = _free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "HF_HUB_OFFLINE": "1", "MIRAGE_CORPUS": str(corpus),
           "PYTHONPATH": str(clone)}
    log = open(tmp_path / "streamlit.log", "w")
    started = time.monotonic()
    process = subprocess.Popen(  # runuser sets the user's own HOME: `env` gives it the empty one instead
        ["runuser", "-u", "nobody", "--", "env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m",
         "streamlit", "run", str(clone / "streamlit_app.py"), "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true"],
        cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, tmp_path / "streamlit.log", 120)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(240_000)
            page.goto(url)
            page.get_by_text("not for diagnosis", exact=False).first.wait_for()
            page.goto(f"{url}/retrieval")
            page.get_by_label("Describe what you want to see").fill("chest x-ray")
            page.get_by_role("button", name="Search").click()
            page.locator("[data-testid='stImage'] img").nth(3).wait_for()
            first_result_s = time.monotonic() - started
            browser.close()
        peak_mib = _peak_rss_mib(process.pid)
        indexes = list((home / ".cache" / "mirage" / "indexes").glob("*/manifest.json"))
        assert indexes, "the index should be in the user's cache folder"
        assert not (clone / ".mirage").exists()
        assert "is not writable: MIRAGE keeps its index and caches in" in (tmp_path / "streamlit.log").read_text()
        print(f"rehearsal: first result {first_result_s:.1f} s after start, peak {peak_mib:,.0f} MiB resident")
        (REPO / "tests" / "artifacts").mkdir(parents=True, exist_ok=True)
        (REPO / "tests" / "artifacts" / "rehearsal.txt").write_text(
            f"first_result_s {first_result_s:.1f}\npeak_rss_mib {peak_mib:.0f}\n")
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
        print((tmp_path / "streamlit.log").read_text()[-3000:])  # shown by pytest when the test fails
