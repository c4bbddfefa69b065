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


def wait_healthy(url: str, process, log: Path, seconds: float) -> None:
    """Return once Streamlit's health endpoint says ok; fail the test with the log's tail if it never does."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.5)
    process.kill()
    pytest.fail("streamlit did not start: " + log.read_text()[-2000:])


def _start_server(folder: Path, corpus: Path, **settings: str):
    """`streamlit run` on a free port; yields its URL once healthy, and stops it afterwards."""
    port = _free_port()
    env = {**os.environ, "MIRAGE_CORPUS": str(corpus), "MIRAGE_HOME": str(folder / "home"), "HF_HUB_OFFLINE": "1",
           **settings}
    log = open(folder / "streamlit.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, folder / "streamlit.log", 90)
    yield url
    process.terminate()
    process.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_corpus):
    folder = tmp_path_factory.mktemp("e2e")
    yield from _start_server(folder, write_csv_slice(folder / "slice.csv", demo_corpus.records[:80]),
                             MIRAGE_INSTRUCTOR_KEY=INSTRUCTOR_KEY)


INSTRUCTOR_KEY = "the e2e instructor key"
HOSTILE_CAPTIONS = [
    '<iframe srcdoc="<script>parent.alert(parent.document.cookie)</script>"></iframe> chest x-ray',
    "<form><input type=password name=pw></form><style>body{display:none}</style> chest x-ray",
    "![tracker](http://127.0.0.1:9/track.png) chest x-ray with a tracking image",
    "chest x-ray costs $5 and $10 to read",
    "# Heading chest x-ray :red[restyled] :material/warning:",
]


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory, demo_corpus):
    """A corpus whose captions try HTML, scripts, styles, images, math and Streamlit directives."""
    import dataclasses

    folder = tmp_path_factory.mktemp("e2e-hostile")
    records = [dataclasses.replace(record, caption=HOSTILE_CAPTIONS[i % len(HOSTILE_CAPTIONS)])
               for i, record in enumerate(demo_corpus.records[:30])]
    yield from _start_server(folder, write_csv_slice(folder / "slice.csv", records))


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


PAGE_TITLES = ["Home", "Retrieval", "Dual search", "Quiz", "Generation", "Reports", "Class"]


def _shows_frame_and_navigation(page) -> None:
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("not for diagnosis", exact=False).wait_for()
    nav = page.locator(".st-key-mirage-nav")
    nav.wait_for()
    assert page.locator("[data-testid='stSidebarNav']").count() == 0  # no second list named by file names
    for title in PAGE_TITLES:  # the links arrive after their container: wait for each, then count
        nav.get_by_role("link", name=title).first.wait_for()
        assert nav.get_by_role("link", name=title).count() == 1, title


def test_a_deep_link_is_the_first_request_after_start(server, page):
    """The first page ever served by this server is /retrieval: whole (frame, sidebar), working, navigable."""
    page.goto(f"{server}/retrieval")
    _shows_frame_and_navigation(page)
    page.get_by_label("Describe what you want to see").fill("chest x-ray")
    page.get_by_role("button", name="Search").click()
    page.locator("[data-testid='stImage'] img").nth(11).wait_for()
    page.screenshot(path=str(ARTIFACTS / "deep_link_retrieval.png"))


def test_text_search(server, page):
    page.goto(f"{server}/retrieval")
    page.get_by_label("Describe what you want to see").fill("chest x-ray")
    page.get_by_role("button", name="Search").click()
    results = page.locator("[data-testid='stImage'] img")
    results.nth(11).wait_for()
    assert results.count() == 12
    assert page.get_by_text("match ", exact=False).count() >= 12  # each card shows the match it is ranked by
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


def test_the_projector_view_puts_a_large_map_first(server, page):
    page.goto(f"{server}/dual_search")
    page.get_by_text("After the arithmetic").wait_for()
    page.get_by_text("Projector view", exact=False).click()
    page.get_by_text("start: ", exact=False).first.wait_for()  # the steps in plain words: the projector's map
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    results = page.get_by_text("After the arithmetic").bounding_box()
    assert plot.bounding_box()["y"] < results["y"]  # the map first, the results below
    assert plot.bounding_box()["height"] >= 700
    sizes = page.locator(".js-plotly-plot .annotation-text").evaluate_all(
        "nodes => nodes.map(n => parseFloat(getComputedStyle(n).fontSize))")
    assert sizes and min(sizes) >= 18  # readable on a projector
    page.screenshot(path=str(ARTIFACTS / "dual_search_projector.png"))


def _answer_one_question(page, url: str, learner: str) -> None:
    """Open the Quiz, name the learner, start a quiz and answer A; returns once the feedback shows."""
    page.goto(f"{url}/quiz")
    page.get_by_label("Your nickname", exact=False).fill(learner)
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Start").click()
    page.get_by_text("question 1 of", exact=False).wait_for()
    page.locator("[data-testid='stRadio'] label").filter(has_text=re.compile(r"^\s*A\s*$")).first.click()
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Right —", exact=False).or_(page.get_by_text("Not quite", exact=False)).first.wait_for()


def test_quiz_answers_one_question(server, page):
    _answer_one_question(page, server, "e2e-student")
    page.get_by_text("True caption", exact=False).or_(page.get_by_text("is labelled", exact=False)).first.wait_for()
    assert page.get_by_text("Right —", exact=False).count() + page.get_by_text("Not quite", exact=False).count() == 1
    page.screenshot(path=str(ARTIFACTS / "quiz.png"), full_page=True)


def _fits(page, width: int, height: int) -> None:
    """The question, its options and the controls are all on the screen, at this size."""
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_timeout(500)
    forward = page.locator(".st-key-presenter-controls button").nth(1)
    box = forward.bounding_box()
    assert box and 0 <= box["y"] and box["y"] + box["height"] <= height + 1, (width, height, box)
    bottom = page.locator(".st-key-presenter p").evaluate_all(
        "ns => Math.max(...ns.map(n => n.getBoundingClientRect().bottom))")
    assert bottom <= box["y"] + 1, (width, height, bottom)  # every line above the controls, none under them


def test_presenter_mode_fills_the_screen_and_follows_the_keyboard(server, page):
    page.goto(f"{server}/quiz")
    page.get_by_role("tab", name="Instructor packs").click()
    page.get_by_role("button", name="Generate candidates").click()
    page.get_by_role("button", name="Present these").click()
    heading = page.get_by_role("heading", name="Radiology quiz · 1 / ")
    heading.wait_for()
    page.locator("[data-testid='stSidebar']").wait_for(state="hidden")  # no navigation, no student controls
    assert page.get_by_label("Your nickname", exact=False).count() == 0
    sizes = page.locator(".st-key-presenter p").evaluate_all(  # the question and options; sources stay small
        "ns => ns.filter(n => !n.closest('[data-testid=stCaptionContainer]'))"
        ".map(n => parseFloat(getComputedStyle(n).fontSize))")
    assert sizes and min(sizes) >= 30  # readable from the back of a lecture hall
    heading.click()  # focus the page, not a widget, as a presenter would
    page.keyboard.press("ArrowRight")
    page.get_by_text("answer", exact=True).wait_for()  # step 1: the answer is marked
    page.keyboard.press("ArrowRight")
    page.get_by_text(re.compile(r"✗ (Wrong:|Not )")).first.wait_for()  # step 2: why each other option is wrong
    for width, height in ((1280, 720), (1920, 1080)):  # a classroom projector and a full-HD one
        _fits(page, width, height)
        page.screenshot(path=str(ARTIFACTS / f"presenter-{width}x{height}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.keyboard.press("Escape")
    page.get_by_role("tab", name="Practice").wait_for()


def test_hostile_captions_render_as_text(hostile_server, page):
    """The first request is /quiz (a deep link); then the captions of a hostile corpus, in result cards and in
    the image query's caption list, show as the literal text the corpus holds: nothing runs or loads."""
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{hostile_server}/quiz")
    _shows_frame_and_navigation(page)
    page.goto(f"{hostile_server}/retrieval")
    page.get_by_label("Describe what you want to see").fill("chest x-ray")
    page.get_by_role("button", name="Search").click()
    page.locator("[data-testid='stImage'] img").nth(11).wait_for()
    page.get_by_role("tab", name="Image query").click()
    page.locator("input[type='file']").set_input_files(_any_demo_image())
    page.get_by_text("Captions that describe it best", exact=False).wait_for()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / "hostile_captions.png"), full_page=True)
    assert page.locator("iframe[srcdoc], input[type='password'], form input, [data-testid='stMain'] h1 >> text=Heading"
                        ).count() == 0
    assert page.locator("[data-testid='stMain'] img[src*='track.png'], .katex").count() == 0
    assert not any("track.png" in url for url in requests)
    assert page.get_by_text("<iframe srcdoc=", exact=False).count() >= 1  # shown as text
    assert page.get_by_text("$5 and $10", exact=False).count() >= 1
    assert page.get_by_text(":red[restyled]", exact=False).count() >= 1
    assert page.evaluate("getComputedStyle(document.body).display") != "none"


