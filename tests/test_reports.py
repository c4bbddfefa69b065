"""Reports: grounded statements cite the retrieved cases; LLM interface, checks and fallback; query enrichment."""

from __future__ import annotations

import re
import socket

import numpy as np
import pytest
from helpers import shown
from PIL import Image

from mirage_core.corpus import Record
from mirage_core.encoders.base import normalise_rows
from mirage_core.errors import MirageError, QueryError
from mirage_core.index import Index, build_index
from mirage_core.llm import Generation, check_model_text, create_llm, enrich_report, expand_query
from mirage_core.reports import Report, Source, _label_statement, enrich_query, grounded_report
from mirage_core.search import search_text


@pytest.fixture(scope="module")
def slice_index(demo_slice, lite_encoder) -> Index:
    return build_index(demo_slice, lite_encoder)


def test_every_statement_cites_the_retrieved_cases(slice_index, lite_encoder):
    report = grounded_report(slice_index, lite_encoder, "chest x-ray", k=6, floor=0.0)
    retrieved = [h.record.id for h in search_text(slice_index, lite_encoder, "chest x-ray", 6)]
    assert [s.record_id for s in report.sources] == retrieved  # the Retrieval page's hybrid search, in its order
    numbers = {s.number for s in report.sources}
    assert report.statements and report.findings and report.modality and report.region
    for statement in report.statements:
        assert statement.sources and set(statement.sources) <= numbers
    captions = {s.number: s.caption for s in report.sources}
    for finding in report.findings:  # a finding is a sentence of the case it cites
        assert finding.text in " ".join(captions[finding.sources[0]].split())
    markdown = report.to_markdown()
    assert "not a diagnosis" in markdown and markdown.count("ncbi.nlm.nih.gov/pmc/articles/") == 6
    assert all(re.search(r"\[\d+\]$", shown(line)) for line in markdown.splitlines() if line.startswith("- "))
    assert markdown.startswith("# MIRAGE report: chest x-ray") and "\n## Sources\n" in markdown
    embedded = report.to_markdown(level=4, title=False)  # under a page's own heading: sections one level below
    assert "MIRAGE report" not in embedded and "\n##### Sources\n" in embedded and "\n## " not in embedded
    assert embedded.splitlines()[0].startswith("*Educational summary")


def test_label_vote_names_the_majority_and_cites_its_cases():
    def source(n, modality):
        return Source(n, f"r{n}", 0.8, "c", "", "", "CC BY", "", modality, "chest")

    sources = [source(1, "CT"), source(2, "CT"), source(3, "MRI"), source(4, "unknown")]
    statement, label = _label_statement(sources, np.ones(4), "modality")
    assert label == "CT" and statement.sources == (1, 2) and "50%" in statement.text
    statement, label = _label_statement(sources[2:] + [source(5, "X-ray")], np.ones(3), "modality")
    assert label == "unknown" and "uncertain" in statement.text


def test_nothing_relevant_is_said_not_invented(slice_index, lite_encoder, demo_corpus):
    junk = grounded_report(slice_index, lite_encoder, "qwertyuiop zxcvbnm")
    assert junk.nothing_found and not junk.sources and "Nothing relevant" in junk.to_markdown()
    image = Image.open(demo_corpus.records[200].image_path)  # not in the slice
    far = grounded_report(slice_index, lite_encoder, image, floor=0.999)
    assert "similarity floor" in far.nothing_found and not far.statements
    with pytest.raises(QueryError, match="blank"):
        grounded_report(slice_index, lite_encoder, Image.new("RGB", (64, 64), "white"))
    with pytest.raises(QueryError, match="zero"):
        grounded_report(slice_index, lite_encoder, np.zeros(lite_encoder.dim))
    with pytest.raises(QueryError, match="empty"):
        grounded_report(slice_index, lite_encoder, "   ")


def test_an_image_and_a_vector_are_reported_on(slice_index, lite_encoder, demo_slice):
    image = Image.open(demo_slice.records[3].image_path)
    report = grounded_report(slice_index, lite_encoder, image, k=4)
    assert report.sources[0].record_id == demo_slice.records[3].id  # the image finds itself first
    vector = lite_encoder.encode_text(["MRI of the brain"])[0]
    assert grounded_report(slice_index, lite_encoder, vector, k=4).query == "dual-search vector"


# -- query enrichment --------------------------------------------------------------------------------------

WORDS = ["liver", "cyst", "normal", "kidney"]


