"""The relevance test: off-topic and weak queries are flagged, in-domain ones are not; every page and the CLI
use the same verdict, and results show the score they are ranked by."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mirage_core.cli import main
from mirage_core.corpus import Record
from mirage_core.index import Index, load_index
from mirage_core.relevance import assess, floor_of
from mirage_core.search import search_text


@pytest.fixture(scope="module")
def index(lite_index_dir):
    return load_index(lite_index_dir)


def test_nonsense_is_off_topic_and_a_radiology_query_is_relevant(index, lite_encoder):
    nonsense = "qwxz blorf zzzk fnord"
    assert assess(index, search_text(index, lite_encoder, nonsense, 12), nonsense).level == "off_topic"
    verdict = assess(index, search_text(index, lite_encoder, "chest x-ray", 12), "chest x-ray")
    assert verdict.relevant and verdict.best >= verdict.floor


def test_the_floor_is_a_low_quantile_of_the_corpus_own_captions():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((10, 16)).astype(np.float32)
    rows = centres[np.arange(200) % 10] + 0.05 * rng.standard_normal((200, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)  # tight clusters: each row has close neighbours
    records = [Record(id=f"r{i}", image_path="", caption="x") for i in range(200)]
    index = Index(rows, rows, records, {})
    best = np.sort(rows @ rows.T - np.eye(200) * 10, axis=1)[:, -1]  # each row's best other row
    assert abs(floor_of(index) - np.quantile(best, 0.05)) < 1e-5
    away = rng.standard_normal(16).astype(np.float32)
    away -= centres.T @ np.linalg.lstsq(centres.T, away, rcond=None)[0]  # orthogonal to every cluster
    weak = assess(index, index.search(away / np.linalg.norm(away), 5))  # nothing is near it
    assert weak.level == "weak" and "floor" in weak.reason


def test_results_are_ranked_by_the_match_they_show(index, lite_encoder):
    hits = search_text(index, lite_encoder, "CT of the abdomen", 10)
    shown = [hit.match for hit in hits]
    assert shown == sorted(shown, reverse=True) and all(0 < m <= 100 for m in shown)
    typical = float(np.median(index.image_bias))
    assert all(abs(hit.ranking - (hit.score - index.image_bias[hit.row] + typical)) < 1e-5 for hit in hits)


def test_the_cli_reports_the_verdict(lite_index_dir, capsys):
    assert main(["search", "qwxz blorf zzzk fnord", "--index", str(lite_index_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["relevance"]["level"] == "off_topic"
    scores = [row["match"] for row in result["results"]]
    assert scores == sorted(scores, reverse=True) and all("found by" in row["why"] for row in result["results"])
    assert main(["search", "qwxz blorf zzzk fnord", "--index", str(lite_index_dir)]) == 0
    assert "never occur in this corpus" in capsys.readouterr().err


def test_bench_relevance_measures_both_rates(index, lite_encoder):
    from mirage_core.bench.relevance import bench_relevance

    result = bench_relevance(index, lite_encoder, n=20)
    assert 0 <= result.false_alarm_rate <= 1 and result.off_topic_queries == 30
    assert result.off_topic_hit_rate >= 0.5  # the nonsense ones at least are caught by their words
    assert "false alarms" in result.describe()


def test_the_heldout_report_ranks_each_caption_against_every_image():
    from mirage_core.evaluation import heldout_report
    from mirage_core.splits import is_heldout

    rng = np.random.default_rng(3)
    rows = rng.standard_normal((300, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    records = [Record(id=f"r{i}", image_path="", caption=f"c{i}", pmc_id=f"PMC{i}") for i in range(300)]
    shuffled = rows[::-1].copy()  # every caption now points at another row's image
    report = heldout_report(Index(rows, shuffled, records, {}))
    assert report["n"] == sum(is_heldout(r) for r in records) and report["candidates"] == 300
    assert report["t2i"]["R@1"] < 5 and len(report["failures"]) == 3
    assert all(f.rank > 1 and f.found_instead.id != f.record.id for f in report["failures"])
    exact = heldout_report(Index(rows, rows, records, {}))
    assert exact["t2i"]["R@1"] == 100.0 and exact["i2t"]["R@1"] == 100.0


def test_records_the_encoder_trained_on_never_count_as_held_out(demo_corpus, lite_encoder):
    """Weights trained on every pair (as the shipped ones are) have no held-out pairs on that data: the home
    page's report leaves them out, and `mirage eval --heldout` refuses rather than report a flattering figure."""
    from mirage_core.corpus import Corpus
    from mirage_core.errors import MirageError
    from mirage_core.evaluation import evaluate_corpus, heldout_report
    from mirage_core.splits import is_heldout

    rng = np.random.default_rng(4)
    rows = rng.standard_normal((300, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    records = [Record(id=f"r{i}", image_path="", caption=f"c{i}", pmc_id=f"PMC{i}") for i in range(300)]
    heldout = [r.id for r in records if is_heldout(r)]
    index = Index(rows, rows, records, {})
    assert heldout_report(index, seen=frozenset(heldout[:5]))["n"] == len(heldout) - 5
    assert heldout_report(index, seen=frozenset(heldout[:5]))["trained_on"] == 5
    assert heldout_report(index, seen=frozenset(r.id for r in records))["n"] == 0

    assert {r.id for r in demo_corpus.records} <= lite_encoder.training_ids  # the shipped weights saw the demo slice
    with pytest.raises(MirageError, match="trained on every held-out pair"):
        evaluate_corpus(demo_corpus, lite_encoder, heldout_only=True)
    unseen = Corpus("renamed", [dataclasses.replace(r, id=f"new-{r.id}") for r in demo_corpus.records[:12]], {})
    metrics = evaluate_corpus(unseen, lite_encoder)
    assert metrics["seen_in_training"] == 0 and metrics["n"] == 12
