"""What every stage of the generator's training shares: the cached training data (pixels and embeddings), the
VAE's latents of it, the conditions the UNet learns from, atomic stage checkpoints and mixed precision."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ...corpus import Record
from ...errors import ImageError
from ...files import atomic_path
from ...images import open_image
from ..pipelines import condition_tokens, new_vae

Log = Callable[[str], None]
Progress = Callable[[dict], None]  # told the report fields of weights just published to the output folder
CHECKPOINT_EVERY = 250


def square_grayscale(path: str, resolution: int) -> np.ndarray:
    """The image's centre square, grayscale, `resolution` px a side, as uint8."""
    image = open_image(path).convert("L")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((resolution, resolution), resample=3)
    return np.asarray(image, dtype=np.uint8)


def prepare_data(records: Sequence[Record], encoder, resolution: int, cache_dir: Path, log: Log) -> dict:
    """Pixels plus the encoder's image and caption embeddings of each readable record (cached)."""
    cache = cache_dir / f"data-{resolution}-{encoder.fingerprint}.npz"
    if cache.exists():
        data = dict(np.load(cache))
        cached = set(data["ids"])
        if len(cached) and list(data["ids"]) == [r.id for r in records if r.id in cached]:
            return data
    pixels, kept = [], []
    for record in records:
        try:
            pixels.append(square_grayscale(record.image_path, resolution))
            kept.append(record)
        except ImageError:
            continue
    log(f"embedding {len(kept)} images and captions with encoder {encoder.name}")
    image_rows = [encoder.encode_image([open_image(r.image_path) for r in kept[i : i + 32]])
                  for i in range(0, len(kept), 32)]
    data = {
        "ids": np.array([r.id for r in kept]),
        "pixels": np.stack(pixels),
        "image_embeddings": np.concatenate(image_rows),
        "text_embeddings": encoder.encode_text([r.caption for r in kept]),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as temporary:
        np.savez(temporary, **data)
    return data


def unit_range(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float().div(127.5).sub(1.0).unsqueeze(1)


class Checkpoint:
    """Atomic torch checkpoints of one stage in the work folder."""

    def __init__(self, work_dir: Path, stage: str):
        self.path = work_dir / f"{stage}.pt"

    def load(self) -> dict | None:
        return torch.load(self.path, weights_only=False) if self.path.exists() else None

    def resume(self, model: torch.nn.Module, optimiser: torch.optim.Optimizer, step: int) -> tuple[dict | None, int]:
        """Load the work checkpoint, if any, into `model` and `optimiser`: (its state, the step to go on from —
        `step` without one)."""
        state = self.load()
        if state:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            step = state["step"]
        return state, step

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as temporary:
            torch.save(state, temporary)


def autocast_for(device: torch.device):
    """bfloat16 autocast where the hardware computes in it: ~25 % faster steps on AVX-512 CPUs, the usual mixed
    precision on GPUs. A CPU without AVX-512 emulates bfloat16, which made a UNet step 15× slower (8.1 s
    against 0.56 s in float32 on 2 AVX2 cores), so there training stays in float32."""
    if device.type == "cpu" and "AVX512" not in torch.backends.cpu.get_cpu_capability():
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class LatentTable:
    """The trained VAE's posterior (mean, std; times its scaling factor) of every image and of its mirror."""

    def __init__(self, config: dict, out_dir: Path, data: dict, device: torch.device):
        vae = new_vae(config, out_dir).to(device).eval()
        pixels = unit_range(data["pixels"])
        means, stds = [], []
        with torch.no_grad():
            for view in (pixels, pixels.flip(-1)):
                for i in range(0, len(view), 256):
                    posterior = vae.encode(view[i : i + 256].to(device)).latent_dist
                    means.append(posterior.mean.cpu())
                    stds.append(posterior.std.cpu())
        scaling = vae.config.scaling_factor
        self.means, self.stds = torch.cat(means) * scaling, torch.cat(stds) * scaling

    def __len__(self) -> int:
        return len(self.means)

    def sample(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(self.means[rows].shape, generator=generator)
        return self.means[rows] + self.stds[rows] * noise


def conditions(data: dict, rows: torch.Tensor, config: dict, generator: torch.Generator) -> torch.Tensor:
    """Per row: the caption's or the image's embedding, or nothing (classifier-free guidance dropout)."""
    settings = config["train"]
    count = len(data["ids"])
    source_rows = rows % count
    text = torch.from_numpy(data["text_embeddings"])[source_rows]
    image = torch.from_numpy(data["image_embeddings"])[source_rows]
    use_image = torch.rand(len(rows), generator=generator) < settings["image_condition_share"]
    vectors = torch.where(use_image[:, None], image, text)
    keep = torch.rand(len(rows), generator=generator) >= settings["condition_dropout"]
    return condition_tokens(vectors * keep[:, None], config)
