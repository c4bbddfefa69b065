"""Synthetic images of a concept: embedding-conditioned latent diffusion with LCM few-step sampling.

`create_generator(profile)` returns a `Generator` whose `generate(request)` turns a condition — a text, an
image or a dual-search vector for the `lite` profile; a text prompt for the `sd` profile — into synthetic
images. Sampling is latent consistency (LCM-LoRA, 4–8 steps) by default, or the undistilled model with
DDIM (`sampler="ddim"`, 25–50 steps) for comparison. Every image leaves this module visibly marked
"SYNTHETIC" and with PNG metadata saying it is AI-generated, by which model, from which condition and seed
(`SyntheticImage.png_bytes`). The diffusers parts are in `pipelines.py`, training in `training.py`.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from ..errors import QueryError
from ..search import check_text
from .pipelines import (
    LITE_WEIGHTS,
    LORA_WEIGHT_NAME,
    SD_DEFAULT,
    SD_LCM_LORA,
    condition_tokens,
    lite_pipeline,
    new_unet,
)

SAMPLERS = ("lcm", "ddim")
MAX_STEPS = 100
MAX_IMAGES = 8
MAX_SIDE = 768
DISPLAY_SIDE = 256
MARK = "SYNTHETIC"


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. `condition` is a text, a PIL image or an embedding (lite), or a text (sd)."""

    condition: str | Image.Image | np.ndarray
    n: int = 2
    steps: int = 4
    guidance: float = 1.0
    seed: int = 0
    sampler: str = "lcm"
    size: int | None = None  # sd only; the lite model is 64 px
    label: str = ""  # how the condition is described in metadata (e.g. the dual-search expression)

    def check(self) -> None:
        if self.sampler not in SAMPLERS:
            raise QueryError(f"sampler must be one of {', '.join(SAMPLERS)}, not '{self.sampler}'")
        if not 1 <= self.steps <= MAX_STEPS:
            raise QueryError(f"steps must be between 1 and {MAX_STEPS} (LCM needs 4–8, DDIM 25–50), not {self.steps}")
        if not 1 <= self.n <= MAX_IMAGES:
            raise QueryError(f"generate between 1 and {MAX_IMAGES} images at a time, not {self.n}")
        if not 0.0 <= self.guidance <= 20.0:
            raise QueryError(f"guidance must be between 0 and 20, not {self.guidance}")
        if self.size is not None and (self.size % 8 or not 64 <= self.size <= MAX_SIDE):
            raise QueryError(f"size must be a multiple of 8 between 64 and {MAX_SIDE} px, not {self.size}")
        if not 0 <= self.seed < 2**32:
            raise QueryError("the seed must be between 0 and 2³²−1")


@dataclass
class SyntheticImage:
    image: Image.Image  # already marked: what is shown and saved
    metadata: dict[str, str] = field(default_factory=dict)
    native: Image.Image | None = None  # the model's own output before marking, for measurement; never shown

    def png_bytes(self) -> bytes:
        info = PngInfo()
        for key, value in self.metadata.items():
            info.add_text(key, value)
        buffer = io.BytesIO()
        self.image.save(buffer, "PNG", pnginfo=info)
        return buffer.getvalue()