def _any_demo_image() -> str:
    from mirage_core.config import DEFAULT_CORPUS

    return str(next((DEFAULT_CORPUS / "images").glob("*.jpg")))


def test_two_replicas_on_one_postgresql_share_the_corpus_and_progress(tmp_path, demo_corpus, postgres_url, page):
    """Two `streamlit run` processes, each with its own disk, one PostgreSQL (pgvector index + progress): the
    first embeds the corpus and uploads it, the second only downloads it; an answer given on one is seen on the
    other."""
    from mirage_core.quiz import ProgressStore

    corpus = write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:40])
    shared = {"MIRAGE_INDEX": postgres_url, "MIRAGE_DATABASE_URL": postgres_url}
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = _start_server(tmp_path / "a", corpus, **shared)
    second = _start_server(tmp_path / "b", corpus, **shared)
    url_a, url_b = next(first), next(second)
    try:
        window = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})  # the module's Chromium
        window.set_default_timeout(120_000)
        _answer_one_question(window, url_a, "replica-student")  # replica A: its first start embeds and uploads

        window.goto(f"{url_b}/retrieval")  # replica B: the corpus comes from PostgreSQL
        window.get_by_label("Describe what you want to see").fill("chest x-ray")
        window.get_by_role("button", name="Search").click()
        window.locator("[data-testid='stImage'] img").nth(9).wait_for()
        window.goto(f"{url_b}/quiz")
        window.get_by_label("Your nickname", exact=False).fill("replica-student")
        window.keyboard.press("Enter")
        window.get_by_role("tab", name="Progress").click()
        window.get_by_role("button", name="Download my answers (CSV)").wait_for()
        window.get_by_text("Mastery by topic").wait_for()  # A's answer, charted by B
        window.screenshot(path=str(ARTIFACTS / "replica_b_progress.png"), full_page=True)
        window.close()
    finally:
        for server in (first, second):
            next(server, None)
    assert not list((tmp_path / "b" / "home").glob("indexes/*/manifest.json"))  # B embedded nothing
    assert list((tmp_path / "a" / "home").glob("indexes/*/manifest.json"))
    assert len(ProgressStore(postgres_url).answers("replica-student")) == 1