class BagOfWords:
    """Texts → sums of one direction per known word."""

    name = fingerprint = "bag"
    dim = len(WORDS)

    def encode_text(self, texts):
        rows = np.array([[t.lower().split().count(w) + 0.01 for w in WORDS] for t in texts], dtype=np.float32)
        return normalise_rows(rows)

    encode_query = encode_text


def _liver_index() -> Index:
    def record(i, keywords):
        return Record(f"r{i}", f"r{i}.jpg", " ".join(keywords), keywords=tuple(keywords), pmc_id=f"PMC{i}")

    records = [record(1, ["liver", "cyst"]), record(2, ["liver", "cyst"]), record(3, ["liver", "normal"]),
               record(4, ["cyst", "kidney"])]
    vectors = normalise_rows(np.array([[1.0, 0.6, 0, 0], [1.0, 0.9, 0, 0], [1.0, 0, 0.5, 0], [0.1, 1.0, 0, 0.5]],
                                      dtype=np.float32))
    return Index(vectors, vectors, records, {"fingerprint": "bag"})


def test_query_enrichment_re_ranks_towards_the_shared_concepts():
    index = _liver_index()
    result = enrich_query(index, BagOfWords(), "liver", k=4)
    assert result.method == "concepts" and result.expansion.split()[0] == "cyst"
    # "before" is the very list a report on the query is grounded in, in its order
    assert [h.record.id for h in result.before] == [s.record_id for s in grounded_report(
        index, BagOfWords(), "liver", k=4, floor=-1.0).sources]
    assert {h.record.id for h in result.after[:2]} == {"r1", "r2"}  # the liver cysts come first


# -- the language model ------------------------------------------------------------------------------------

class ScriptedModel:
    """A test double of `LanguageModel`: returns a fixed text."""

    name = "scripted"

    def __init__(self, text):
        self.text = text

    def generate(self, prompt, max_new_tokens=160):
        assert "Cases:" in prompt or "Query:" in prompt
        return Generation(self.text, len(self.text.split()), 0.5)


def _report(modality="X-ray") -> Report:
    report = Report("chest x-ray", modality_label=modality, region_label="chest")
    report.sources = [Source(n, f"r{n}", 0.8, "Chest radiograph.", "", "", "CC BY", "", modality, "chest")
                      for n in (1, 2)]
    return report


GOOD = ("These chest radiographs [1] show the lungs and the heart shadow; case [2] is a frontal view where "
        "students can trace the diaphragm, the costophrenic angles and the mediastinal outline.")


@pytest.mark.parametrize(("text", "reason"), [
    ("Too short.", "too short"),
    ("the lung the lung the lung " * 10, "repeats itself"),
    (GOOD.replace("[2]", "[7]"), "does not exist"),
    (GOOD.replace(" [1]", "").replace("case [2]", "the second"), "cites none of the cases"),
    (GOOD.replace("radiographs", "MRI images"), "names MRI"),
])
def test_checks_reject_bad_model_text(text, reason):
    assert reason in check_model_text(text, _report())


def test_enrichment_accepts_good_text_and_falls_back_otherwise():
    accepted = enrich_report(ScriptedModel(GOOD), _report())
    assert accepted.accepted and accepted.text == GOOD and accepted.model == "scripted"
    empty = enrich_report(ScriptedModel("   "), _report())
    assert not empty.accepted and empty.reason == "it returned nothing" and empty.text.startswith("# MIRAGE report")
    nothing = _report()
    nothing.nothing_found = "Nothing relevant found."
    assert not enrich_report(ScriptedModel(GOOD), nothing).accepted
    assert expand_query(ScriptedModel("pneumothorax, pleural line, chest drain"), "chest x-ray") == (
        "pneumothorax, pleural line, chest drain")
    listed = "Here are the terms:\n1. Pneumothorax\n2) Chest X-ray\n- pleural line"
    assert expand_query(ScriptedModel(listed), "chest x-ray") == "Pneumothorax, pleural line"


def test_a_models_query_expansion_keeps_only_terms_the_corpus_uses():
    index = _liver_index()
    model = ScriptedModel("hepatic pneumotheral, cyst, kidney cyst")
    result = enrich_query(index, BagOfWords(), "liver", llm=model)
    assert result.method == "llm" and result.expansion == "cyst, kidney cyst"
    invented = enrich_query(index, BagOfWords(), "liver", llm=ScriptedModel("pneumotheral, gallbladder"))
    assert invented.method == "concepts" and invented.expansion.split()[0] == "cyst"  # nothing usable: concepts


