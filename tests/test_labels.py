"""Labels: the documented mapping on small cases, and its precision on the hand-checked demo sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirage_core.corpus import Record
from mirage_core.labels import MODALITIES, REGIONS, UNKNOWN, label_record, modality_of, region_of

FIXTURE = Path(__file__).parent / "fixtures" / "labels_checked.json"


@pytest.mark.parametrize(("caption", "expected"), [
    ("Axial CT of the abdomen", "CT"),
    ("Thorax-CT showing a nodule", "CT"),
    ("CT angiography of the circle of Willis", "angiography"),
    ("PET/CT with FDG uptake", "nuclear/PET"),
    ("Chest X ray on admission", "X-ray"),
    ("Transthoracic echo of the mitral valve", "ultrasound"),
    ("Gastric cast on plain abdominal film", "X-ray"),
    ("AP view of the pelvis after the fall", "X-ray"),
    ("Erect chest film: free air under the diaphragm", "X-ray"),
    ("Chest X-ray and CT of the same patient", UNKNOWN),  # a composite figure
    ("The same patient after surgery", UNKNOWN),
])
def test_modality_from_caption_terms(caption, expected):
    assert modality_of(caption) == expected


def test_cuis_decide_only_when_the_caption_names_no_modality():
    assert modality_of("Lesion in the left lobe", cuis=("C0041618",)) == "ultrasound"
    assert modality_of("MRI of the lesion", cuis=("C0041618",)) == "MRI"
    assert modality_of("Optical coherence tomography of the retina", cuis=("C0040405",)) == UNKNOWN
    assert modality_of("Lesion", cuis=("C0041618", "C0040405")) == UNKNOWN  # CUIs disagree


@pytest.mark.parametrize(("caption", "expected"), [
    ("MRI of the brain showing a frontal lobe mass", "head"),
    ("CT of the abdomen: the liver and the gallbladder neck", "abdomen"),
    ("Sagittal MRI of the lumbar spine", "spine"),
    ("Radiograph of the left knee", "lower limb"),
    ("CT of the chest and the abdomen", UNKNOWN),  # a tie
    ("Whole-body bone scan with renal uptake", UNKNOWN),
])
def test_region_from_caption_terms(caption, expected):
    assert region_of(caption) == expected


def test_region_cuis_count_only_with_a_body_semantic_type():
    assert region_of("Lesion", cuis=("C0024109",), semtypes=("T023 Body Part, Organ, or Organ Component",)) == "chest"
    assert region_of("Lesion", cuis=("C0024109",), semtypes=("T033 Finding",)) == UNKNOWN


def test_labels_are_from_the_documented_sets():
    record = Record("r", "x.jpg", "Coronal MRI of the knee")
    labels = label_record(record)
    assert labels.modality in MODALITIES and labels.region in REGIONS
    assert (labels.modality, labels.region) == ("MRI", "lower limb")


def _precision(checked, corpus_records, key):
    by_id = {r.id: r for r in corpus_records}
    made = [(row, getattr(label_record(by_id[row["id"]]), key)) for row in checked]
    made = [(row, label) for row, label in made if label != UNKNOWN]
    return sum(label == row[key] for row, label in made) / len(made), len(made)


def test_precision_on_the_hand_checked_sample(demo_corpus):
    checked = json.loads(FIXTURE.read_text())["records"]
    assert len(checked) >= 100
    modality_precision, modality_made = _precision(checked, demo_corpus.records, "modality")
    region_precision, region_made = _precision(checked, demo_corpus.records, "region")
    # measured: modality 81/81, region 76/78; the bounds leave room for one or two new mistakes only
    assert modality_precision >= 0.97 and modality_made >= 75
    assert region_precision >= 0.94 and region_made >= 70
