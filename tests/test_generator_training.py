"""`train-generator`: the three stages run, resume where they stopped, and give a loadable LCM generator."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from safetensors.torch import load_file

from mirage_core.corpus import Corpus
from mirage_core.errors import MirageError
from mirage_core.generation import GenerationRequest, LiteGenerator
from mirage_core.generation.pipelines import LORA_WEIGHT_NAME, lite_pipeline, load_config
from mirage_core.generation.training import train_generator


def _tiny_config() -> dict:
    config = copy.deepcopy(load_config())
    config["vae"].update(block_out_channels=[16, 16, 16])
    config["unet"].update(block_out_channels=[16, 32, 32], attention_head_dim=8)
    config["train"].update(vae_batch=4, unet_batch=4, lcm_batch=4, lcm_rank=4)
    return config


def test_stages_run_resume_and_load(tmp_path, demo_corpus, lite_encoder):
    corpus = Corpus("slice", demo_corpus.records[:40])
    out, work = tmp_path / "generator", tmp_path / "work"
    report = train_generator(corpus, lite_encoder, out, work, steps={"vae": 2, "unet": 2, "lcm": 2},
                             config=_tiny_config())
    assert report["vae_steps"] == report["unet_steps"] == report["lcm_steps"] == 2
    assert report["encoder_fingerprint"] == lite_encoder.fingerprint and report["train_images"] > 20
    assert (out / "vae").is_dir() and (out / "unet").is_dir() and (out / LORA_WEIGHT_NAME).exists()

    resumed = train_generator(corpus, lite_encoder, out, work, stages=["unet"], steps={"unet": 3})
    assert resumed["unet_steps"] == 3  # continued from its checkpoint, not from zero
    assert json.loads((out / "training.json").read_text())["unet_steps"] == 3

    # every layer the LCM-LoRA was trained on gets its adapter back when diffusers loads the file
    saved = {key.rsplit(".lora", 1)[0] for key in load_file(str(out / LORA_WEIGHT_NAME))}
    pipeline, _ = lite_pipeline(out)
    pipeline.load_lora_weights(str(out), weight_name=LORA_WEIGHT_NAME, adapter_name="lcm")
    adapted = {f"unet.{name}" for name, module in pipeline.unet.named_modules()
               if "lcm" in getattr(module, "lora_A", {})}
    assert any(".attn2.to_k" in name for name in saved) and adapted == saved

    generator = LiteGenerator(lite_encoder, out)
    image = generator.generate(GenerationRequest("chest x-ray", n=1, steps=4, seed=0))[0].image
    assert np.asarray(image).shape == (256, 256, 3)


def test_bad_stages_and_encoders_are_refused(tmp_path, demo_corpus, lite_encoder, table_encoder):
    corpus = Corpus("slice", demo_corpus.records[:40])
    with pytest.raises(MirageError, match="unknown stage"):
        train_generator(corpus, lite_encoder, tmp_path / "g", tmp_path / "w", stages=["paint"])
    with pytest.raises(MirageError, match="256-d embeddings"):
        train_generator(corpus, table_encoder({}, 3), tmp_path / "g", tmp_path / "w")