def test_a_transformers_model_loads_and_generates_deterministically(tiny_llm_dir):
    llm = create_llm(f"hf:{tiny_llm_dir}")
    first, second = llm.generate("the chest x-ray", 12), llm.generate("the chest x-ray", 12)
    assert first.new_tokens > 0 and first.text == second.text and first.tokens_per_s > 0
    result = enrich_report(llm, _report())  # random weights: whatever it says is checked, and falls back
    assert result.generation is not None and (result.accepted or result.text.startswith("# MIRAGE report"))


def test_an_openai_compatible_chat_server_writes_the_explanation(chat_server):
    base_url, model = chat_server
    llm = create_llm(f"openai:{model}", base_url=base_url)
    first, second = llm.generate("the chest x-ray", 8), llm.generate("the chest x-ray", 8)
    assert first.new_tokens > 0 and first.text and first.text == second.text  # temperature 0
    result = enrich_report(llm, _report())  # random weights: whatever it says is checked, and falls back
    assert result.generation is not None and result.model == f"openai:{model}"
    assert result.accepted or result.text.startswith("# MIRAGE report")
    refused = enrich_report(create_llm("openai:no-such-model", base_url=base_url), _report())
    assert not refused.accepted and refused.reason.startswith("the model failed: the chat endpoint")


def test_an_unreachable_or_unnamed_chat_endpoint_is_a_clear_message(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    with pytest.raises(MirageError, match="cannot reach the chat endpoint"):
        create_llm("openai:any", base_url=dead).generate("hello")
    monkeypatch.delenv("MIRAGE_LLM_BASE_URL", raising=False)
    with pytest.raises(MirageError, match="MIRAGE_LLM_BASE_URL"):
        create_llm("openai:gpt-4o-mini")


def test_unknown_language_models_are_clear_errors(tmp_path):
    with pytest.raises(MirageError, match="unknown language model"):
        create_llm("gpt-17")
    with pytest.raises(MirageError, match="cannot load the language model"):
        create_llm(f"hf:{tmp_path / 'nothing-here'}")


def test_reports_show_no_bare_umls_codes_or_filler_keywords(slice_index, lite_encoder):
    markdown = grounded_report(slice_index, lite_encoder, "chest x-ray", k=8, floor=0.0).to_markdown()
    assert not re.search(r"\bC\d{7}\b", markdown)
    concepts = markdown.split("Key concepts")[1].split("Sources")[0].lower()
    assert not re.search(r"^- (high|area|patient|patients) \(", concepts, re.M)


def test_cases_that_are_not_patients_are_flagged():
    from mirage_core.reports import non_human

    assert non_human("CT of the porcine liver after ablation") == "animal study"
    assert non_human("MRI of rats after injection") == "animal study"
    assert non_human("CT image of the phantom with inserts") == "phantom"
    assert non_human("Cadaveric dissection of the knee") == "cadaver"
    assert non_human("Pigmented villonodular synovitis of the knee") == ""  # 'pig' only as a whole word
    assert non_human("Chest x-ray of a 40-year-old man") == ""
    source = Source(1, "r1", 0.5, "MRI of a pig heart", "", "", "CC BY", "", "MRI", "chest", non_human("pig heart"))
    assert "ANIMAL STUDY, not a patient" in Report("q", sources=[source]).to_markdown()


def test_key_concepts_teach_and_citations_link_to_their_cases(slice_index, lite_encoder):
    report = grounded_report(slice_index, lite_encoder, "chest x-ray", k=8, floor=0.0)
    shown = " ".join(statement.text for statement in report.concepts).lower()
    for name in ("x-ray", "xray", "radiograph", "cxr", " ct ", "mri"):  # never the modality's own name
        assert name not in f" {shown} "
    for statement in report.concepts:  # each term is whole words of a cited case's caption
        term = statement.text.rsplit(" (in ", 1)[0]
        assert any(re.search(r"(?<![a-z])" + re.escape(term) + r"(?![a-z])", report.sources[n - 1].caption.lower())
                   for n in statement.sources)
    linked = report.to_markdown(linked=True)
    assert "](#source-1)" in linked and "](#source-" not in report.to_markdown()
    assert [s.number for s in report.sources] == list(range(1, len(report.sources) + 1))
