"""Generation: the tiny SD + LCM-LoRA path, the shipped lite model, marks and metadata, bad input."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mirage_core.errors import MirageError, QueryError
from mirage_core.generation import (
    GenerationRequest,
    LiteGenerator,
    SDGenerator,
    SyntheticImage,
    create_generator,
    mark_synthetic,
)
from mirage_core.generation.pipelines import LITE_WEIGHTS, LORA_WEIGHT_NAME, condition_tokens, load_config


def _clip_tokenizer(folder):
    """CLIP's tokenizer files rebuilt from the BPE merges that ship with open_clip (no download)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """A Stable-Diffusion-shaped pipeline of tiny random parts and an LCM-LoRA for it, saved like hub repos."""
    from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-sd")
    tokenizer = _clip_tokenizer(tmp_path_factory.mktemp("clip-tokenizer"))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, projection_dim=16))
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                       scheduler=LCMScheduler(steps_offset=1), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(root / "sd")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    for name, parameter in unet.named_parameters():
        if "lora_B" in name:  # a LoRA that is not the identity, so switching it on must change the output
            parameter.data.normal_(0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(root / "lcm-lora", unet_lora_layers=layers, safe_serialization=True)
    return root


def test_sd_profile_loads_with_its_lcm_lora_and_runs_4_steps(tiny_sd):
    generator = SDGenerator(str(tiny_sd / "sd"), str(tiny_sd / "lcm-lora"))
    assert type(generator.pipeline.scheduler).__name__ == "LCMScheduler"
    request = GenerationRequest("chest x-ray", n=1, steps=4, guidance=1.0, seed=1, size=64)
    first = np.asarray(generator.generate(request)[0].image)
    again = np.asarray(generator.generate(request)[0].image)
    assert np.array_equal(first, again)
    pipeline = generator.pipeline
    with_adapter = pipeline("chest x-ray", height=64, width=64, num_inference_steps=4, guidance_scale=1.0,
                            generator=torch.Generator().manual_seed(1), output_type="np").images
    pipeline.disable_lora()
    without = pipeline("chest x-ray", height=64, width=64, num_inference_steps=4, guidance_scale=1.0,
                       generator=torch.Generator().manual_seed(1), output_type="np").images
    pipeline.enable_lora()
    assert np.abs(with_adapter - without).max() > 1e-3
    with pytest.raises(QueryError, match="text only"):
        generator.generate(GenerationRequest(np.ones(16), n=1, steps=4))


def test_sd_profile_without_the_hub_is_a_clear_error():
    with pytest.raises(MirageError, match="cannot load Stable Diffusion"):
        create_generator("sd:no-such-user/no-such-model")


# -- the shipped lite model ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lite(lite_encoder):
    if not (LITE_WEIGHTS / LORA_WEIGHT_NAME).exists():
        pytest.fail(f"the lite generator's LCM-LoRA is missing from {LITE_WEIGHTS}")
    return LiteGenerator(lite_encoder)


def test_lite_runs_from_the_shipped_weights_deterministically(lite):
    request = GenerationRequest("chest x-ray", n=2, steps=4, seed=5)
    first, again = lite.generate(request), lite.generate(request)
    assert len(first) == 2
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(first, again))
    assert not np.array_equal(np.asarray(first[0].image), np.asarray(first[1].image))  # seeds 5 and 6


def test_the_condition_steers_the_lite_model(lite, lite_encoder, demo_corpus):
    def pixels(condition):
        return np.asarray(lite.generate(GenerationRequest(condition, n=1, steps=4, seed=0))[0].image, dtype=float)

    chest, brain = pixels("chest x-ray"), pixels("MRI of the brain, axial T2")
    assert np.abs(chest - brain).mean() > 5  # same seed, different prompts: different images
    image = Image.open(demo_corpus.records[0].image_path)
    vector = lite_encoder.encode_text(["CT of the abdomen"])[0]
    assert pixels(image).shape == pixels(vector).shape == chest.shape


