import json
import subprocess
import sys

import pytest
from helpers import write_csv_slice

from mirage_core.cli import COMMANDS, main


@pytest.fixture
def small_corpus_csv(tmp_path, demo_slice, monkeypatch):
    """A CSV corpus of 16 demo images, and MIRAGE_HOME in a temporary folder."""
    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    return write_csv_slice(tmp_path / "pairs.csv", demo_slice.records[:16], with_id=False)


def test_every_command_has_help(capsys):
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "--json" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search"], "either a text query or --image"),
        (["search", "x", "--roco", "/no/such/folder"], "corpus not found"),
        (["nonsense"], "invalid choice"),
        (["eval"], "--roco"),
        (["search", "chest", "--index", "/no/such/index"], "no index"),
        (["search", "--image", "/no/such.jpg", "--index", "/no/such/index"], "no index"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mirage: error:") and message in err and len(err.splitlines()) == 1


def test_build_search_arith_eval(small_corpus_csv, tmp_path, capsys):
    out = tmp_path / "index"
    assert main(["build-index", "--roco", str(small_corpus_csv), "--out", str(out), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["count"] == 16 and manifest["encoder"] == "lite" and manifest["dim"] == 256

    assert main(["search", "chest x-ray", "--index", str(out), "--k", "5", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 5 and results[0]["score"] >= results[-1]["score"]
    assert results[0]["article"].startswith("https://www.ncbi.nlm.nih.gov/pmc/articles/PMC")

    image = results[0]["image"]
    assert main(["search", "--image", image, "--index", str(out), "--k", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["image"] == image  # an image finds itself first

    assert main(["search", "", "--index", str(out)]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["search", "x" * 5000, "--index", str(out)]) == 2
    assert "limit" in capsys.readouterr().err

    assert main(["arith", "chest x-ray", "--minus", "bones", "--plus", "0.5*soft tissue", "--index", str(out),
                 "--k", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["results"]) == 4 and list(result["vectors"]) == ["query", "− bones", "+ soft tissue", "result"]
    assert main(["arith", "chest", "--minus", "chest", "--index", str(out)]) == 2
    assert "cancel out" in capsys.readouterr().err

    assert main(["eval", "--roco", str(small_corpus_csv), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 16 and set(metrics["t2i"]) == {"R@1", "R@5", "R@10", "median_rank"}
    assert 0 <= metrics["t2i"]["R@1"] <= metrics["t2i"]["R@10"] <= 100


def test_search_builds_and_reuses_the_default_index(small_corpus_csv, tmp_path, capsys):
    import shutil

    assert main(["search", "CT abdomen", "--roco", str(small_corpus_csv), "--k", "2"]) == 0
    first = capsys.readouterr().out
    assert first.count("\n") == 2
    (manifest,) = (tmp_path / "home" / "indexes").glob("*/manifest.json")
    written = manifest.stat().st_mtime_ns
    shutil.rmtree(small_corpus_csv.parent / "images")  # a rebuild could no longer read a single image
    assert main(["search", "CT abdomen", "--roco", str(small_corpus_csv), "--k", "2"]) == 0
    assert capsys.readouterr().out == first
    assert manifest.stat().st_mtime_ns == written


def test_an_interrupted_rebuild_is_recovered_not_redone(small_corpus_csv, tmp_path, capsys):
    import shutil

    assert main(["search", "CT abdomen", "--roco", str(small_corpus_csv), "--k", "2"]) == 0
    first = capsys.readouterr().out
    (folder,) = (tmp_path / "home" / "indexes").glob("*")
    aside = folder.with_name(f".{folder.name}.old-1")  # killed between the two renames of a swap
    folder.rename(aside)
    (folder.parent / f".{folder.name}.999999999.x.new").mkdir()  # a dead writer's half-written staging
    shutil.rmtree(small_corpus_csv.parent / "images")  # re-embedding is impossible: recovery is the only way
    assert main(["search", "CT abdomen", "--roco", str(small_corpus_csv), "--k", "2"]) == 0
    assert capsys.readouterr().out == first
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_a_read_only_home_fails_before_embedding(small_corpus_csv, tmp_path, capsys, monkeypatch):
    import os

    if os.geteuid() == 0:
        home = tmp_path / "home-is-a-file"  # root writes anywhere: a path through a file stands in for read-only
        home.write_text("")
    else:
        home = tmp_path / "ro"
        home.mkdir(mode=0o500)
    monkeypatch.setenv("MIRAGE_HOME", str(home))
    assert main(["search", "CT abdomen", "--roco", str(small_corpus_csv)]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and "embedding" not in err


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "mirage_core", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "build-index" in done.stdout


def test_quiz_writes_a_deterministic_pack(tmp_path, demo_slice, monkeypatch, capsys):
    from mirage_core.quiz import read_pack

    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    corpus = write_csv_slice(tmp_path / "pairs.csv", demo_slice.records)
    packs = []
    for name in ("a.json", "b.json"):
        argv = ["quiz", "--roco", str(corpus), "--n", "4", "--type", "modality,image_to_caption", "--seed", "7",
                "--out", str(tmp_path / name), "--json"]
        assert main(argv) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["questions"] == 4 and 0 <= summary["rejected_share"] < 1
        packs.append((tmp_path / name).read_text())
    assert packs[0] == packs[1]
    header, questions = read_pack(tmp_path / "a.json")
    assert [q.kind for q in questions] == ["modality", "image_to_caption"] * 2
    assert main(["quiz", "--roco", str(corpus), "--n", "0"]) == 2
    assert "--n must be" in capsys.readouterr().err
    assert main(["quiz", "--roco", str(corpus), "--out", str(tmp_path / "x.txt")]) == 2
    assert ".json, .yaml or .yml" in capsys.readouterr().err


def test_report_and_generate_commands(small_corpus_csv, tmp_path, capsys):
    from PIL import Image

    assert main(["report", "chest x-ray", "--roco", str(small_corpus_csv), "--k", "3", "--enrich", "--json",
                 "--out", str(tmp_path / "report.md")]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["sources"]) <= 3 and payload["statements"] and "query_enrichment" in payload
    assert (tmp_path / "report.md").read_text().startswith("# MIRAGE report: chest x-ray")
    assert main(["report", "chest", "--roco", str(small_corpus_csv), "--k", "0"]) == 2
    assert "--k must be" in capsys.readouterr().err

    assert main(["generate", "chest x-ray", "--steps", "0"]) == 2
    assert "steps must be" in capsys.readouterr().err
    assert main(["generate", "chest x-ray", "--n", "1", "--seed", "4", "--out", str(tmp_path / "gen"), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    image = Image.open(written[0]["path"])
    assert image.text["AI-generated"] == "true" and image.text["Seed"] == "4"
    assert main(["generate", "chest x-ray", "--minus", "chest x-ray", "--out", str(tmp_path / "gen")]) == 2
    assert "cancel out" in capsys.readouterr().err


def test_user_mistakes_are_one_line_and_exit_2(small_corpus_csv, tmp_path, capsys, monkeypatch):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (16, 16), 90).save(image)
    cases = [
        (["search", "chest x-ray", "--modality", "xray", "--roco", str(small_corpus_csv)], "unknown modality 'xray'"),
        (["report", "--image", str(image), "--enrich", "--roco", str(small_corpus_csv)], "--enrich"),
        (["generate", "x", "--profile", "sd", "--minus", "bones"], "'sd' generator takes a text prompt only"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    monkeypatch.setenv("MIRAGE_GENERATOR", "sd")  # the setting is read when --profile is not given
    assert main(["generate", "x", "--plus", "bones"]) == 2
    assert "'sd' generator" in capsys.readouterr().err


def test_generate_never_overwrites_an_earlier_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "chest x-ray", "--n", "1", "--out", "run"]) == 0
    first = (tmp_path / "run" / "synthetic-000000.png").read_bytes()
    assert main(["generate", "hand x-ray", "--n", "1", "--out", "run"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "run" / "synthetic-000000.png").read_bytes() == first
    assert main(["generate", "chest x-ray", "--n", "1"]) == 0  # no --out: a fresh folder under generated/
    assert len(list((tmp_path / "generated").glob("*/synthetic-000000.png"))) == 1
