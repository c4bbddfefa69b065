import json

import numpy as np
import torch
from helpers import write_csv_slice

from mirage_core.cli import main
from mirage_core.corpus import Corpus, Record
from mirage_core.encoders import create_encoder
from mirage_core.encoders.training import soft_targets, text_views, train_encoder


def test_soft_targets_credit_shared_concepts():
    records = [
        Record(id="a", image_path="", caption="x", cuis=("C1", "C2"), pmc_id="PMC1"),
        Record(id="b", image_path="", caption="y", cuis=("C1", "C2", "C3"), pmc_id="PMC2"),
        Record(id="c", image_path="", caption="z", cuis=("C9",), pmc_id="PMC3"),
        Record(id="d", image_path="", caption="w", cuis=("C8",), pmc_id="PMC3"),
    ]
    targets = soft_targets(records, own_weight=0.7)
    np.testing.assert_allclose(targets.sum(1).numpy(), 1, atol=1e-6)
    assert targets[0, 0] == torch.tensor(0.7) and targets[0, 1] > 0 and targets[0, 2] == 0
    assert targets[2, 3] > 0  # sibling figures of one article
    lonely = soft_targets([records[0], Record(id="e", image_path="", caption="v", cuis=("C7",))], 0.7)
    np.testing.assert_allclose(lonely.numpy(), np.eye(2))  # nothing shared: all credit to the true pair


def test_text_views():
    record = Record(id="a", image_path="", caption="Chest X-ray. Left pneumothorax.", keywords=("chest", "xray"))
    assert text_views(record) == ["Chest X-ray. Left pneumothorax.", "Chest X-ray.", "chest xray"]


def test_train_encoder_writes_loadable_weights(demo_slice, tmp_path, capsys):
    out = tmp_path / "weights"
    report = train_encoder(
        Corpus("slice", demo_slice.records[:40]), out, epochs=20, cache_dir=tmp_path / "cache", holdout=False
    )
    assert report["train_pairs"] == 40 and (out / "heads.safetensors").exists()
    assert json.loads((out / "training.json").read_text())["train_pairs"] == 40
    trained = create_encoder(f"lite:{out / 'heads.safetensors'}")
    assert trained.fingerprint != create_encoder("lite").fingerprint
    texts = trained.encode_text([r.caption for r in demo_slice.records[:40]])
    assert texts.shape == (40, trained.dim)


def test_train_encoder_cli_reports_heldout(demo_corpus, tmp_path, capsys):
    records = demo_corpus.records[:150]
    csv_path = write_csv_slice(tmp_path / "pairs.csv", records, with_id=False)
    assert main(["train-encoder", "--roco", str(csv_path), "--out", str(tmp_path / "w"), "--epochs", "10",
                 "--cache", str(tmp_path / "cache"), "--cv", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cv"]["folds"] == 3 and report["cv"]["pairs"] == report["train_pairs"]
    assert len(report["cv"]["t2i_R@10"]["per_fold"]) == 3 and 0 <= report["cv"]["i2t_R@10"]["mean"] <= 100
    assert 0 < report["heldout_pairs"] < 60 and report["train_pairs"] + report["heldout_pairs"] == 150
    assert set(report["heldout"]["t2i"]) == {"R@1", "R@5", "R@10", "median_rank"}
    # the ids it trained on ship beside the weights, so no later held-out figure counts them as unseen
    from mirage_core.encoders import create_encoder

    trained = create_encoder(f"lite:{tmp_path / 'w' / 'heads.safetensors'}")
    from mirage_core.corpus import load_corpus
    from mirage_core.splits import split_records

    train_part, heldout_part = split_records(load_corpus(csv_path).records)
    assert trained.training_ids == {r.id for r in train_part} and len(trained.training_ids) == report["train_pairs"]
    assert not trained.training_ids & {r.id for r in heldout_part}


def test_fine_tune_tiny_open_clip(tiny_open_clip_dir, demo_slice, tmp_path):
    out = tmp_path / "tuned"
    report = train_encoder(
        Corpus("slice", demo_slice.records[:24]), out, encoder=f"open_clip:local-dir:{tiny_open_clip_dir}",
        epochs=2, holdout=False,
    )
    assert report["train_pairs"] == 24
    before = create_encoder(f"open_clip:local-dir:{tiny_open_clip_dir}")
    after = create_encoder(f"open_clip:local-dir:{out}")
    assert before.fingerprint != after.fingerprint
    assert not np.allclose(before.encode_text(["chest x-ray"]), after.encode_text(["chest x-ray"]))


def test_cross_validation_folds_are_todays_and_keep_articles_whole(demo_corpus):
    from mirage_core.splits import cv_folds, fold_of

    records = demo_corpus.records[:600]
    folds = cv_folds(records, 5)
    assert len(folds) == 5
    seen = np.zeros(len(records), dtype=int)
    for fold, (inside, outside) in enumerate(folds):
        assert [i for i, r in enumerate(records) if fold_of(r, 5) == fold] == outside.tolist()  # today's folds
        assert not {records[i].pmc_id or records[i].id for i in inside} & {records[i].pmc_id or records[i].id
                                                                          for i in outside}
        seen[outside] += 1
    assert (seen == 1).all()


def test_backbone_fine_tuning_compares_recipes_and_resumes(demo_corpus, tmp_path, capsys):
    """The whole image backbone learns on each fold (tiny run), both recipes are scored on the same fold, and a
    rerun picks the finished fold up from disk instead of training it again."""
    import torch

    from mirage_core.encoders.backbone_training import ImageTower, augment
    from mirage_core.encoders.lite import LiteHeads, load_config

    pixels = torch.rand(4, 1, 64, 64)
    augmented = augment(pixels, torch.Generator().manual_seed(0))
    assert augmented.shape == pixels.shape and 0 <= augmented.min() and augmented.max() <= 1
    assert not torch.allclose(augmented, pixels)
    config = load_config()
    tower = ImageTower(config, LiteHeads(1, 1, config))
    assert all(p.requires_grad for p in tower.backbone.net.parameters())
    rates = [group["lr"] for group in tower.parameter_groups(__import__(
        "mirage_core.encoders.backbone_training", fromlist=["BackboneSettings"]).BackboneSettings())]
    assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0] / 10  # the stem learns least

    csv_path = write_csv_slice(tmp_path / "pairs.csv", demo_corpus.records[:80], with_id=False)
    arguments = ["train-encoder", "--roco", str(csv_path), "--out", str(tmp_path / "w"), "--epochs", "1",
                 "--cache", str(tmp_path / "cache"), "--cv", "2", "--backbone", "--image-size", "96",
                 "--fold", "0", "--json"]
    assert main(arguments) == 0
    report = json.loads(capsys.readouterr().out)["backbone_cv"]
    assert report["done"] == [0]
    fold = report["per_fold"][0]
    assert 0 <= fold["fine_tuned"]["t2i"]["R@10"] <= 100 and 0 <= fold["shipped"]["i2t"]["R@10"] <= 100
    assert [point["epoch"] for point in fold["curve"]] == [0, 1]  # the frozen backbone's score, then each epoch
    assert (tmp_path / "w" / "backbone-cv.json").exists()
    assert main(arguments) == 0
    assert "resumed" not in capsys.readouterr().err  # a finished fold is read back, not retrained
    assert main([*arguments[:-3], "--fold", "5"]) == 2
