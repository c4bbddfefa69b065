"""Diffusers parts of the two generator profiles, built from configs as data.

Both profiles run the same `StableDiffusionPipeline` with an `LCMScheduler` and an LCM-LoRA:
- `sd`: a Stable Diffusion 1.x repo (default `Nihirc/Prompt2MedImage`, SD fine-tuned on ROCO) plus
  `latent-consistency/lcm-lora-sdv1-5`, prompted through its own CLIP text encoder;
- `lite`: the project's small grayscale latent-diffusion model (`configs/lite.json`), whose UNet
  cross-attends to the MIRAGE encoder's joint embedding instead of CLIP text tokens. Its "prompt
  embeddings" are two tokens, [scaled embedding, zeros] (the zero token lets each attention query gate
  how much of the condition to take); the unconditional input is all zeros.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..config import shipped
from ..errors import MirageError
from ..files import atomic_folder, write_json

CONFIG_FILE = Path(__file__).with_name("configs") / "lite.json"
LITE_WEIGHTS = shipped("lite-generator")
LORA_WEIGHT_NAME = "lcm_lora.safetensors"
SD_DEFAULT = "Nihirc/Prompt2MedImage"
SD_LCM_LORA = "latent-consistency/lcm-lora-sdv1-5"


def load_config(folder: str | Path | None = None) -> dict:
    path = Path(folder) / "config.json" if folder else CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MirageError(f"cannot read the generator config {path}: {error}") from error


def condition_tokens(vectors: torch.Tensor | np.ndarray, config: dict) -> torch.Tensor:
    """[B, D] joint embeddings → the UNet's [B, 2, D] cross-attention input."""
    vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32)).reshape(-1, config["condition_dim"])
    return torch.stack([vectors * config["condition_scale"], torch.zeros_like(vectors)], dim=1)


def new_vae(config: dict, folder: Path | None = None):
    from diffusers import AutoencoderKL

    if folder is not None:
        return AutoencoderKL.from_pretrained(Path(folder) / "vae", torch_dtype=torch.float32)
    return AutoencoderKL(**config["vae"])


def source_vae_folders(folder: Path) -> dict[int, Path]:
    """{side: folder} of the decoders a grown generator keeps from its source (`vae-64/` beside `vae/`)."""
    return {int(path.name[4:]): path for path in sorted(Path(folder).glob("vae-*"))
            if path.is_dir() and path.name[4:].isdigit()}


def source_vaes(folder: Path) -> dict:
    """{side: VAE} loaded from `source_vae_folders`."""
    from diffusers import AutoencoderKL

    return {side: AutoencoderKL.from_pretrained(path, torch_dtype=torch.float32)
            for side, path in source_vae_folders(folder).items()}


def new_unet(config: dict, folder: Path | None = None):
    from diffusers import UNet2DConditionModel

    if folder is not None:
        return UNet2DConditionModel.from_pretrained(Path(folder) / "unet", torch_dtype=torch.float32)
    return UNet2DConditionModel(**config["unet"])


def new_scheduler(config: dict, kind: str = "ddpm"):
    from diffusers import DDIMScheduler, DDPMScheduler, LCMScheduler

    settings = dict(config["scheduler"])
    if kind == "ddpm":  # the training schedule; the sampling-only settings do not apply to it
        return DDPMScheduler(**{k: v for k, v in settings.items() if k not in {"set_alpha_to_one", "steps_offset"}})
    return {"ddim": DDIMScheduler, "lcm": LCMScheduler}[kind](**settings)


def save_components(out_dir: Path, config: dict, **models) -> None:
    """Write models (float16 safetensors, diffusers layout) and the config, each folder swapped in atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        with atomic_folder(out_dir / name) as staging:
            model.half().save_pretrained(staging, safe_serialization=True)
            saved_config = json.loads((staging / "config.json").read_text())
            saved_config["_name_or_path"] = name  # not the path it was loaded from on the training machine
            (staging / "config.json").write_text(json.dumps(saved_config, indent=2, sort_keys=True) + "\n")
    write_json(out_dir / "config.json", config)


def lite_pipeline(folder: str | Path = LITE_WEIGHTS):
    """The lite StableDiffusionPipeline (no text encoder: it takes embeddings) and its config."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    if not (folder / "unet").exists() or not (folder / "vae").exists():
        raise MirageError(f"no lite generator weights in {folder}: train them with `mirage train-generator`")
    config = load_config(folder)
    pipeline = StableDiffusionPipeline(
        vae=new_vae(config, folder), text_encoder=None, tokenizer=None, unet=new_unet(config, folder),
        scheduler=new_scheduler(config, "lcm"), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline, config


def sd_pipeline(repo: str = SD_DEFAULT, lora: str = SD_LCM_LORA, device: str = "cpu"):
    """A Stable Diffusion 1.x pipeline with an LCM-LoRA and the LCM scheduler (downloads on first use)."""
    from diffusers import LCMScheduler, StableDiffusionPipeline

    try:
        pipeline = StableDiffusionPipeline.from_pretrained(repo, safety_checker=None, requires_safety_checker=False)
        pipeline.scheduler = LCMScheduler.from_config(pipeline.scheduler.config)
        pipeline.load_lora_weights(lora, adapter_name="lcm")
    except OSError as error:
        raise MirageError(f"cannot load Stable Diffusion '{repo}' with LCM-LoRA '{lora}': {error}") from error
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)