def mark_synthetic(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """Upscale to `side` px and stamp a visible 'SYNTHETIC' band across the bottom."""
    marked = image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(marked)
    band = max(14, side // 9)
    draw.rectangle([0, side - band, side, side], fill=(200, 30, 30))
    text, size = f"{MARK} · AI-generated", max(8, band - 4)
    font = ImageFont.load_default(size=size)
    while size > 8 and draw.textlength(text, font=font) > 0.94 * side:
        size -= 1
        font = ImageFont.load_default(size=size)
    draw.text((side // 2, side - band // 2), text, fill="white", font=font, anchor="mm")
    return marked


class Generator:
    """A diffusers pipeline with its LCM-LoRA, and how to turn a condition into its inputs."""

    profile: str
    model_name: str

    def generate(self, request: GenerationRequest) -> list[SyntheticImage]:
        request.check()
        started = time.perf_counter()
        images = self._sample(request)
        seconds = time.perf_counter() - started
        described = request.label or _describe(request.condition)
        return [SyntheticImage(mark_synthetic(image), {
            "AI-generated": "true",
            "Software": "MIRAGE (educational use only, not for diagnosis)",
            "Model": self.model_name,
            "Condition": described,
            "Seed": str(request.seed + i),
            "Sampler": f"{request.sampler}, {request.steps} steps, guidance {request.guidance:g}",
            "Native size": f"{image.width}x{image.height}",
            "Seconds": f"{seconds / len(images):.2f}",
        }, native=image) for i, image in enumerate(images)]

    def _sample(self, request: GenerationRequest) -> list[Image.Image]:
        raise NotImplementedError


def _describe(condition) -> str:
    if isinstance(condition, str):
        return f"text: {condition}"
    if isinstance(condition, Image.Image):
        return "an uploaded image"
    return "an embedding vector"


def _generators(seed: int, n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


class LiteGenerator(Generator):
    """The project's grayscale 64 px model, conditioned on the MIRAGE encoder's joint embedding."""

    profile = "lite"

    def __init__(self, encoder, folder: str | Path = LITE_WEIGHTS, device: str = "cpu"):
        from ..errors import MirageError

        self.pipeline, self.config = lite_pipeline(folder)
        report = Path(folder) / "training.json"
        trained_with = json.loads(report.read_text()).get("encoder_fingerprint") if report.exists() else None
        if trained_with and trained_with != encoder.fingerprint:
            raise MirageError(f"the lite generator was trained on embeddings of encoder {trained_with}, not of "
                              f"'{encoder.name}' ({encoder.fingerprint})")
        if encoder.dim != self.config["condition_dim"]:
            raise MirageError(f"the lite generator takes {self.config['condition_dim']}-d embeddings; encoder "
                              f"'{encoder.name}' gives {encoder.dim}")
        self.folder = Path(folder)
        self.encoder = encoder
        self.has_lcm = (self.folder / LORA_WEIGHT_NAME).exists()
        self.unets = {"ddim": self.pipeline.unet}
        if self.has_lcm:
            # the LCM-LoRA is fused into its own copy of the UNet: ~40 % faster than an unfused adapter, and
            # the undistilled UNet stays as it was for DDIM (the copy is 13 MB)
            self.unets["ddim"] = new_unet(self.config, self.folder)
            with _quiet_diffusers():  # its warning about the LoRA lacking text-encoder keys: this pipeline has none
                self.pipeline.load_lora_weights(str(self.folder), weight_name=LORA_WEIGHT_NAME, adapter_name="lcm")
            self.pipeline.fuse_lora()
            self.pipeline.unload_lora_weights()
            self.unets["lcm"] = self.pipeline.unet
        for unet in self.unets.values():
            unet.to(device)
        self.pipeline.to(device)
        self.device = device
        self.model_name = f"MIRAGE lite generator ({self.folder.name})"
        self.schedulers = {"lcm": self.pipeline.scheduler,
                           "ddim": _ddim_from(self.pipeline.scheduler)}

    def condition_vector(self, condition) -> np.ndarray:
        if isinstance(condition, str):
            return self.encoder.encode_text([check_text(condition, "prompt")])[0]
        if isinstance(condition, Image.Image):
            return self.encoder.encode_image([condition])[0]
        vector = np.asarray(condition, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector)) if vector.size else 0.0
        if not np.isfinite(norm) or norm < 1e-6:
            raise QueryError("the condition vector is zero: there is nothing to generate from")
        if vector.shape[0] != self.config["condition_dim"]:
            expected = self.config["condition_dim"]
            raise QueryError(f"the condition vector has {vector.shape[0]} dimensions, not {expected}")
        return vector / norm

    @torch.inference_mode()
    def _sample(self, request: GenerationRequest) -> list[Image.Image]:
        if request.size not in (None, self.config["resolution"]):
            raise QueryError(f"the lite model draws {self.config['resolution']} px images only")
        if request.sampler == "lcm" and not self.has_lcm:
            raise QueryError("this lite model has no LCM-LoRA yet: use sampler 'ddim' or train the 'lcm' stage")
        tokens = condition_tokens(self.condition_vector(request.condition)[None], self.config)
        pipeline = self.pipeline
        pipeline.scheduler = self.schedulers[request.sampler]
        pipeline.unet = self.unets[request.sampler]
        side = self.config["resolution"]
        images = []
        for generator in _generators(request.seed, request.n):  # one seed per image: reproducible one by one
            images += pipeline(
                prompt_embeds=tokens, negative_prompt_embeds=torch.zeros_like(tokens), height=side, width=side,
                num_inference_steps=request.steps, guidance_scale=request.guidance, generator=generator,
                output_type="pil",
            ).images
        return images


@contextlib.contextmanager
def _quiet_diffusers():
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def _ddim_from(scheduler):
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler.config)


class SDGenerator(Generator):
    """Stable Diffusion 1.x with an LCM-LoRA (text prompts; downloads the weights on first use)."""

    profile = "sd"

    def __init__(self, repo: str = SD_DEFAULT, lora: str = SD_LCM_LORA, device: str = "cpu", pipeline=None):
        from .pipelines import sd_pipeline

        self.pipeline = pipeline if pipeline is not None else sd_pipeline(repo, lora, device)
        self.model_name = f"{repo} + {lora}"
        self.schedulers = {"lcm": self.pipeline.scheduler, "ddim": _ddim_from(self.pipeline.scheduler)}

    @torch.inference_mode()
    def _sample(self, request: GenerationRequest) -> list[Image.Image]:
        if not isinstance(request.condition, str):
            raise QueryError("the sd profile is prompted by text only; image and vector conditions need 'lite'")
        prompt = check_text(request.condition, "prompt")
        self.pipeline.scheduler = self.schedulers[request.sampler]
        if request.sampler == "lcm":
            self.pipeline.enable_lora()
        else:
            self.pipeline.disable_lora()
        side = request.size or 512
        images = []
        for generator in _generators(request.seed, request.n):
            images += self.pipeline(prompt, height=side, width=side, num_inference_steps=request.steps,
                                    guidance_scale=request.guidance, generator=generator, output_type="pil").images
        return images


def create_generator(profile: str = "lite", encoder=None, device: str = "cpu") -> Generator:
    """`lite` (needs the encoder), `lite:FOLDER`, `sd` or `sd:<repo id>`."""
    from ..errors import MirageError

    kind, _, argument = profile.partition(":")
    if kind == "lite":
        if encoder is None:
            raise MirageError("the lite generator needs the MIRAGE encoder")
        return LiteGenerator(encoder, argument or LITE_WEIGHTS, device)
    if kind == "sd":
        return SDGenerator(argument or SD_DEFAULT, device=device)
    raise MirageError(f"unknown generator '{profile}': use 'lite', 'lite:FOLDER', 'sd' or 'sd:<repo id>'")
