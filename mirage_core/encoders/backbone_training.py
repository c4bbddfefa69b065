"""Whole-backbone fine-tuning of the lite encoder's image side, and its cross-validation against the shipped recipe.

The shipped recipe freezes EfficientNet-Lite0 and trains only the heads on cached features. Here every block of
the image backbone learns too, contrastively against the *frozen* text side (MiniLM features through the text heads
the recipe trained on the same data), with what makes fine-tuning on a few thousand images work:

- layer-wise learning-rate decay (the image heads at `lr`, each block back towards the stem `layer_decay` times
  less), a linear warm-up, then cosine decay;
- augmentation suited to radiographs: a random crop of 55–100 % of the area, a small rotation, a mirror, contrast
  and gamma jitter — grayscale only, no colour;
- an exponential moving average of the weights (`diffusers.training_utils.EMAModel`), which is what is scored;
- early stopping on an inner slice of the training fold (whole articles), never on the fold being scored.

Images are decoded, letterboxed and cached once as grayscale bytes; a checkpoint is written after every epoch,
so an interrupted run resumes where it stopped. `cross_validate_backbone` runs both recipes on the same folds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..corpus import Record
from ..errors import ImageError
from ..files import atomic_path, write_json
from ..images import open_image
from .lite import ImageBackbone, LiteHeads
from .metrics import recall_metrics
from .training import (
    TEXT_VIEWS,
    FeatureCache,
    TrainSettings,
    _heldout_metrics,
    embed_cached,
    fit_heads,
    score_embeddings,
)

Log = Callable[[str], None]


@dataclass
class BackboneSettings:
    image_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-4  # the image heads'; block i of n gets lr · layer_decay^(n - i)
    layer_decay: float = 0.8
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    ema_decay: float = 0.998
    patience: int = 4  # epochs without a better inner score before stopping
    seed: int = 0


def pixel_cache(records: Sequence[Record], size: int, cache_dir: Path, log: Log | None = None) -> np.ndarray:
    """[N, size, size] uint8: each image letterboxed to a square, grayscale; decoded once, then memory-mapped."""
    digest = hashlib.sha256(f"pixels {size}".encode())
    for record in records:
        digest.update(f"{record.id}\t{record.image_path}\n".encode())
    path = Path(cache_dir) / f"pixels-{size}-{digest.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    rows = np.zeros((len(records), size, size), dtype=np.uint8)
    for i, record in enumerate(records):
        try:
            image = open_image(record.image_path).convert("L")
        except ImageError:
            continue  # an unreadable image stays black, as feature extraction treats it
        scale = size / max(image.size)
        width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        canvas = Image.new("L", (size, size))
        canvas.paste(image.resize((width, height), Image.BILINEAR), ((size - width) // 2, (size - height) // 2))
        rows[i] = np.asarray(canvas)
        if log and (i + 1) % 500 == 0:
            log(f"pixels cached: {i + 1}/{len(records)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, rows)
    return np.load(path, mmap_mode="r")


def augment(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (55–100 % of the area), rotation within ±8°, mirror, contrast and gamma, in one resampling.

    `pixels`: [B, 1, S, S] in [0, 1]. Returns the same shape."""
    b = len(pixels)
    uniform = lambda low, high: low + (high - low) * torch.rand(b, generator=generator)  # noqa: E731
    scale = uniform(0.55, 1.0).sqrt()
    angle = uniform(-8, 8) * math.pi / 180
    mirror = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    shift = (1 - scale)[:, None] * (2 * torch.rand(b, 2, generator=generator) - 1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                         torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mean = out.mean((1, 2, 3), keepdim=True)
    out = ((out - mean) * uniform(0.8, 1.2)[:, None, None, None] + mean).clamp(0, 1)
    return out ** uniform(0.7, 1.4)[:, None, None, None]


def to_backbone_input(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 1, S, S] in [0, 1] → [B, 3, size, size] in [-1, 1], as `ImageBackbone.preprocess` gives."""
    if pixels.shape[-1] != size:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (pixels * 2 - 1).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


class ImageTower(torch.nn.Module):
    """The trainable image side: the backbone and the image heads of every ensemble member."""

    def __init__(self, config: dict, heads: LiteHeads):
        super().__init__()
        self.backbone = ImageBackbone(dict(config))
        self.backbone.net.requires_grad_(True)
        self.heads = heads.image

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixels)
        return LiteHeads._joint([head(features) for head in self.heads])

    def parameter_groups(self, settings: BackboneSettings) -> list[dict]:
        """Layer-wise decay: heads, then the head conv and the blocks from last to first, then the stem."""
        net = self.backbone.net
        stages = [list(self.heads.parameters()), list(net._conv_head.parameters())]
        stages += [list(block.parameters()) for block in reversed(net._blocks)]
        stages.append(list(net._conv_stem.parameters()))
        return [{"params": params, "lr": settings.lr * settings.layer_decay**depth}
                for depth, params in enumerate(stages) if params]


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.inference_mode()
def embed_pixels(tower: ImageTower, pixels: np.ndarray, rows: Sequence[int], size: int, batch: int = 64) -> np.ndarray:
    tower.eval()
    out = []
    for start in range(0, len(rows), batch):
        chunk = torch.from_numpy(np.asarray(pixels[list(rows[start:start + batch])], dtype=np.float32) / 255.0)
        out.append(tower(to_backbone_input(chunk[:, None], size)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


def _text_embeddings(heads: LiteHeads, text_features: np.ndarray) -> torch.Tensor:
    """[N, TEXT_VIEWS, D] frozen caption embeddings: the targets the image side learns to meet."""
    with torch.inference_mode():
        flat = torch.from_numpy(text_features.reshape(-1, text_features.shape[-1]).astype(np.float32))
        return heads.embed_text(flat).reshape(len(text_features), TEXT_VIEWS, -1).clone()


def fine_tune(
    pixels: np.ndarray, rows: Sequence[int], early_rows: Sequence[int], text_features: np.ndarray,
    heads: LiteHeads, config: dict, settings: BackboneSettings, checkpoint: Path, log: Log | None = None,
) -> tuple[ImageTower, list[dict]]:
    """Fine-tune the image tower on `rows` of `pixels` (text features aligned to `pixels`), early-stopping on
    `early_rows`; resumes from `checkpoint` when it exists. Returns the best EMA weights and the epoch curve."""
    from diffusers.training_utils import EMAModel

    config = dict(config, image_size=settings.image_size)
    heads.eval()
    targets = _text_embeddings(heads, text_features)
    tower = ImageTower(config, heads).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(tower.parameter_groups(settings), weight_decay=settings.weight_decay)
    base_lrs = [group["lr"] for group in optimiser.param_groups]
    ema = EMAModel(tower.parameters(), decay=settings.ema_decay, use_ema_warmup=True)
    scale = heads.logit_scale.detach().exp().clamp(max=100).mean()
    rows = np.asarray(rows)
    steps_per_epoch = max(1, len(rows) // settings.batch_size)
    total, warmup = settings.epochs * steps_per_epoch, max(1, int(settings.warmup_epochs * steps_per_epoch))
    state = {"epoch": 0, "best": -1.0, "stale": 0, "curve": [], "best_weights": None}
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        tower.load_state_dict(saved["tower"])
        optimiser.load_state_dict(saved["optimiser"])
        ema.load_state_dict(saved["ema"])
        state = saved["state"]
        if log:
            log(f"resumed after epoch {state['epoch']} (best inner R@1 {state['best']:.1f})")
    if not state["curve"]:  # the frozen backbone's own score: what the epochs must beat
        state["best"] = _inner_score(tower, pixels, early_rows, targets, settings.image_size)
        state["curve"].append({"epoch": 0, "inner_R@1": round(state["best"], 2), "seconds": 0.0})
        state["best_weights"] = {k: v.clone() for k, v in tower.state_dict().items()}  # if no epoch beats it
        if log:
            log(f"before fine-tuning: inner R@1 {state['best']:.1f}")
    generator = torch.Generator().manual_seed(settings.seed)
    started, first_epoch = time.time(), state["epoch"]
    while state["epoch"] < settings.epochs and state["stale"] < settings.patience:
        epoch = state["epoch"]
        order = np.random.default_rng(settings.seed * 1000 + epoch).permutation(rows)
        generator.manual_seed(settings.seed * 1000 + epoch)
        tower.train()
        losses = []
        for step in range(steps_per_epoch):
            batch = np.sort(order[step * settings.batch_size:(step + 1) * settings.batch_size])
            for group, lr in zip(optimiser.param_groups, base_lrs):
                group["lr"] = lr * _schedule(epoch * steps_per_epoch + step, total, warmup)
            raw = torch.from_numpy(np.asarray(pixels[batch], dtype=np.float32) / 255.0)[:, None]
            images = tower(to_backbone_input(augment(raw, generator), settings.image_size))
            view = torch.multinomial(torch.tensor([0.6, 0.2, 0.2]), len(batch), True, generator=generator)
            captions = targets[torch.from_numpy(batch), view]
            logits = scale * images @ captions.T
            labels = torch.arange(len(batch))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            ema.step(tower.parameters())
            losses.append(loss.item())
            if log and (step + 1) % 10 == 0:
                done = (epoch - first_epoch) * steps_per_epoch + step + 1
                left = (time.time() - started) / done * ((settings.epochs - epoch) * steps_per_epoch - step - 1)
                log(f"epoch {epoch + 1}/{settings.epochs} step {step + 1}/{steps_per_epoch} "
                    f"loss {np.mean(losses[-10:]):.3f} · ETA {left / 60:.0f} min at most")
        ema.store(tower.parameters())
        ema.copy_to(tower.parameters())
        early = _inner_score(tower, pixels, early_rows, targets, settings.image_size)
        if early > state["best"]:
            state["best"], state["stale"] = early, 0
            state["best_weights"] = {k: v.clone() for k, v in tower.state_dict().items()}
        else:
            state["stale"] += 1
        ema.restore(tower.parameters())
        state["epoch"] = epoch + 1
        state["curve"].append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                               "inner_R@1": round(early, 2), "seconds": round(time.time() - started, 1)})
        if log:
            log(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}, inner R@1 (EMA) {early:.1f}")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(checkpoint) as temporary:
            torch.save({"tower": tower.state_dict(), "optimiser": optimiser.state_dict(), "ema": ema.state_dict(),
                        "state": state}, temporary)
    if state["best_weights"] is not None:
        tower.load_state_dict(state["best_weights"])
    return tower.eval(), state["curve"]


def _inner_score(tower: ImageTower, pixels, rows: Sequence[int], targets: torch.Tensor, size: int) -> float:
    """Mean R@1 of both directions among the early-stopping pairs alone (no bank): cheap, and only a signal."""
    images = embed_pixels(tower, pixels, rows, size)
    metrics = recall_metrics(images, targets[list(rows), 0].numpy())
    return (metrics["t2i"]["R@1"] + metrics["i2t"]["R@1"]) / 2


def _inner_split(records: Sequence[Record], rows: Sequence[int]) -> tuple[list[int], list[int]]:
    """About a tenth of the training fold's articles, by an independent hash, for early stopping."""
    from ..splits import fold_of

    inner = {row for row in rows if fold_of(records[row], 10, salt="early stopping") == 0}
    return [row for row in rows if row not in inner], sorted(inner)


def cross_validate_backbone(
    records: Sequence[Record], features: FeatureCache, config: dict, folds: int, settings: BackboneSettings,
    work_dir: Path, only: Sequence[int] | None = None, log: Log | None = None,
) -> dict:
    """Both recipes on the same by-article folds: the shipped one (frozen backbone, heads on cached features) and
    the fine-tuned backbone starting from those heads. Finished folds are kept in `work_dir` and not redone."""
    from ..splits import cv_folds

    work_dir = Path(work_dir) / f"backbone-{settings.image_size}-{settings.seed}"
    pixels = pixel_cache(records, round(settings.image_size * 8 / 7), work_dir.parent, log)
    results = {}
    for fold, (inside, outside) in enumerate(cv_folds(records, folds)):
        if only is not None and fold not in only:
            continue
        done = work_dir / f"fold-{fold}-of-{folds}.json"
        if done.exists():
            results[fold] = json.loads(done.read_text())
            continue
        started = time.time()
        heads = fit_heads(features.subset(inside), [records[i] for i in inside], config, TrainSettings())
        shipped = _heldout_metrics(heads, features.subset(inside), features.subset(outside), config)
        heads_seconds = time.time() - started
        # the fine-tuned tower starts from heads that never saw its early-stopping pairs, so that signal is honest;
        # it therefore learns from ~10 % fewer pairs than the shipped recipe it is compared with
        train_rows, early_rows = _inner_split(records, inside)
        start = fit_heads(features.subset(train_rows), [records[i] for i in train_rows], config, TrainSettings())
        tower, curve = fine_tune(pixels, train_rows, early_rows, features.text, start, config, settings,
                                 work_dir / f"fold-{fold}-of-{folds}.pt", log)
        (_, inside_captions), (_, outside_captions) = (embed_cached(start, features.subset(rows))
                                                        for rows in (inside, outside))
        tuned = score_embeddings(embed_pixels(tower, pixels, inside, settings.image_size), inside_captions,
                                 embed_pixels(tower, pixels, outside, settings.image_size), outside_captions, config)
        results[fold] = {"fold": fold, "pairs": len(outside), "shipped": shipped, "fine_tuned": tuned,
                         "curve": curve, "heads_seconds": round(heads_seconds, 1),
                         "fine_tune_seconds": round(sum(point["seconds"] for point in curve[-1:]), 1)}
        write_json(done, results[fold])
        if log:
            log(f"fold {fold + 1}/{folds}: R@10 t2i {shipped['t2i']['R@10']:.1f} → {tuned['t2i']['R@10']:.1f}, "
                f"i2t {shipped['i2t']['R@10']:.1f} → {tuned['i2t']['R@10']:.1f}")
    summary = {"folds": folds, "done": sorted(results), "settings": dataclasses.asdict(settings)}
    for recipe in ("shipped", "fine_tuned"):
        for direction in ("t2i", "i2t"):
            values = [results[f][recipe][direction]["R@10"] for f in sorted(results)]
            summary[f"{recipe}_{direction}_R@10"] = {
                "mean": round(float(np.mean(values)), 2) if values else None,
                "std": round(float(np.std(values)), 2) if values else None, "per_fold": values}
    summary["per_fold"] = [results[f] for f in sorted(results)]
    return summary


def _every_tenth(log: Log | None):
    if log is None:
        return None
    return lambda done, total: log(f"backbone features: {done}/{total}") if done * 10 // total != (
        done - 32) * 10 // total or done == total else None


def backbone_cv_report(
    corpus, folds: int, settings: BackboneSettings, cache_dir: Path, only: Sequence[int] | None = None,
    log: Log | None = None,
) -> dict:
    """`mirage train-encoder --cv K --backbone`: the cross-validation above over the corpus' training split."""
    from ..splits import split_records
    from .lite import load_config
    from .training import extract_features

    records, heldout = split_records(corpus.records)
    config = load_config()
    every = sorted([*records, *heldout], key=lambda r: r.id)  # the cache `train-encoder` itself keeps
    features = extract_features(every, config, cache_dir, progress=_every_tenth(log))
    row = {record_id: i for i, record_id in enumerate(features.ids)}
    features = features.subset([row[r.id] for r in records])
    report = cross_validate_backbone(records, features, config, folds, settings, cache_dir, only, log)
    return {"encoder": "lite", "corpus": corpus.name, "train_pairs": len(records), "backbone_cv": report}
