"""`mirage train-encoder`: contrastive training of the lite heads on ROCO-format data.

The backbones are frozen, so training runs in two stages:

1. `extract_features` runs the backbones once over the corpus — several augmented views per image
   (letterboxed, flipped, random crops) and several views per text (the caption, its first sentence,
   its keyword list) — and caches the result as a `.npz` keyed by corpus and config.
2. `fit_heads` trains each ensemble member's pair of MLP heads on the cached features with a symmetric
   InfoNCE loss. Its targets can be softened (`TrainSettings.own_weight` < 1): an image then gets a share
   of credit for captions whose ROCO keywords and UMLS CUIs overlap with its own, and for sibling figures
   of its article. On the ROCO demo this hurt recall (see the model card), so the default is hard targets.

Held-out numbers are measured on the deterministic split of `mirage_core.splits`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..corpus import Record
from ..errors import ImageError, MirageError
from ..files import atomic_path, write_json, write_text
from ..images import open_image
from .base import hubness
from .lite import TRAINING_IDS, ImageBackbone, LiteHeads, TextBackbone, bridge
from .metrics import recall_metrics

IMAGE_VIEWS = 4
TEXT_VIEWS = 3
Progress = Callable[[int, int], None]


@dataclass
class FeatureCache:
    """Backbone features: images [N, IMAGE_VIEWS, Fi], texts [N, TEXT_VIEWS, Ft], in record order."""

    ids: list[str]
    image: np.ndarray
    text: np.ndarray

    def subset(self, rows: Sequence[int]) -> FeatureCache:
        rows = list(rows)
        return FeatureCache([self.ids[i] for i in rows], self.image[rows], self.text[rows])


def image_views(image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """The plain image, its mirror, and two random crops covering 55–100 % of it."""
    views = [image, ImageOps.mirror(image)]
    for _ in range(IMAGE_VIEWS - 2):
        scale = math.sqrt(rng.uniform(0.55, 1.0))
        width, height = max(1, int(image.width * scale)), max(1, int(image.height * scale))
        left = int(rng.integers(0, image.width - width + 1))
        top = int(rng.integers(0, image.height - height + 1))
        views.append(image.crop((left, top, left + width, top + height)))
    return views


def text_views(record: Record) -> list[str]:
    """The caption, its first sentence, and its keywords as a phrase (caption augmentation)."""
    first = re.split(r"(?<=[.;])\s+", record.caption, maxsplit=1)[0]
    keywords = " ".join(record.keywords) or first
    return [record.caption, first, keywords]


BACKBONE_KEYS = ("image_size", "image_taps", "image_pools", "text_layers", "text_max_tokens")
FEATURE_VERSION = 2  # bump when preprocessing changes, so cached features are recomputed


def _cache_key(records: Sequence[Record], config: dict) -> str:
    """Features depend on the backbone settings and the records, not on the heads."""
    backbone = {key: config[key] for key in BACKBONE_KEYS} | {"version": FEATURE_VERSION}
    digest = hashlib.sha256(json.dumps(backbone, sort_keys=True).encode())
    for record in records:
        digest.update(f"{record.id}\t{record.image_path}\t{record.caption}\n".encode())
    return digest.hexdigest()[:16]


@torch.inference_mode()
def extract_features(
    records: Sequence[Record], config: dict, cache_dir: Path | None = None, progress: Progress | None = None,
    batch_size: int = 32, seed: int = 0,
) -> FeatureCache:
    cache_file = Path(cache_dir) / f"features-{_cache_key(records, config)}.npz" if cache_dir else None
    if cache_file and cache_file.exists():
        data = np.load(cache_file)
        return FeatureCache(list(data["ids"]), data["image"], data["text"])
    image_backbone = ImageBackbone(config).to(memory_format=torch.channels_last)
    text_backbone = TextBackbone(config)
    rng = np.random.default_rng(seed)
    image_rows, text_rows = [], []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        pixels = []
        for record in batch:
            try:
                image = open_image(record.image_path)
            except ImageError:
                image = Image.new("RGB", (image_backbone.size, image_backbone.size))
            pixels += [image_backbone.preprocess(view) for view in image_views(image, rng)]
        stacked = torch.stack(pixels).contiguous(memory_format=torch.channels_last)
        image_rows.append(image_backbone(stacked).reshape(len(batch), IMAGE_VIEWS, -1).half().numpy())
        texts = [text for record in batch for text in text_views(record)]
        text_rows.append(text_backbone(texts).reshape(len(batch), TEXT_VIEWS, -1).half().numpy())
        if progress:
            progress(min(start + batch_size, len(records)), len(records))
    cache = FeatureCache([r.id for r in records], np.concatenate(image_rows), np.concatenate(text_rows))
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file) as temporary:
            np.savez(temporary, ids=np.array(cache.ids), image=cache.image, text=cache.text)
    return cache


def concept_matrix(records: Sequence[Record]) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary [N, V] matrix of each record's CUIs and keywords, and [N] article numbers (-1: none)."""
    vocabulary: dict[str, int] = {}
    rows, columns = [], []
    for i, record in enumerate(records):
        for concept in set(record.cuis) | {f"kw:{k}" for k in record.keywords}:
            rows.append(i)
            columns.append(vocabulary.setdefault(concept, len(vocabulary)))
    matrix = torch.zeros(len(records), max(1, len(vocabulary)))
    matrix[rows, columns] = 1.0
    articles: dict[str, int] = {}
    article_ids = torch.tensor([articles.setdefault(r.pmc_id, len(articles)) if r.pmc_id else -1 for r in records])
    return matrix, article_ids


