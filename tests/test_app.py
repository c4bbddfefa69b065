"""AppTest: drive each page of the dashboard with the real lite models on a small corpus slice."""

import json

import pytest
from helpers import shown, write_csv_slice
from streamlit.testing.v1 import AppTest

TIMEOUT = 180


@pytest.fixture
def app_env(tmp_path, demo_corpus, monkeypatch):
    records = demo_corpus.records[:60]
    path = write_csv_slice(tmp_path / "slice.csv", records)
    monkeypatch.setenv("MIRAGE_CORPUS", str(path))
    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    return records


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def _markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_home_shows_corpus_and_disclaimer(app_env):
    at = _app()
    assert at.title[0].value == "MIRAGE"
    assert any("not for diagnosis" in w.value for w in at.sidebar.warning)
    assert len(at.get("plotly_chart")) == 1
    assert "Pelka" in _markdown(at)
    assert "60 images" in "\n".join(c.value for c in at.sidebar.caption)
    assert any(s.value == "What the model can and cannot do" for s in at.subheader)
    # the shipped encoder was trained on every pair of the demo folder: no held-out figure may be claimed on it
    assert any("trained on every image–caption pair of this corpus" in m.value for m in at.markdown)
    assert not any("never saw in training" in m.value for m in at.markdown)
    assert sum("ranked" in c.value for c in at.caption) == 0
    # what search achieves on held-out cases is on the page itself, not in a file a student cannot open
    assert any(s.value == "How well search finds what you ask for" for s in at.subheader)
    table = at.dataframe[0].value
    assert "MIRAGE's search (all three channels)" in list(table["search"]) and "everyday words" in table.columns


def test_text_search_shows_attributed_results(app_env):
    at = _app("pages/retrieval.py")
    at.text_input[0].input("chest x-ray")
    at.button[0].click().run()  # the form's Search button
    assert not at.exception and not at.error
    captions = [c.value for c in at.caption if c.value.startswith("**")]
    assert len(captions) == 12
    assert "https://www.ncbi.nlm.nih.gov/pmc/articles/PMC" in _markdown(at)
    assert "creativecommons.org" in _markdown(at)


@pytest.mark.parametrize("query, message", [("   ", "empty"), ("x" * 5000, "limit")])
def test_bad_queries_show_a_message(app_env, query, message):
    at = _app("pages/retrieval.py")
    at.text_input[0].input(query)
    at.button[0].click().run()
    assert not at.exception
    assert message in at.error[0].value


def test_more_like_this(app_env):
    at = _app("pages/retrieval.py")
    at.text_input[0].input("CT")
    at.button[0].click().run()
    more = next(b for b in at.button if b.label == "More like this")
    more.click().run()
    assert not at.exception
    assert any(h.value == "More like this image" for h in at.subheader)
    started_from = at.session_state["similar_to"]
    assert any("The image you started from" in m.value for m in at.markdown)
    results = [shown(c.value) for c in at.caption if c.value.startswith("**")]
    assert results and not any(started_from in r for r in results)  # the image itself is not its own result


def test_dual_search_presets_plot_and_walk(app_env):
    at = _app("pages/dual_search.py")
    at.selectbox[0].select("Chest X-ray − No foreign bodies + Pacemaker").run()
    assert not at.exception and not at.error
    assert [shown(s.value) for s in at.subheader][:2] == ["Original: “Chest X-ray”", "After the arithmetic"]
    assert len(at.get("plotly_chart")) == 1
    assert any("explain" in c.value for c in at.caption)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    labels = [a["text"] for a in figure["layout"]["annotations"] if a.get("text")]
    assert {"query", "result"} <= set(labels) and any(" · " in label for label in labels)  # path and landmarks
    assert any(trace.get("name") == "X-ray images" for trace in figure["data"])  # the corpus by modality
    walk_slider = next(s for s in at.slider if s.label == "Position")
    walk_slider.set_value(1.0).run()
    assert not at.exception
    walk = {t.label: t.value for t in at.text_input if t.label in ("From", "To")}
    assert walk == {"From": "Chest X-ray", "To": "Pacemaker generator and leads"}  # follows the preset
    at.text_input(key="Chest X-ray − No foreign bodies + Pacemaker-query").input("Chest CT").run()
    assert {t.label: t.value for t in at.text_input if t.label == "From"} == {"From": "Chest CT"}  # and the query
    assert [t.label for t in at.text_input].count("Query") == 1 and not any(m.value == "**Query**" for m in at.markdown)
    at.toggle(key="projector-view").set_value(True).run()  # the instructor's projector: the map first, large type
    assert not at.exception and shown(at.subheader[0].value) == "Where the vector moved"
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    texts = [a for a in figure["layout"]["annotations"] if a.get("text")]
    assert "start: Chest CT" in {a["text"] for a in texts} and all(a["font"]["size"] >= 18 for a in texts)
    assert any(a["text"].startswith("after adding ") for a in texts)
    assert len([t for t in figure["data"] if t.get("name", "").endswith("images")]) <= 5  # few legend entries
    options = at.selectbox[0].options
    assert all("show the added concept" in option for option in options if option != "(your own)")


