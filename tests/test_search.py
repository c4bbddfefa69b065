"""Hybrid text search: each channel, the fusion, a student's own words, why a result is there (as text), every
backend, and an index from the previous release."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from mirage_core.corpus import Record
from mirage_core.display import highlighted
from mirage_core.glossary import expand, known_lay_words
from mirage_core.index import FORMAT_VERSION, Index, IndexFormatError, load_index
from mirage_core.lexical import LexicalIndex
from mirage_core.relevance import assess, unknown_words
from mirage_core.search import FEATURES, Fusion, channels_of, features, fuse, search_text, why
from mirage_core.startup import open_or_build_index
from mirage_core.text import matching_words, stem, stems


@pytest.fixture(scope="module")
def index(lite_index_dir):
    return load_index(lite_index_dir)


def test_stems_fold_the_plurals_radiology_uses():
    assert stem("metastases") == stem("metastasis")
    assert stem("pneumothoraces") == stem("pneumothorax")
    assert stem("calculi") == stem("calculus") and stem("vertebrae") == stem("vertebra")
    assert stem("fractured") == stem("fracture") and stem("bases") != stem("basis")
    assert matching_words("Bilateral Pneumothoraces; a pneumothorax.", stems("pneumothorax")) == (
        "Pneumothoraces", "pneumothorax")


def test_bm25_ranks_the_caption_that_names_the_word():
    documents = ["chest radiograph with clear lungs"] * 30 + ["Chest x-ray: left tension pneumothorax",
                                                            "Bilateral pneumothoraces after trauma", ""]
    lexical = LexicalIndex(documents)
    scores = lexical.scores(lexical.query_stems("chest x-ray pneumothorax"))
    assert set(np.argsort(-scores)[:2].tolist()) == {30, 31}
    assert scores[32] == 0 and lexical.frequency(stem("pneumothorax")) == 2
    allowed = np.ones(len(documents), dtype=bool)
    allowed[30] = False
    assert lexical.scores(lexical.query_stems("pneumothorax"), allowed)[30] == -np.inf  # filters are exact
    assert lexical.query_stems("qwxz blorf") == []


@pytest.mark.parametrize("lay, term", [
    ("blocked bowel", "obstruction"), ("air outside the bowel", "pneumoperitoneum"),
    ("slipped vertebra", "spondylolisthesis"), ("bone thinning", "osteoporosis"),
    ("Kidney stones in my belly", "nephrolithiasis"),
])
def test_a_students_own_words_reach_the_captions_terms(lay, term):
    expanded = expand(lay)
    assert expanded.startswith(lay) and term in expanded.split()
    assert known_lay_words(lay)  # the relevance test will not call them foreign
    assert expand("chest CT angiography") == "chest CT angiography"  # radiology terms stay as they are


def test_every_channel_ranks_and_the_fusion_explains_itself(index, lite_encoder):
    found = channels_of(index, lite_encoder, "chest x-ray")
    assert set(found.rankings) == {"image", "meaning", "words"}
    for rows in found.rankings.values():
        assert len(rows) and len(set(rows.tolist())) == len(rows)
    hits = fuse(index, found, 8)
    assert len(hits) == 8 and [h.match for h in hits] == sorted((h.match for h in hits), reverse=True)
    assert all(0 < h.match <= 100 and h.channels for h in hits)
    for hit in hits:
        caption_words = set(hit.record.caption.replace(":", " ").replace(",", " ").split())
        assert all(word in hit.record.caption for word in hit.matched)
        assert "match" in why(hit) and "found by" in why(hit)
        if "words" in hit.channels and hit.matched:
            assert caption_words  # a words hit names the matching words of its own caption
    words_only = fuse(index, found, 8, Fusion(weights={"words": 1.0}))
    assert [h.row for h in words_only] == found.rankings["words"][:8].tolist()


def test_the_words_channel_lifts_a_case_the_joint_space_misses(index, lite_encoder):
    counts = {}
    for row, record in enumerate(index.records):
        for word in set(w.lower() for w in record.caption.split() if w.isalpha() and len(w) > 7):
            counts.setdefault(word, []).append(row)
    word, rows = min(((w, r) for w, r in counts.items() if len(r) == 1), key=lambda item: item[0])
    hits = search_text(index, lite_encoder, word, 5)
    assert hits[0].row == rows[0] and "words" in hits[0].channels
    assert word in {m.lower() for m in hits[0].matched}


def test_a_named_modality_puts_its_cases_first(index, lite_encoder):
    labelled = [m for m in set(index.modalities) if m != "unknown"]
    modality = max(labelled, key=lambda m: (index.modalities == m).sum())
    hits = search_text(index, lite_encoder, f"{modality} image", 6)  # the shipped combiner, its fitted weights
    assert all(h.record.modality == modality for h in hits[:3])


def test_filters_and_exclusions_stay_exact(index, lite_encoder):
    licence = index.licences[0]
    hits = search_text(index, lite_encoder, "chest", 10, licences=[licence], exclude=[0])
    assert hits and all(h.record.licence == licence and h.row != 0 for h in hits)
    assert search_text(index, lite_encoder, "chest", 5, modalities=["no such modality"]) == []


def test_highlighted_words_stay_text():
    caption = "<img src=x onerror=alert(1)> **left** [pneumothorax](javascript:x) :red[pneumothorax]"
    shown = highlighted(caption, ("pneumothorax",))
    assert "**pneumothorax**" in shown and not re.search(r"(?<!\\)[<\[]", shown)  # every < and [ escaped
    assert "\\*\\*left\\*\\*" in shown and "\\[" in shown and "\\:red" in shown
    assert highlighted("- a list?", ()) == "\\- a list?"


def test_foreign_and_lay_queries_are_judged_by_the_words_they_use(index, lite_encoder):
    assert unknown_words(index, "qwxz blorf zzzk")
    assert not unknown_words(index, "blocked bowel in my tummy")  # lay words are a student's, not foreign
    nonsense = "helicopter landing on a ship"
    assert assess(index, search_text(index, lite_encoder, nonsense, 5), nonsense).level == "off_topic"


def test_an_index_from_the_previous_release_is_refused_or_rebuilt(tmp_path, lite_index_dir, lite_encoder,
                                                                     demo_slice):
    old = tmp_path / "old"
    shutil.copytree(lite_index_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    (old / "sentences.npy").unlink()
    with pytest.raises(IndexFormatError, match="rebuild it with `mirage build-index`"):
        load_index(old, lite_encoder)
    rebuilt = open_or_build_index(old, lite_encoder, lambda: demo_slice)  # MIRAGE's own cache folder: rebuilt
    assert rebuilt.sentences is not None and rebuilt.manifest["format_version"] == FORMAT_VERSION
    assert load_index(old, lite_encoder).sentences.shape == rebuilt.sentences.shape


def test_an_index_without_meaning_vectors_still_searches_by_image_and_words(lite_encoder):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((40, lite_encoder.dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    records = [Record(id=f"r{i}", image_path="", caption="effusion" if i == 7 else f"case {i}") for i in range(40)]
    index = Index(rows, rows, records, {"fingerprint": lite_encoder.fingerprint})
    hits = search_text(index, lite_encoder, "pleural effusion", 3)
    assert hits[0].row == 7 and hits[0].meaning is None


def test_a_synthetic_images_neighbours_come_from_its_prompts_cases(index, lite_encoder):
    from PIL import Image

    from mirage_core.search import nearest_images

    picture = Image.new("RGB", (64, 64))
    picture.paste((200, 200, 200), (16, 16, 48, 48))
    prompt = "liver lesion"  # names no modality: the prompt's own cases, unfiltered
    allowed = {h.row for h in search_text(index, lite_encoder, prompt, 10)}
    (neighbours,) = nearest_images(index, lite_encoder, [picture], 3, condition=prompt, pool=10)
    assert len(neighbours) == 3 and {h.row for h in neighbours} <= allowed
    scores = [h.ranking for h in neighbours]
    assert scores == sorted(scores, reverse=True)  # ordered by the picture's own likeness among them
    (anywhere,) = nearest_images(index, lite_encoder, [picture], 3)
    assert len(anywhere) == 3


def test_relevance_judges_the_joint_spaces_best_match_under_fusion(index, lite_encoder):
    from mirage_core.query import as_unit_vector

    for text in ("chest x-ray", "blocked bowel", "kidney"):
        hits = search_text(index, lite_encoder, text, 5)
        dense = index.search(as_unit_vector(lite_encoder, text), 5)
        assert assess(index, hits, text).best == pytest.approx(assess(index, dense, text).best, abs=1e-5)


def test_the_combiner_features_are_per_query_scores(index, lite_encoder):
    found = channels_of(index, lite_encoder, "chest x-ray fracture")
    rows, columns = features(index, found)
    pooled = set().union(*(set(r.tolist()) for r in found.rankings.values()))
    assert set(rows.tolist()) == pooled and columns.shape == (len(rows), len(FEATURES))
    image, meaning, words, modality, region, coverage = columns.T
    assert abs(image.mean()) < 1e-9 and abs(image.std() - 1) < 1e-6  # standardised over the candidates
    assert abs(meaning.mean()) < 1e-9 and abs(meaning.std() - 1) < 1e-6
    assert words.max() == 1.0 and words.min() >= 0.0 and set(modality) <= {0.0, 1.0} and set(region) <= {0.0, 1.0}
    assert found.modalities == ("X-ray",) and found.region == "chest"  # what the query names
    assert np.array_equal(modality, np.array([index.records[r].modality == "X-ray" for r in rows], dtype=float))
    assert np.array_equal(region, np.array([index.records[r].region == "chest" for r in rows], dtype=float))
    assert 0.0 <= coverage.min() and coverage.max() <= 1.0 + 1e-9
    assert np.all((coverage > 0) == (words > 0))  # a row holds some query stem exactly when BM25 scores it


def test_coverage_weights_rare_stems_and_reads_whole_captions():
    from mirage_core.lexical import LexicalIndex

    lexical = LexicalIndex(["tension pneumothorax on the left", "pneumothorax pneumothorax", "left lung left lung",
                            "left hip", "left knee"])
    stems = lexical.query_stems("left tension pneumothorax")
    cover = lexical.coverage(stems, np.arange(5))
    assert cover[0] == pytest.approx(1.0)  # names all three
    assert cover[1] > cover[2] > 0  # "pneumothorax" (2 of 5 captions) weighs more than "left" (4 of 5)
    assert cover[3] == cover[2] and lexical.coverage([], np.arange(5)).sum() == 0


def test_the_fitted_combiner_finds_the_signal_and_never_weighs_against_a_row():
    from mirage_core.bench.findings import fit_combiner

    rng = np.random.default_rng(0)
    examples = []
    for number in range(20):
        x = rng.standard_normal((200, len(FEATURES)))
        answers = (x[:, 2] + 0.3 * rng.standard_normal(200)) > 1.2  # the words score tells answers apart
        x[:, 0] -= 2.0 * answers  # a feature that points the wrong way must get 0, not a negative weight
        # a per-query feature: half the queries name a modality, and then their answers have it; pooled over all
        # queries it says little, within a query it says much (what a listwise fit must see)
        x[:, 3] = (answers | (rng.random(200) < 0.5)) if number % 2 else 0.0
        examples.append((x, answers))
    examples.append((rng.standard_normal((50, len(FEATURES))), np.zeros(50, dtype=bool)))  # no answers: ignored
    fitted = fit_combiner(examples)
    assert fitted.weights["words"] > 1.0 and fitted.weights["image"] == 0.0 and fitted.weights["modality"] > 0.5
    noise = max(fitted.weights[name] for name in ("meaning", "region", "coverage"))  # random columns
    assert all(w >= 0 for w in fitted.weights.values()) and fitted.weights["words"] > 5 * noise
    x, answers = examples[1]  # the match is a calibrated probability: answers above even odds, the rest below
    match = 1 / (1 + np.exp(-fitted.logits(x)))
    assert match[answers].mean() > 0.5 > match[~answers].mean()
