"""`mirage train-generator`: the three training stages of the lite generator, each resumable.

1. `vae` — a small AutoencoderKL (grayscale 64 px → 8×16×16 latents), L1 + a tiny KL term + a perceptual
   term (LPIPS-style: distances between channel-normalised activations of the frozen ImageNet
   EfficientNet-Lite0, so textures such as ultrasound speckle or CT noise survive the autoencoder).
2. `unet` — a UNet2DConditionModel denoising those latents, cross-attending to the encoder's joint
   embedding of either the caption or the image (so text, images and dual-search vectors all steer it),
   with condition dropout for classifier-free guidance, min-SNR loss weighting and an EMA of the weights.
3. `lcm` — latent consistency distillation of the EMA UNet into a LoRA (peft), following Luo et al.'s
   LCM-LoRA recipe: a DDIM teacher step with guidance, a Huber consistency loss, boundary scalings as in
   diffusers' `LCMScheduler`. The adapter is saved with peft's key names (a diffusers LoRA file) and loaded with
   `load_lora_weights`, exactly like `latent-consistency/lcm-lora-sdv1-5` for the SD profile.

Every stage checkpoints (weights, optimiser, step) atomically into a work folder every few hundred steps,
so training can be stopped and resumed over several stretches of time; `--steps` is the stage's total.
Without a work checkpoint the VAE and UNet stages continue from the weights in the output folder when there
are any (the committed checkpoint, with its step count from `training.json`; the optimiser starts afresh),
else from scratch; the LCM-LoRA is distilled afresh from the current UNet, and a UNet that trains further
drops the LoRA distilled from its earlier self; more VAE training under a trained UNet is refused (it would
move the UNet's latent space). Only the training split of `mirage_core.splits` is used.

`grow` (with `grow_from`, on its own) makes a generator at twice a trained one's resolution: a VAE one stage
deeper that keeps the source's latent space, beside the source's UNet and LCM-LoRA (`grow.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ...errors import MirageError
from ...files import write_json
from ..pipelines import load_config
from .common import Log, prepare_data, square_grayscale
from .lcm import distill_lcm, forget_distillation
from .unet import train_unet
from .vae import PerceptualDistance, refuse_to_strand_the_unet, train_vae

STAGES = ("vae", "unet", "lcm")
GROW = "grow"
__all__ = ["GROW", "STAGES", "PerceptualDistance", "prepare_data", "square_grayscale", "train_generator"]


def train_generator(corpus, encoder, out_dir: Path, work_dir: Path, stages: Sequence[str] = STAGES,
                    steps: dict[str, int] | None = None, device: str = "cpu", log: Log | None = None,
                    config: dict | None = None, unet_from: Path | None = None, grow_from: Path | None = None) -> dict:
    """Run the requested stages in order (or, with `grow_from`, grow that generator to twice its resolution);
    returns a report (also written to `training.json`)."""
    from ...splits import split_records

    log = log or (lambda message: None)
    if grow_from is not None:
        return _grow(corpus, Path(grow_from), Path(out_dir), Path(work_dir), (steps or {}).get(GROW) or 1000,
                     torch.device(device), log)
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise MirageError(f"unknown stage(s) {sorted(unknown)}: choose from {', '.join(STAGES)}")
    config = config or load_config(out_dir if (out_dir / "config.json").exists() else None)
    if encoder.dim != config["condition_dim"]:
        raise MirageError(f"the generator is conditioned on {config['condition_dim']}-d embeddings; encoder "
                          f"'{encoder.name}' gives {encoder.dim}")
    train_records, _ = split_records(corpus.records)
    if len(train_records) < 8:
        raise MirageError(f"{len(train_records)} training images are too few to train on (need at least 8)")
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch_device = torch.device(device)
    report_path = out_dir / "training.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    totals = {stage: (steps or {}).get(stage) or config["train"][f"{stage}_steps"] for stage in stages}
    if totals.get("vae", 0) > int(report.get("vae_steps") or 0):
        refuse_to_strand_the_unet(out_dir, work_dir)
    data = prepare_data(train_records, encoder, config["resolution"], work_dir, log)
    report.update({"corpus": corpus.name, "train_images": int(len(data["ids"])),
                   "encoder": encoder.name,
                   "encoder_fingerprint": getattr(encoder, "space_fingerprint", encoder.fingerprint)})
    def record(update: dict) -> None:
        # written with every checkpoint the UNet and LCM stages publish, so that stopping a run at any
        # point leaves weights and report agreeing on how far they were trained
        report.update(update)
        write_json(report_path, report)

    for stage in STAGES:
        if stage in stages:
            total = totals[stage]
            done = int(report.get(f"{stage}_steps") or 0)
            if stage == "vae":  # the VAE publishes its weights only once finished
                result = train_vae(data, config, out_dir, work_dir, total, torch_device, log, done=done)
            elif stage == "unet":
                if total > done:
                    forget_distillation(out_dir, work_dir, report, log)
                    record({})
                result = train_unet(data, config, out_dir, work_dir, total, torch_device, log, done=done,
                                    progress=record, unet_from=unet_from)
            else:
                result = distill_lcm(data, config, out_dir, work_dir, total, torch_device, log, done=done,
                                     progress=record)
            record({**result, f"{stage}_finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return report


def _grow(corpus, source_dir: Path, out_dir: Path, work_dir: Path, steps: int, device: torch.device, log: Log) -> dict:
    from ...splits import split_records
    from .grow import grow_generator, paired_pixels

    source = load_config(source_dir)
    train_records, _ = split_records(corpus.records)
    small, large = paired_pixels(train_records, source["resolution"], 2 * source["resolution"], work_dir, log)
    report_path = source_dir / "training.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    result = grow_generator(source_dir, small, large, out_dir, work_dir, steps, device, log)
    report.update({**{key: value for key, value in result.items() if value is not None},  # no step taken: kept
                   "grow_images": int(len(large["ids"])),
                   "grow_finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    write_json(out_dir / "training.json", report)
    return report
