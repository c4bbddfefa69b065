"""What every generator shares: the request, the marked synthetic image and the `ImageGenerator` interface.

Every image leaves a generator visibly marked "SYNTHETIC" and with PNG metadata saying it is AI-generated,
by which model, from which condition and seed (`SyntheticImage.png_bytes`). A generator is shared by every
session of the app (it is cached), so `generate` never changes its state: each request builds its own
scheduler and its own light pipeline object around the shared, read-only model parts.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from ..errors import QueryError

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
    size: int | None = None  # sd only; a lite model draws at its config's resolution
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


class ImageGenerator:
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


def seeded_generators(seed: int, n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]




def ddim_from(scheduler):
    """The undistilled sampler's scheduler, configured like `scheduler`."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler.config)
