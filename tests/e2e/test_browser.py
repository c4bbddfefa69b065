"""End to end: `streamlit run` on 127.0.0.1, Debian's Chromium driven by Playwright, screenshots kept."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import write_csv_slice

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_corpus):
    folder = tmp_path_factory.mktemp("e2e")
    corpus = write_csv_slice(folder / "slice.csv", demo_corpus.records[:80])
    port = _free_port()
    env = {**os.environ, "MIRAGE_CORPUS": str(corpus), "MIRAGE_HOME": str(folder / "home"), "HF_HUB_OFFLINE": "1"}
    log = open(folder / "streamlit.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("streamlit did not start: " + (folder / "streamlit.log").read_text()[-2000:])
    yield url
    process.terminate()
    process.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


def test_text_search(server, page):
    page.goto(f"{server}/retrieval")
    page.get_by_label("Describe what you want to see").fill("chest x-ray")
    page.get_by_role("button", name="Search").click()
    results = page.locator("[data-testid='stImage'] img")
    results.nth(11).wait_for()
    assert results.count() == 12
    assert page.get_by_text("similarity 0.", exact=False).count() == 12
    assert page.get_by_role("link", name="CC BY").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "retrieval.png"), full_page=True)


def test_dual_search_renders_results_and_pca(server, page):
    page.goto(f"{server}/dual_search")
    page.get_by_text("After the arithmetic").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    page.wait_for_load_state("networkidle")
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 4
    assert page.get_by_text("explain", exact=False).count() >= 1
    page.screenshot(path=str(ARTIFACTS / "dual_search.png"), full_page=True)
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dual_search_pca.png"))
    assert (ARTIFACTS / "dual_search_pca.png").stat().st_size > 10_000


def test_quiz_answers_one_question(server, page):
    page.goto(f"{server}/quiz")
    page.get_by_label("Your nickname", exact=False).fill("e2e-student")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Start").click()
    page.get_by_text("question 1 of", exact=False).wait_for()
    page.locator("[data-testid='stRadio'] label").filter(has_text=re.compile(r"^\s*A\s*$")).first.click()
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("True caption", exact=False).or_(page.get_by_text("is labelled", exact=False)).first.wait_for()
    assert page.get_by_text("Right —", exact=False).count() + page.get_by_text("Not quite", exact=False).count() == 1
    page.screenshot(path=str(ARTIFACTS / "quiz.png"), full_page=True)
