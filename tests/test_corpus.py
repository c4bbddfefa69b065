from pathlib import Path

import pytest
from helpers import write_image, write_roco_split

from mirage_core.corpus import load_corpus, normalise_licence, parse_licence_filter
from mirage_core.errors import CorpusError


def test_roco_split_reads_every_field(tmp_path):
    corpus = load_corpus(write_roco_split(tmp_path / "radiology"))
    assert len(corpus) == 4 and not corpus.skipped
    first = corpus.records[0]
    assert first.id == "ROCO_00001"
    assert first.caption == "chest x-ray number 0."  # the space after the tab is not part of the caption
    assert first.keywords == ("kw0", "shared")
    assert first.cuis == ("C0000000", "C0000099")
    assert first.semtypes == ("T060 Diagnostic Procedure",)
    assert first.licence == "CC BY" and corpus.records[1].licence == "CC0"  # CRLF stripped
    assert first.pmc_id == "PMC100" and first.figure_file == "fig0.jpg"
    assert first.article_url == "https://www.ncbi.nlm.nih.gov/pmc/articles/PMC100/"
    assert first.licence_url.startswith("https://creativecommons.org/licenses/by/")
    assert first.modality == "X-ray" and corpus.records[1].modality == "CT"


def test_malformed_lines_missing_and_corrupt_images_are_counted(tmp_path):
    folder = write_roco_split(tmp_path / "radiology", n=4)
    with open(folder / "captions.txt", "a", encoding="utf-8") as handle:
        handle.write("no tab on this line\n\t caption without id\nROCO_00009\t \nROCO_00001\t duplicate\n")
    (folder / "images" / "ROCO_00002.jpg").unlink()
    (folder / "images" / "ROCO_00003.jpg").write_bytes(b"this is not a jpeg")
    corpus = load_corpus(folder)
    assert [r.id for r in corpus.records] == ["ROCO_00001", "ROCO_00004"]
    assert corpus.skipped["malformed line in captions.txt"] == 3
    assert corpus.skipped["duplicate id"] == 1
    assert corpus.skipped["missing image"] == 1
    assert corpus.skipped["corrupt image"] == 1


def test_missing_caption_file_is_a_clear_error(tmp_path):
    folder = write_roco_split(tmp_path / "radiology")
    (folder / "captions.txt").unlink()
    with pytest.raises(CorpusError, match="captions.txt"):
        load_corpus(folder)


def test_not_a_corpus(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="not a corpus folder"):
        load_corpus(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CorpusError, match="not a .csv"):
        load_corpus(tmp_path / "notes.txt")


def test_roco_root_with_split(tmp_path):
    write_roco_split(tmp_path / "data" / "train" / "radiology", n=4)
    write_roco_split(tmp_path / "data" / "test" / "radiology", n=2)
    assert len(load_corpus(tmp_path, split="test")) == 2
    with pytest.raises(CorpusError, match="choose one with --split"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="split 'validation' not found"):
        load_corpus(tmp_path, split="validation")


def test_licence_filter(tmp_path):
    folder = write_roco_split(tmp_path / "radiology")
    corpus = load_corpus(folder, licences="cc-by, CC0")
    assert {r.licence for r in corpus.records} == {"CC BY", "CC0"}
    assert corpus.skipped["licence filtered"] == 1
    assert normalise_licence("CC BY 4.0") == "CC BY"
    assert parse_licence_filter("") is None


def test_rocov2_csvs(tmp_path):
    (tmp_path / "valid_captions.csv").write_text(
        'ID,Caption\nROCOv2_1,"CT of the chest, axial"\nROCOv2_2,MRI brain\nbroken\n'
    )
    (tmp_path / "valid_concepts.csv").write_text("ID,CUIs\nROCOv2_1,C0040405;C0817096\n")
    write_image(tmp_path / "valid" / "ROCOv2_1.jpg")
    write_image(tmp_path / "valid" / "ROCOv2_2.jpg")
    corpus = load_corpus(tmp_path)
    assert [r.id for r in corpus.records] == ["ROCOv2_1", "ROCOv2_2"]
    assert corpus.records[0].caption == "CT of the chest, axial"
    assert corpus.records[0].cuis == ("C0040405", "C0817096")
    assert corpus.skipped["malformed line in valid_captions.csv"] == 1


def test_plain_csv(tmp_path):
    write_image(tmp_path / "imgs" / "a.jpg")
    write_image(tmp_path / "imgs" / "b.png")
    (tmp_path / "pairs.csv").write_text("image,caption,licence\nimgs/a.jpg,Chest X-ray,CC BY\nimgs/b.png,,CC0\n")
    corpus = load_corpus(tmp_path / "pairs.csv")
    assert len(corpus) == 1 and corpus.records[0].caption == "Chest X-ray"
    assert Path(corpus.records[0].image_path).name == "a.jpg"
    assert corpus.skipped["malformed line in pairs.csv"] == 1


def test_demo_corpus_reads_cleanly(demo_corpus):
    assert len(demo_corpus) == 2116 and not demo_corpus.skipped
    assert all(r.pmc_id.startswith("PMC") for r in demo_corpus.records)
    assert {r.licence for r in demo_corpus.records} <= {"CC BY", "CC0"}