def soft_targets_from(concepts: torch.Tensor, articles: torch.Tensor, own_weight: float) -> torch.Tensor:
    """Row-stochastic targets: `own_weight` on the true pair, the rest spread by the squared Jaccard
    overlap of concepts (sibling figures of one article count at least 0.5). Rows that share nothing
    with any other keep all their weight on the true pair."""
    n = len(concepts)
    shared = concepts @ concepts.T
    sizes = concepts.sum(1)
    overlap = shared / (sizes[:, None] + sizes[None, :] - shared).clamp(min=1)
    same_article = (articles[:, None] == articles[None, :]) & (articles[:, None] >= 0)
    overlap = torch.where(same_article, overlap.clamp(min=0.5), overlap)
    overlap.fill_diagonal_(0)
    overlap = overlap**2
    totals = overlap.sum(1, keepdim=True)
    has_spread = (totals > 0).float()
    spread = overlap / totals.clamp(min=1e-9)
    return torch.eye(n) * (own_weight * has_spread + (1 - has_spread)) + spread * (1 - own_weight) * has_spread


def soft_targets(records: Sequence[Record], own_weight: float) -> torch.Tensor:
    return soft_targets_from(*concept_matrix(records), own_weight)


@dataclass
class TrainSettings:
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    own_weight: float = 1.0
    seed: int = 0


def fit_heads(
    train: FeatureCache, train_records: Sequence[Record], config: dict, settings: TrainSettings,
    log: Callable[[str], None] | None = None, evaluate: Callable[[LiteHeads], dict] | None = None,
) -> LiteHeads:
    """Train each ensemble member in turn, with its own seed and batch order."""
    torch.manual_seed(settings.seed)
    image = torch.from_numpy(train.image.astype(np.float32))
    text = torch.from_numpy(train.text.astype(np.float32))
    heads = LiteHeads(image.shape[-1], text.shape[-1], config)
    concepts, articles = concept_matrix(train_records)
    for member in range(config["members"]):
        _fit_member(heads, member, image, text, concepts, articles, settings)
        if log:
            log(f"member {member + 1}/{config['members']} trained" + (
                " " + json.dumps(evaluate(heads)) if evaluate and member == config["members"] - 1 else ""))
    return heads.eval()


