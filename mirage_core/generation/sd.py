"""The `sd` profile: Stable Diffusion 1.x with an LCM-LoRA, prompted by text (downloads weights on first use)."""

from __future__ import annotations

import threading

import torch
from PIL import Image

from ..errors import QueryError
from ..query import check_query_text
from .base import GenerationRequest, ImageGenerator, ddim_from, seeded_generators
from .pipelines import SD_DEFAULT, SD_LCM_LORA


class SDGenerator(ImageGenerator):
    """Stable Diffusion 1.x with an LCM-LoRA (text prompts; downloads the weights on first use)."""

    profile = "sd"

    def __init__(self, repo: str = SD_DEFAULT, lora: str = SD_LCM_LORA, device: str = "cpu", pipeline=None):
        from .pipelines import sd_pipeline

        self.pipeline = pipeline if pipeline is not None else sd_pipeline(repo, lora, device)
        self.model_name = f"{repo} + {lora}"
        self.schedulers = {"lcm": self.pipeline.scheduler, "ddim": ddim_from(self.pipeline.scheduler)}
        # The LCM-LoRA is switched on the one shared UNet (a second SD UNet would cost 3.4 GB): the switch and
        # the sampling that depends on it run under this lock, since peft's adapter state is not per call.
        self._lora_lock = threading.Lock()

    @torch.inference_mode()
    def _sample(self, request: GenerationRequest) -> list[Image.Image]:
        if not isinstance(request.condition, str):
            raise QueryError("the sd profile is prompted by text only; image and vector conditions need 'lite'")
        prompt = check_query_text(request.condition, "prompt")
        shared = self.schedulers[request.sampler]
        pipeline = type(self.pipeline)(**{**self.pipeline.components,
                                          "scheduler": type(shared).from_config(shared.config)},
                                        requires_safety_checker=False)
        pipeline.set_progress_bar_config(disable=True)
        side = request.size or 512
        images = []
        with self._lora_lock:
            if request.sampler == "lcm":
                pipeline.enable_lora()
            else:
                pipeline.disable_lora()
            for generator in seeded_generators(request.seed, request.n):
                images += pipeline(prompt, height=side, width=side, num_inference_steps=request.steps,
                                   guidance_scale=request.guidance, generator=generator, output_type="pil").images
        return images