def test_lite_lcm_and_ddim_samplers_differ_and_both_run(lite):
    lcm = lite.generate(GenerationRequest("ultrasound", n=1, steps=4, seed=2))[0]
    ddim = lite.generate(GenerationRequest("ultrasound", n=1, steps=8, guidance=3.0, sampler="ddim", seed=2))[0]
    assert "lcm, 4 steps" in lcm.metadata["Sampler"] and "ddim, 8 steps" in ddim.metadata["Sampler"]
    assert not np.array_equal(np.asarray(lcm.image), np.asarray(ddim.image))


def test_condition_tokens_carry_the_embedding_and_a_gate_token():
    config = load_config()
    tokens = condition_tokens(np.ones((3, config["condition_dim"])), config)
    assert tokens.shape == (3, 2, config["condition_dim"])
    assert torch.all(tokens[:, 1] == 0) and torch.allclose(tokens[:, 0], torch.full_like(tokens[:, 0], 16.0))


# -- marks, metadata, bad input --------------------------------------------------------------------------------

def test_every_image_is_marked_and_labelled(lite):
    synthetic = lite.generate(GenerationRequest("chest x-ray", n=1, steps=4, seed=9, label="text: chest x-ray"))[0]
    reread = Image.open(io.BytesIO(synthetic.png_bytes()))
    assert reread.text["AI-generated"] == "true" and "MIRAGE" in reread.text["Software"]
    assert reread.text["Condition"] == "text: chest x-ray" and reread.text["Seed"] == "9"
    assert "lite generator" in reread.text["Model"]
    band = np.asarray(reread.convert("RGB"))[-4:, :40]
    assert (band[..., 0] > 150).mean() > 0.5 and (band[..., 1] < 100).mean() > 0.3  # the red SYNTHETIC band


def test_mark_is_visible_on_any_image():
    marked = mark_synthetic(Image.new("L", (64, 64), 0))
    assert marked.size == (256, 256)
    assert np.asarray(marked)[-10:, :, 0].mean() > 150
    assert SyntheticImage(marked, {"AI-generated": "true"}).png_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("request_args", "message"), [
    ({"condition": "   "}, "empty"),
    ({"condition": np.zeros(256)}, "zero"),
    ({"condition": np.ones(7)}, "dimensions"),
    ({"condition": "x", "steps": 0}, "steps must be"),
    ({"condition": "x", "steps": 1000}, "steps must be"),
    ({"condition": "x", "n": 500}, "between 1 and 8 images"),
    ({"condition": "x", "size": 4096}, "size must be"),
    ({"condition": "x", "sampler": "euler"}, "sampler must be"),
    ({"condition": "x", "size": 512}, "draws 64 or 128 px images, not 512 px"),
])
def test_bad_requests_are_clear(lite, request_args, message):
    with pytest.raises(QueryError, match=message):
        lite.generate(GenerationRequest(**request_args))


def test_the_independent_yardstick_learns_modalities_from_pixels_alone():
    from mirage_core.bench.generate import PixelModalityClassifier

    rng = np.random.default_rng(0)

    def images(kind: str, n: int) -> np.ndarray:
        base = rng.normal(128, 20, (n, 32, 32))
        if kind == "CT":  # a bright disc in the middle
            y, x = np.mgrid[:32, :32]
            base += 90 * (((y - 16) ** 2 + (x - 16) ** 2) < 64)
        else:  # vertical stripes
            base += 60 * (np.arange(32) % 8 < 4)
        return np.clip(base, 0, 255).astype(np.uint8)

    pixels = np.concatenate([images("CT", 60), images("X-ray", 60), images("CT", 4)])
    labels = ["CT"] * 60 + ["X-ray"] * 60 + ["unknown"] * 4  # unknown labels are left out of training
    classifier = PixelModalityClassifier(pixels, labels, epochs=40)
    assert classifier.classes == ["CT", "X-ray"]
    test = np.concatenate([images("CT", 20), images("X-ray", 20)])
    predicted = classifier(test)
    assert sum(p == t for p, t in zip(predicted, ["CT"] * 20 + ["X-ray"] * 20)) >= 36