def _fit_member(
    heads: LiteHeads, member: int, image: torch.Tensor, text: torch.Tensor, concepts: torch.Tensor,
    articles: torch.Tensor, settings: TrainSettings,
) -> None:
    generator = np.random.default_rng(settings.seed * 1000 + member)
    torch.manual_seed(settings.seed * 1000 + member)
    image_head, text_head = heads.member(member)
    for module in (image_head, text_head):  # members start from different random weights
        for layer in module:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    parameters = [*image_head.parameters(), *text_head.parameters()]
    optimiser = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    optimiser.add_param_group({"params": [heads.logit_scale], "weight_decay": 0.0})
    n = len(image)
    batch_size = min(settings.batch_size, n)
    steps_per_epoch = max(1, n // batch_size)
    total_steps = max(3, settings.epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(  # warm-up of at least two steps, even on tiny data
        optimiser, [settings.lr, settings.lr], total_steps=total_steps, pct_start=max(0.1, 2 / total_steps)
    )
    heads.train()
    for _ in range(total_steps // steps_per_epoch):
        order = generator.permutation(n)
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            rows = torch.from_numpy(index)
            targets = soft_targets_from(concepts[rows], articles[rows], settings.own_weight)
            image_view = torch.from_numpy(generator.integers(0, IMAGE_VIEWS, len(index)))
            text_view = torch.from_numpy(generator.choice(TEXT_VIEWS, len(index), p=[0.6, 0.2, 0.2]))
            image_embedding = F.normalize(image_head(image[rows, image_view]), dim=-1)
            text_embedding = F.normalize(text_head(text[rows, text_view]), dim=-1)
            scale = heads.logit_scale[member].exp().clamp(max=100)
            logits = scale * image_embedding @ text_embedding.T
            loss = (
                torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()
                + torch.sum(-targets.T * F.log_softmax(logits.T, dim=1), dim=1).mean()
            ) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    heads.eval()


def embed_cached(heads: LiteHeads, cache: FeatureCache) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the plain image view and the full caption view, as the encoder computes them."""
    with torch.inference_mode():
        image = heads.embed_image(torch.from_numpy(cache.image[:, 0].astype(np.float32)))
        text = heads.embed_text(torch.from_numpy(cache.text[:, 0].astype(np.float32)))
    return image.numpy(), text.numpy()


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _save_safetensors(tensors: dict, path: Path, half: bool = False) -> None:
    """Atomic write; `half` stores floats as float16 (the heads load back into float32 parameters)."""
    from safetensors.torch import save_file

    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().contiguous().cpu()
               for k, v in tensors.items()}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary))
        temporary.chmod(0o644)


def train_encoder(
    corpus, out_dir: Path, encoder: str = "lite", holdout: bool = True, epochs: int | None = None,
    cache_dir: Path | None = None, device: str = "cpu", log: Callable[[str], None] | None = None,
    cv: int = 0,
) -> dict:
    """Train the named encoder on `corpus` and write its weights to `out_dir`; returns a report."""
    from ..splits import split_records

    train_records, heldout_records = split_records(corpus.records) if holdout else (list(corpus.records), [])
    if len(train_records) < 8:
        raise MirageError(f"{len(train_records)} training pairs are too few to train on (need at least 8)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if encoder.startswith("open_clip:"):
        return fine_tune_open_clip(
            encoder.partition(":")[2], train_records, heldout_records, out_dir, epochs or 3, device, log
        )
    if not encoder.startswith("lite"):
        raise MirageError(f"train-encoder trains 'lite' or 'open_clip:<spec>', not '{encoder}'")
    if cv and not 2 <= cv <= 10:
        raise MirageError(f"--cv takes 2 to 10 folds, not {cv}")
    return train_lite(train_records, heldout_records, out_dir, epochs, cache_dir, log, corpus.name, cv)


def train_lite(
    train_records, heldout_records, out_dir: Path, epochs: int | None, cache_dir: Path | None,
    log: Callable[[str], None] | None, corpus_name: str = "", cv: int = 0,
) -> dict:
    from .lite import load_config

    config = load_config()
    settings = TrainSettings(epochs=epochs or TrainSettings.epochs)
    started = time.time()
    records = sorted([*train_records, *heldout_records], key=lambda r: r.id)  # one cache for either split
    features = extract_features(records, config, cache_dir)
    row = {record_id: i for i, record_id in enumerate(features.ids)}
    train, heldout = (features.subset([row[r.id] for r in part]) for part in (train_records, heldout_records))
    n_train = len(train_records)

    def evaluate(heads: LiteHeads) -> dict:
        if not heldout.ids:
            return {}
        metrics = _heldout_metrics(heads.eval(), train, heldout, config)
        return {"t2i_R@10": metrics["t2i"]["R@10"], "i2t_R@10": metrics["i2t"]["R@10"]}

    validation = cross_validate(train, train_records, config, settings, cv, log) if cv else None
    heads = fit_heads(train, train_records, config, settings, log=log, evaluate=evaluate if log else None)
    with torch.no_grad():  # the weights ship as float16: measure exactly what ships
        for parameter in heads.parameters():
            parameter.copy_(parameter.half().float())
    weights = out_dir / "heads.safetensors"
    _save_safetensors(heads.state_dict(), weights, half=True)
    bank_images, bank_captions = embed_cached(heads, train)
    _save_safetensors(
        {"images": torch.from_numpy(bank_images).half(), "captions": torch.from_numpy(bank_captions).half()},
        out_dir / "bank.safetensors",
    )
    write_json(out_dir / "config.json", config)
    write_text(out_dir / TRAINING_IDS, "".join(sorted(f"{record.id}\n" for record in train_records)))
    report = {
        "encoder": "lite",
        "weights": str(weights),
        "corpus": corpus_name,
        "train_pairs": n_train,
        "heldout_pairs": len(heldout.ids),
        "settings": dataclasses.asdict(settings),
        "seconds": round(time.time() - started, 1),
        "created": timestamp(),
    }
    if validation:
        report["cv"] = validation
    if heldout.ids:
        report["heldout"] = _heldout_metrics(heads, train, heldout, config)
    write_json(out_dir / "training.json", report)
    return report


def cross_validate(train: FeatureCache, train_records: Sequence[Record], config: dict, settings: TrainSettings,
                   folds: int, log: Callable[[str], None] | None = None) -> dict:
    """k-fold cross-validation by article inside the training records: each fold is scored by heads trained on
    the others, exactly as the held-out split is scored. Settings are chosen on these figures, never on the
    held-out split. Returns R@10 in both directions per fold, with their mean and standard deviation."""
    from ..splits import cv_folds

    per_fold = {"t2i": [], "i2t": []}
    for fold, (inside, outside) in enumerate(cv_folds(train_records, folds)):
        heads = fit_heads(train.subset(inside), [train_records[i] for i in inside], config, settings)
        metrics = _heldout_metrics(heads, train.subset(inside), train.subset(outside), config)
        for direction in per_fold:
            per_fold[direction].append(metrics[direction]["R@10"])
        if log:
            log(f"fold {fold + 1}/{folds} ({len(outside)} pairs): R@10 t2i {metrics['t2i']['R@10']:.1f} "
                f"i2t {metrics['i2t']['R@10']:.1f}")
    return {"folds": folds, "pairs": len(train_records), **{
        f"{direction}_R@10": {"mean": round(float(np.mean(values)), 2), "std": round(float(np.std(values)), 2),
                              "per_fold": values} for direction, values in per_fold.items()}}


def _heldout_metrics(
    heads: LiteHeads, train: FeatureCache, heldout: FeatureCache, config: dict | None = None
) -> dict:
    """Held-out recall of cached features, with the training set as the bank (see `score_embeddings`)."""
    return score_embeddings(*embed_cached(heads, train), *embed_cached(heads, heldout), config or {})


def score_embeddings(bank_images, bank_captions, images, captions, config: dict) -> dict:
    """Recall as the shipped encoder and index compute it: the cross-modal bridge through the bank (when the config
    has one) and the hubness corrections against it."""
    if "bridge" in config:
        bank = {"images": bank_images, "captions": bank_captions}
        images = bridge(images, bank, "image", **config["bridge"])
        captions = bridge(captions, bank, "text", **config["bridge"])
    return recall_metrics(images, captions, hubness(images, bank_captions), hubness(captions, bank_images))


def fine_tune_open_clip(
    spec: str, train_records, heldout_records, out_dir: Path, epochs: int, device: str,
    log: Callable[[str], None] | None, trainable_blocks: int = 1, batch_size: int = 32, lr: float = 1e-5,
) -> dict:
    """Fine-tune the projections and last transformer blocks of an open_clip model (InfoNCE), then save
    it as a `local-dir:` checkpoint that `open_clip:local-dir:OUT` loads."""
    from .openclip import OpenClipEncoder

    encoder = OpenClipEncoder(spec, device=device)
    model = encoder.model
    model.requires_grad_(False)
    for parameter in _last_layers(model, trainable_blocks):
        parameter.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.1)
    pairs = _readable_pairs(encoder, train_records)
    generator = np.random.default_rng(0)
    started = time.time()
    for epoch in range(epochs):
        model.train()
        order = generator.permutation(len(pairs))
        for start in range(0, len(order) - 1, batch_size):
            batch = [pairs[i] for i in order[start : start + batch_size]]
            if len(batch) < 2:
                continue
            pixels = torch.stack([p for p, _ in batch]).to(encoder.device)
            tokens = encoder.tokenizer([c for _, c in batch]).to(encoder.device)
            image_features = F.normalize(model.encode_image(pixels), dim=-1)
            text_features = F.normalize(model.encode_text(tokens), dim=-1)
            logits = model.logit_scale.exp() * image_features @ text_features.T
            labels = torch.arange(len(batch), device=logits.device)
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if log:
            log(f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f}")
    model.eval()
    import open_clip

    name = spec.removeprefix("local-dir:")
    model_config = (
        json.loads((Path(name) / "open_clip_config.json").read_text())["model_cfg"]
        if spec.startswith("local-dir:") else open_clip.get_model_config(spec.split("/")[0])
    )
    if model_config is None:
        raise MirageError(f"cannot save a fine-tuned '{spec}': its architecture config is unknown to open_clip")
    _save_safetensors(model.state_dict(), out_dir / "open_clip_model.safetensors")
    write_json(out_dir / "open_clip_config.json", {"model_cfg": model_config, "preprocess_cfg": {}})
    report = {
        "encoder": f"open_clip:local-dir:{out_dir}", "weights": str(out_dir / "open_clip_model.safetensors"),
        "base": spec, "train_pairs": len(pairs), "epochs": epochs, "seconds": round(time.time() - started, 1),
        "created": timestamp(),
    }
    heldout_pairs = _readable_pairs(encoder, heldout_records)
    if heldout_pairs:
        tuned = OpenClipEncoder(f"local-dir:{out_dir}", device=device)
        report["heldout"] = recall_metrics(
            tuned.encode_pixels(torch.stack([p for p, _ in heldout_pairs])),
            tuned.encode_text([c for _, c in heldout_pairs]),
        )
    write_json(out_dir / "training.json", report)
    return report


def _readable_pairs(encoder, records) -> list[tuple[torch.Tensor, str]]:
    """(pixels, caption) for every record whose image decodes; unreadable images are left out."""
    pairs = []
    for record in records:
        try:
            pairs.append((encoder.preprocess(open_image(record.image_path)), record.caption))
        except ImageError:
            continue
    return pairs


def _last_layers(model: torch.nn.Module, blocks: int) -> list[torch.nn.Parameter]:
    """Projections, final norms and the last `blocks` residual blocks of both towers."""
    chosen: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if any(key in name for key in ("proj", "ln_final", "ln_post", "logit_scale", "text_projection")):
            chosen.append(parameter)
    for tower in (getattr(model, "transformer", None), getattr(getattr(model, "visual", None), "transformer", None)):
        if tower is not None and hasattr(tower, "resblocks"):
            for block in list(tower.resblocks)[-blocks:]:
                chosen += list(block.parameters())
    return list({id(p): p for p in chosen}.values())