def test_dual_search_cancelling_terms(app_env):
    at = _app("pages/dual_search.py")
    at.selectbox[0].select("(your own)").run()
    at.text_input(key="(your own)-Add-0").input("").run()
    assert "empty" in at.error[0].value
    at.number_input(key="(your own)-Add-n").set_value(0).run()
    at.text_input(key="(your own)-Subtract-0").input("chest x-ray").run()
    assert "cancel out" in at.error[0].value


def _bomb() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, "PNG")
    return buffer.getvalue()


def _dicom_without_pixels() -> bytes:
    from test_images import _dicom

    return _dicom(with_pixels=False)


def test_image_upload_finds_captions_and_similar_images(app_env):
    at = _app("pages/retrieval.py")
    data = open(app_env[0].image_path, "rb").read()
    at.file_uploader[0].set_value(("scan.jpg", data, "image/jpeg")).run()
    assert not at.exception and not at.error
    assert any("Captions that describe it best" in m.value for m in at.markdown)
    assert sum(c.value.startswith("**") for c in at.caption) == 12
    assert app_env[0].id in shown("\n".join(c.value for c in at.caption))  # the image finds itself


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("notes.png", lambda records: b"just some text, not an image", "not a readable image"),
        ("cut.jpg", lambda records: open(records[0].image_path, "rb").read()[:3000], "truncated or corrupt"),
        ("bomb.png", lambda records: _bomb(), "decompression bomb|too large"),
        ("empty.dcm", lambda records: _dicom_without_pixels(), "no pixel data"),
    ],
)
def test_bad_uploads_show_a_message(app_env, name, make, message):
    import re

    at = _app("pages/retrieval.py")
    at.file_uploader[0].set_value((name, make(app_env), "application/octet-stream")).run()
    assert not at.exception
    assert at.error and re.search(message, at.error[0].value)


def test_reports_page_text_report_llm_side_by_side_and_download(app_env, chat_server, monkeypatch):
    base_url, model = chat_server  # the deployment route: a real OpenAI-compatible server
    monkeypatch.setenv("MIRAGE_LLM", f"openai:{model}")
    monkeypatch.setenv("MIRAGE_LLM_BASE_URL", base_url)
    at = _app("pages/reports.py")
    at.text_input[0].input("chest x-ray")
    next(b for b in at.button if b.label == "Write the report").click().run()
    assert not at.exception and not at.error
    text = _markdown(at)
    assert "## Findings in similar cases" in text and "## Sources" in text and "ncbi.nlm.nih.gov/pmc" in text
    assert len(at.get("download_button")) == 1
    at.toggle[0].set_value(True).run()
    assert not at.exception
    assert any("Written by a language model" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Enrich the query and re-rank").click().run()
    assert not at.exception and any(m.value.startswith("Expansion") for m in at.markdown)


def test_reports_page_says_when_nothing_is_relevant_and_reports_the_dual_vector(app_env, monkeypatch):
    monkeypatch.delenv("MIRAGE_LLM", raising=False)
    at = _app("pages/reports.py")
    at.text_input[0].input("qwertyuiop zxcvbnm")
    next(b for b in at.button if b.label == "Write the report").click().run()
    assert not at.exception and "Nothing relevant found" in _markdown(at)
    assert not at.toggle  # no language model is configured, so none is offered
    at.switch_page("pages/dual_search.py").run()
    at.switch_page("pages/reports.py").run()
    at.radio[0].set_value("Dual-search vector").run()
    assert not at.exception and "Vector from the Dual search page" in _markdown(at)
    assert "## Sources" in _markdown(at)


def test_generation_page_draws_marked_images_beside_real_ones(app_env):
    at = _app("pages/generation.py")
    at.slider[0].set_value(2)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception and not at.error
    generated = at.session_state["generated"]
    assert len(generated) == 2 and all(g.metadata["AI-generated"] == "true" for g, _ in generated)
    assert all(g.metadata["Native size"] == f"{g.native.width}x{g.native.height}" for g, _ in generated)
    assert len(at.get("download_button")) == 2
    assert sum(c.value.startswith("**") for c in at.caption) == 6  # three real neighbours each, attributed
    neighbours = [hit for _, hits in generated for hit in hits]
    assert {hit.record.modality for hit in neighbours} == {"X-ray"}  # the prompt names X-ray: so do its neighbours
    assert sum("Ranked by" in c.value for c in at.caption) == 1  # one note on the score, not one per card
    at.text_input[0].input("").run()
    next(b for b in at.button if b.label == "Generate").click().run()
    assert "empty" in at.error[0].value


def test_an_off_topic_query_says_nothing_relevant_instead_of_showing_results(app_env):
    at = _app("pages/retrieval.py")
    at.text_input[0].input("qwxz blorf zzzk fnord")
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert any("Nothing relevant found" in w.value for w in at.warning)
    assert not [c for c in at.caption if c.value.startswith("**")]  # no result cards
    at.toggle(key="anyway-text").set_value(True).run()
    assert len([c for c in at.caption if c.value.startswith("**")]) == 12
