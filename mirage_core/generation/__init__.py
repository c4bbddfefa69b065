"""Synthetic images of a concept: embedding-conditioned latent diffusion with LCM few-step sampling.

`create_generator(profile)` returns an `ImageGenerator` whose `generate(request)` turns a condition — a text,
an image or a dual-search vector for the `lite` profile; a text prompt for the `sd` profile — into marked
synthetic images. Sampling is latent consistency (LCM-LoRA, 4–8 steps) by default, or the undistilled model
with DDIM (`sampler="ddim"`, 25–50 steps) for comparison. The shared request and image types are in
`base.py`, one module per profile (`lite.py`, `sd.py`), the diffusers parts in `pipelines.py`, training in
`training/`.
"""

from __future__ import annotations

from ..errors import MirageError
from .base import GenerationRequest, ImageGenerator, SyntheticImage, mark_synthetic
from .lite import LiteGenerator
from .pipelines import LITE_WEIGHTS, SD_DEFAULT, load_config, source_vae_folders
from .sd import SDGenerator

__all__ = ["GenerationRequest", "ImageGenerator", "LiteGenerator", "SDGenerator", "SyntheticImage",
           "create_generator", "mark_synthetic", "sizes_of"]


def create_generator(profile: str = "lite", encoder=None, device: str = "cpu") -> ImageGenerator:
    """`lite` (needs the encoder), `lite:FOLDER`, `sd` or `sd:<repo id>`."""
    kind, _, argument = profile.partition(":")
    if kind == "lite":
        if encoder is None:
            raise MirageError("the lite generator needs the MIRAGE encoder")
        return LiteGenerator(encoder, argument or LITE_WEIGHTS, device)
    if kind == "sd":
        return SDGenerator(argument or SD_DEFAULT, device=device)
    raise MirageError(f"unknown generator '{profile}': use 'lite', 'lite:FOLDER', 'sd' or 'sd:<repo id>'")


def sizes_of(profile: str = "lite") -> list[int | None]:
    """The sides, in px, a profile's model draws at, read from its files without loading it ([None]: the model's
    own choice, for `sd`): a grown lite model draws its latents at its own size and at its source's."""
    kind, _, argument = profile.partition(":")
    if kind != "lite":
        return [None]
    from pathlib import Path

    folder = Path(argument or LITE_WEIGHTS)
    try:
        own = int(load_config(folder)["resolution"])
    except (MirageError, KeyError, TypeError, ValueError):
        return [None]
    return sorted({own, *source_vae_folders(folder)})
