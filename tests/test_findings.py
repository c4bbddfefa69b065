"""The finding channel: a query's finding words found in the captions lift the records that name them."""

from __future__ import annotations

import numpy as np

from mirage_core.corpus import Record
from mirage_core.findings import finding_words, rows_naming, stem, with_findings
from mirage_core.index import Index
from mirage_core.relevance import assess


def _index(n: int = 400) -> Index:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    captions = [f"chest radiograph of patient {i} with clear lungs" for i in range(n)]
    for row, text in {7: "Chest x-ray: left tension pneumothorax", 150: "Bilateral pneumothoraces after trauma",
                      300: "CT showing liver metastases", 301: "Metastatic deposits in the liver (metastasis)"}.items():
        captions[row] = text
    records = [Record(id=f"R{i}", image_path="", caption=c, modality="X-ray", licence="CC BY")
               for i, c in enumerate(captions)]
    records[300] = Record(id="R300", image_path="", caption=captions[300], modality="CT", licence="CC BY-NC")
    return Index(vectors, vectors, records, {"fingerprint": "f"})


def test_finding_words_are_rare_and_name_neither_modality_nor_region():
    index = _index()
    assert finding_words(index, "chest x-ray pneumothorax") == ["pneumothorax"]
    assert finding_words(index, "CT liver metastases") == ["metastases"]
    assert finding_words(index, "chest radiograph lungs") == []  # a region, a modality, and a word in every caption
    assert finding_words(index, "qwxz blorf") == []  # foreign words are the relevance test's business


def test_stems_match_a_findings_forms():
    index = _index()
    assert stem("metastases") == "metastas" and stem("cyst") == "cyst"
    assert set(rows_naming(index, "metastases").tolist()) == {300, 301}
    assert set(rows_naming(index, "pneumothorax").tolist()) == {7, 150}


def test_records_naming_the_finding_join_the_top_and_rank_by_their_score():
    index = _index()
    query = index.images[42]  # densely, the pneumothorax cases are nowhere near this vector
    dense = index.search(query, 5)
    assert not {7, 150} & {hit.row for hit in dense}
    hits = with_findings(index, query, "chest x-ray pneumothorax", dense, 5, bonus=1.0)  # random rows: far apart
    assert {7, 150} <= {hit.row for hit in hits} and len(hits) == 5
    assert [h.ranking for h in hits] == sorted((h.ranking for h in hits), reverse=True)
    for hit in hits:
        assert hit.finding_bonus == (1.0 if hit.row in (7, 150) else 0.0)
        _, plain = index.rank(query, np.array([hit.row]))
        assert abs(hit.ranking - hit.finding_bonus - float(plain[0])) < 1e-6
    assert with_findings(index, query, "chest radiograph", dense, 5) == dense  # no finding: unchanged
    allowed = index.mask(licences=["CC BY"])
    filtered = with_findings(index, query, "CT liver metastases", index.search(query, 5, licences=["CC BY"]), 5,
                             allowed, bonus=1.0)
    assert 301 in {h.row for h in filtered} and 300 not in {h.row for h in filtered}  # filters stay exact


def test_relevance_judges_the_dense_match_not_the_bonus():
    index = _index()
    query = index.images[42]
    hits = with_findings(index, query, "chest x-ray pneumothorax", index.search(query, 5), 5, bonus=1.0)
    assert any(h.finding_bonus for h in hits)
    verdict = assess(index, hits, kind="vector")
    assert verdict.best == max(h.ranking - h.finding_bonus for h in hits)