def test_an_instructor_signs_in_creates_a_class_and_a_student_sees_none_of_it(server, page):
    """A deep link to /classes asks for the key; a wrong key is refused; the right one opens the area, a class is
    created and its dashboard drawn; a second browser (a student) meets only the sign-in form."""
    page.goto(f"{server}/classes")
    key = page.get_by_label("Instructor key")
    key.fill("a guess")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("That is not the instructor key.").wait_for()
    assert page.get_by_role("tab", name="Dashboard").count() == 0
    page.get_by_label("Instructor key").fill(INSTRUCTOR_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("New class name").fill("Browser class")
    page.get_by_role("button", name="Create").click()
    code = page.locator("h2").filter(has_text="-").first
    code.wait_for()
    assert len(code.inner_text().strip()) == 9
    assert INSTRUCTOR_KEY not in page.content()
    page.get_by_role("tab", name="Dashboard").click()
    page.get_by_text("No answers from this class yet.").wait_for()
    page.screenshot(path=str(ARTIFACTS / "class-dashboard.png"))
    student = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        student.goto(f"{server}/classes")
        student.get_by_label("Instructor key").wait_for()
        assert student.get_by_role("tab", name="Dashboard").count() == 0
        assert student.get_by_text("Browser class").count() == 0
    finally:
        student.close()
