"""Names for UMLS codes, derived from the corpus: right on a hand-checked sample, and never a bare code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mirage_core.concepts import MIN_RECORDS, caption_phrases, concept_names, named, teaching_terms
from mirage_core.corpus import Record

CHECKED = json.loads((Path(__file__).parent / "fixtures" / "cui_names_checked.json").read_text())["concepts"]


def test_derived_names_match_umls_on_the_checked_sample(demo_corpus):
    names = concept_names(demo_corpus.records)
    present = [cui for cui in CHECKED if any(cui in r.cuis for r in demo_corpus.records)]
    assert len(present) >= 35
    named_ones = [cui for cui in present if cui in names]
    right = [cui for cui in named_ones if names[cui] in CHECKED[cui]["accept"]]
    assert len(named_ones) >= 0.9 * len(present)
    assert len(right) >= 0.9 * len(named_ones), {c: names[c] for c in named_ones if c not in right}


def test_a_rare_code_or_an_unteachable_phrase_gets_no_name():
    records = [Record(id=f"r{i}", image_path="", caption=f"axial section of the liver number {i}",
                      cuis=("C0000001", "C0000002") if i < MIN_RECORDS else ("C0000001",)) for i in range(12)]
    records += [Record(id="rare", image_path="", caption="renal cyst", cuis=("C0000003",))]
    names = concept_names(records)
    assert names["C0000001"] in caption_phrases(records[0].caption)
    assert "C0000003" not in names  # seen once: no name
    assert named(["C0000003", "C0000001", "C0000001"], names) == [names["C0000001"]]


def test_teaching_terms_never_show_a_code(demo_corpus):
    names = concept_names(demo_corpus.records)
    shown = [term for record in demo_corpus.records[:300] for term in teaching_terms(record, names)]
    assert shown and not any(re.fullmatch(r"C\d{7}", term) for term in shown)
    with_names = [r for r in demo_corpus.records if any(c in names for c in r.cuis)]
    assert len(with_names) >= 0.8 * len(demo_corpus.records)


def test_caption_phrases_skip_function_words_at_their_edges():
    phrases = caption_phrases("CT of the chest showing a left pneumothorax")
    assert {"chest", "pneumothorax"} <= phrases and "left pneumothorax" not in phrases
    assert not any(p.split()[0] in {"of", "the", "showing"} or p.split()[-1] in {"of", "the", "a"} for p in phrases)
