"""The `lite` profile: the project's grayscale latent-diffusion model (64 or 128 px, as its config says),
conditioned on MIRAGE's joint embedding (a text, an image or a dual-search vector), with its LCM-LoRA fused into
a second UNet."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import MirageError, QueryError
from ..query import as_unit_vector
from .base import GenerationRequest, ImageGenerator, ddim_from, seeded_generators
from .pipelines import LITE_WEIGHTS, LORA_WEIGHT_NAME, condition_tokens, lite_pipeline, new_unet, source_vaes


class LiteGenerator(ImageGenerator):
    """The project's grayscale model (at its config's resolution), conditioned on the encoder's joint embedding."""

    profile = "lite"

    def __init__(self, encoder, folder: str | Path = LITE_WEIGHTS, device: str = "cpu"):
        self.pipeline, self.config = lite_pipeline(folder)
        report = Path(folder) / "training.json"
        trained_with = json.loads(report.read_text()).get("encoder_fingerprint") if report.exists() else None
        space = getattr(encoder, "space_fingerprint", encoder.fingerprint)
        if trained_with and trained_with != space:
            raise MirageError(f"the lite generator was trained on embeddings of encoder {trained_with}, not of "
                              f"'{encoder.name}' ({space})")
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
        # a grown generator keeps its source's decoder: the same latents drawn at the source's size
        self.vaes = {self.config["resolution"]: self.pipeline.vae, **source_vaes(self.folder)}
        for vae in self.vaes.values():
            vae.to(device)
        self.pipeline.to(device)
        self.device = device
        self.model_name = f"MIRAGE lite generator ({self.folder.name})"
        self.schedulers = {"lcm": self.pipeline.scheduler, "ddim": ddim_from(self.pipeline.scheduler)}

    @property
    def sizes(self) -> list[int]:
        """The sides, in px, this model draws at (its own; a grown model's source size too)."""
        return sorted(self.vaes)

    def condition_vector(self, condition: str | Image.Image | np.ndarray) -> np.ndarray:
        return as_unit_vector(self.encoder, condition, what="prompt")

    @torch.inference_mode()
    def _sample(self, request: GenerationRequest) -> list[Image.Image]:
        side = request.size or self.config["resolution"]
        if side not in self.vaes:
            raise QueryError(f"the lite model draws {' or '.join(map(str, self.sizes))} px images, not {side} px")
        if request.sampler == "lcm" and not self.has_lcm:
            raise QueryError("this lite model has no LCM-LoRA yet: use sampler 'ddim' or train the 'lcm' stage")
        tokens = condition_tokens(self.condition_vector(request.condition)[None], self.config)
        # A pipeline object of this request's own around the shared parts: the cached one is never changed
        shared = self.schedulers[request.sampler]
        pipeline = type(self.pipeline)(**{**self.pipeline.components, "unet": self.unets[request.sampler],
                                          "vae": self.vaes[side], "scheduler": type(shared).from_config(shared.config)},
                                        requires_safety_checker=False)
        pipeline.set_progress_bar_config(disable=True)
        images = []
        for generator in seeded_generators(request.seed, request.n):  # one seed per image: reproducible one by one
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
