"""`train-generator`: the three stages run, resume where they stopped, and give a loadable LCM generator."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from safetensors.torch import load_file

from mirage_core.corpus import Corpus
from mirage_core.errors import MirageError, QueryError
from mirage_core.generation import GenerationRequest, LiteGenerator, sizes_of
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
    assert report["encoder_fingerprint"] == lite_encoder.space_fingerprint and report["train_images"] > 20
    assert (out / "vae").is_dir() and (out / "unet").is_dir() and (out / LORA_WEIGHT_NAME).exists()

    # more VAE training would move the latents under the trained UNet: refused, and nothing is touched
    with pytest.raises(MirageError, match="--unet-from"):
        train_generator(corpus, lite_encoder, out, work, stages=["vae"], steps={"vae": 3})
    assert json.loads((out / "training.json").read_text())["vae_steps"] == 2 and (out / "unet").is_dir()
    assert train_generator(corpus, lite_encoder, out, work, stages=["vae"], steps={"vae": 2})["vae_steps"] == 2

    resumed = train_generator(corpus, lite_encoder, out, work, stages=["unet"], steps={"unet": 3})
    assert resumed["unet_steps"] == 3  # continued from its checkpoint, not from zero
    assert json.loads((out / "training.json").read_text())["unet_steps"] == 3
    finished = train_generator(corpus, lite_encoder, out, work, stages=["unet"], steps={"unet": 3})
    assert finished["unet_loss"] == resumed["unet_loss"] is not None  # no step taken: the loss is kept
    # the UNet moved on, so the LCM-LoRA distilled from the old one is gone until the 'lcm' stage runs again
    assert not (out / LORA_WEIGHT_NAME).exists() and not (work / "lcm.pt").exists()
    assert "lcm_steps" not in json.loads((out / "training.json").read_text())
    redistilled = train_generator(corpus, lite_encoder, out, work, stages=["lcm"], steps={"lcm": 2})
    assert redistilled["lcm_steps"] == 2 and (out / LORA_WEIGHT_NAME).exists()

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


def test_a_new_unet_starts_from_an_old_one_where_shapes_fit(tmp_path, demo_corpus, lite_encoder):
    corpus = Corpus("slice", demo_corpus.records[:40])
    old_config = _tiny_config()
    old_config["vae"]["latent_channels"] = old_config["unet"]["in_channels"] = old_config["unet"]["out_channels"] = 4
    old = tmp_path / "old"
    train_generator(corpus, lite_encoder, old, tmp_path / "old-work", stages=["vae", "unet"],
                    steps={"vae": 1, "unet": 1}, config=old_config)
    new_config = _tiny_config()  # 8 latent channels: only the UNet's outer convolutions change shape
    new = tmp_path / "new"
    lines: list[str] = []
    train_generator(corpus, lite_encoder, new, tmp_path / "new-work", stages=["vae"], steps={"vae": 1},
                    config=new_config)
    train_generator(corpus, lite_encoder, new, tmp_path / "new-work", stages=["unet"], steps={"unet": 1},
                    unet_from=old, log=lines.append)
    assert any("conv_in.weight" in line and "conv_out.weight" in line for line in lines)
    old_unet, new_unet = (lite_pipeline(folder)[0].unet.state_dict() for folder in (old, new))
    assert new_unet["conv_in.weight"].shape[1] == 8 and old_unet["conv_in.weight"].shape[1] == 4
    # one training step moves the transplanted weights only a little from the donor's, far less than a
    # fresh random initialisation would differ from them
    name = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    moved = (new_unet[name].float() - old_unet[name].float()).abs().mean()
    assert moved < 0.1 * old_unet[name].float().abs().mean()


def test_perceptual_distance_is_zero_only_for_equal_images():
    import torch

    from mirage_core.generation.training import PerceptualDistance

    distance = PerceptualDistance()
    target = torch.rand(2, 1, 32, 32) * 2 - 1
    reconstruction = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    assert distance(target, target).item() == pytest.approx(0.0, abs=1e-6)
    loss = distance(reconstruction, target)
    loss.backward()
    assert loss.item() > 0.01 and reconstruction.grad.abs().sum() > 0


def test_the_unet_average_resumes_from_either_checkpoint_format():
    """diffusers' EMAModel carries the UNet's average; a work checkpoint of the previous release (the average as a
    state dict) resumes into it unchanged, and a new checkpoint round-trips."""
    import torch

    from mirage_core.generation.pipelines import load_config, new_scheduler
    from mirage_core.generation.training.unet import _moving_average, min_snr_weights

    model, average = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ema = _moving_average(model, {"ema": average.state_dict()}, step=40, decay=0.999)
    assert all(torch.equal(a, b) for a, b in zip(ema.shadow_params, average.parameters()))
    assert ema.optimization_step == 40 and ema.get_decay(ema.optimization_step) > 0.8
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.step(model.parameters())
    again = _moving_average(model, {"ema": ema.state_dict()}, step=41, decay=0.999)
    assert all(torch.equal(a, b) for a, b in zip(again.shadow_params, ema.shadow_params))
    scheduler = new_scheduler(load_config())
    weights = min_snr_weights(scheduler, torch.tensor([0, 500, 999]), gamma=5.0)
    assert weights[0] < weights[1] <= 1.0 and weights[2] == 1.0  # easy, low-noise steps count less


@pytest.fixture(scope="module")
def source_64(tmp_path_factory):
    """A 64 px lite generator: the shipped one, or, where the shipped one was grown from it, its source rebuilt
    from the shipped parts (the source's VAE ships as `vae-64/`)."""
    import shutil

    from mirage_core.generation.pipelines import LITE_WEIGHTS

    shipped = load_config(LITE_WEIGHTS)
    if shipped["resolution"] == 64:
        return LITE_WEIGHTS
    folder = tmp_path_factory.mktemp("source-64")
    shutil.copytree(LITE_WEIGHTS / "unet", folder / "unet")
    shutil.copytree(LITE_WEIGHTS / "vae-64", folder / "vae")
    shutil.copy2(LITE_WEIGHTS / LORA_WEIGHT_NAME, folder / LORA_WEIGHT_NAME)
    shutil.copy2(LITE_WEIGHTS / "training.json", folder / "training.json")
    vae = json.loads((folder / "vae" / "config.json").read_text())
    config = {**shipped, "resolution": 64, "vae": {key: vae[key] for key in shipped["vae"]}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_grown_vae_starts_as_its_source_at_twice_the_size(source_64):
    import torch
    import torch.nn.functional as F

    from mirage_core.generation.pipelines import new_vae
    from mirage_core.generation.training.grow import grown_config, grown_vae

    source_config = load_config(source_64)
    source = new_vae(source_config, source_64).float().eval()
    config = grown_config(source_config)
    assert config["resolution"] == 2 * source_config["resolution"] and config["unet"] == source_config["unet"]
    grown = grown_vae(config, source).eval()
    torch.manual_seed(0)
    smooth = F.interpolate(torch.rand(2, 1, 16, 16) * 2 - 1, size=128, mode="bilinear", align_corners=False)
    with torch.no_grad():
        wanted = source.encode(F.avg_pool2d(smooth, 2)).latent_dist.mean
        drift = (grown.encode(smooth).latent_dist.mean - wanted).pow(2).mean() / wanted.var()
        latents = torch.randn(2, source_config["vae"]["latent_channels"], 16, 16)
        drawn, small = grown.decode(latents).sample, source.decode(latents).sample
    assert drawn.shape[-1] == 128 and latents.shape[-1] == 16  # the same 16×16 latents, one stage deeper
    assert drift < 0.05  # the same latent space from the first step: the UNet and LCM-LoRA stay valid
    assert F.avg_pool2d(drawn, 2).sub(small).abs().mean() < 0.5 * small.abs().mean()


def test_grow_trains_resumes_and_publishes_a_working_128px_generator(tmp_path, demo_corpus, lite_encoder,
                                                                    monkeypatch, source_64):
    from helpers import write_csv_slice

    from mirage_core.bench.generate import bench_sizes
    from mirage_core.config import load_settings

    corpus = Corpus("slice", demo_corpus.records[:24])
    out, work = tmp_path / "grown", tmp_path / "work"
    report = train_generator(corpus, lite_encoder, out, work, steps={"grow": 2}, grow_from=source_64)
    assert report["grow_steps"] == 2 and report["grow_images"] > 10 and report["unet_steps"] > 0
    assert load_config(out)["resolution"] == 128 and (out / LORA_WEIGHT_NAME).exists()
    assert (work / "grow.pt").exists()
    assert train_generator(corpus, lite_encoder, out, work, steps={"grow": 3}, grow_from=source_64)[
        "grow_steps"] == 3  # resumed from its checkpoint
    grown = LiteGenerator(lite_encoder, out)
    assert grown.sizes == [64, 128] == sizes_of(f"lite:{out}")  # its own size, and its source's decoder
    assert sizes_of(f"lite:{source_64}") == [64] and sizes_of("sd") == [None]
    synthetic = grown.generate(GenerationRequest("chest x-ray", n=1, steps=4, seed=0))[0]
    assert synthetic.native.size == (128, 128) and synthetic.metadata["Native size"] == "128x128"
    small = grown.generate(GenerationRequest("chest x-ray", n=1, steps=4, seed=0, size=64))[0]
    assert small.native.size == (64, 64)
    with pytest.raises(QueryError, match="64 or 128 px"):
        grown.generate(GenerationRequest("chest x-ray", n=1, steps=4, seed=0, size=256))
    with pytest.raises(MirageError, match="another folder"):
        train_generator(corpus, lite_encoder, source_64, work, steps={"grow": 4}, grow_from=source_64)

    # `mirage bench generate --compare`: both models side by side, on a corpus small enough for a test
    monkeypatch.setenv("MIRAGE_CORPUS", str(write_csv_slice(tmp_path / "slice.csv", demo_corpus.records[:60])))
    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    result = bench_sizes(lite_encoder, load_settings(), out, fidelity=3, repeats=1, grid_path=tmp_path / "grid.png")
    assert list(result.models) == ["64 px", "128 px"] and result.fidelity_n == 3
    assert all(m["lcm4_s_per_image"] > 0 and 0 <= m["pixel classifier"] <= 1 for m in result.models.values())
    assert result.ceilings["real image at 128 px"]["detail vs real 128 px"] == 1.0
    assert (tmp_path / "grid.png").exists() and "native size" in result.grid_columns
