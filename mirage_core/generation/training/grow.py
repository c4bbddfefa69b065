"""Stage `grow`: a VAE one stage deeper (twice the resolution, the same 16×16 latents) that keeps a trained
generator's latent space, so its UNet and LCM-LoRA carry over unchanged.

The new VAE starts as the source VAE with an outer stage added on each side, initialised to do nothing but change
the size: the encoder's new first block is an identity resnet and a 2×2 average-pool downsampler, the decoder's new
last block an identity resnet after a nearest-neighbour upsampler. At step 0 it therefore encodes a 128 px image
about as the source encodes its 64 px version, and decodes a latent into the source's picture drawn at twice the
size. Training then teaches the decoder the detail the source never drew — L1 and the perceptual distance against
the real 128 px image, from the source's latents of the 64 px version (the latents the UNet learnt to make) —
and keeps the encoder on the source's latents (squared error of the posterior means). Stable Diffusion's
ft-MSE decoder was made the same way: new decoder weights under an unchanged latent space.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ...errors import ImageError, MirageError
from ...files import atomic_folder, atomic_path
from ..pipelines import LORA_WEIGHT_NAME, load_config, new_vae, save_components
from .common import CHECKPOINT_EVERY, Checkpoint, Log, autocast_for, square_grayscale, unit_range
from .vae import PerceptualDistance


def paired_pixels(records, small: int, large: int, cache_dir: Path, log: Log) -> tuple[dict, dict]:
    """Each readable record's centre square at both sizes (uint8), as {"ids", "pixels"} pairs (cached)."""
    cache = cache_dir / f"pixels-{small}-{large}.npz"
    wanted = [r.id for r in records]
    if cache.exists():
        data = dict(np.load(cache))
        if list(data["ids"]) == [i for i in wanted if i in set(data["ids"])] and len(data["ids"]):
            return {"ids": data["ids"], "pixels": data["small"]}, {"ids": data["ids"], "pixels": data["large"]}
    log(f"reading {len(records)} images at {small} and {large} px")
    ids, smalls, larges = [], [], []
    for record in records:
        try:
            smalls.append(square_grayscale(record.image_path, small))
            larges.append(square_grayscale(record.image_path, large))
            ids.append(record.id)
        except ImageError:
            continue
    data = {"ids": np.array(ids), "small": np.stack(smalls), "large": np.stack(larges)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as temporary:
        np.savez(temporary, **data)
    return {"ids": data["ids"], "pixels": data["small"]}, {"ids": data["ids"], "pixels": data["large"]}


def grown_config(source: dict) -> dict:
    """The source generator's config at twice the resolution: one more VAE stage (its first width repeated)."""
    config = {**source, "vae": dict(source["vae"]), "resolution": 2 * source["resolution"]}
    vae = config["vae"]
    vae["block_out_channels"] = [vae["block_out_channels"][0], *vae["block_out_channels"]]
    vae["down_block_types"] = [vae["down_block_types"][0], *vae["down_block_types"]]
    vae["up_block_types"] = [vae["up_block_types"][0], *vae["up_block_types"]]
    vae["sample_size"] = config["resolution"]
    return config


def grown_vae(config: dict, source_vae) -> torch.nn.Module:
    """A VAE of `config` (one stage deeper than `source_vae`) that starts as the source drawn at twice the size."""
    vae = new_vae(config)
    theirs, own = source_vae.state_dict(), vae.state_dict()
    depth = len(source_vae.config.block_out_channels)
    renamed = {}
    for name, tensor in theirs.items():
        if name.startswith("encoder.down_blocks."):  # source block i is the new block i + 1
            block, rest = name[len("encoder.down_blocks."):].split(".", 1)
            name = f"encoder.down_blocks.{int(block) + 1}.{rest}"
        renamed[name] = tensor
    missing = [name for name in own if name not in renamed or own[name].shape != renamed[name].shape]
    vae.load_state_dict({k: v for k, v in renamed.items() if k in own and own[k].shape == v.shape}, strict=False)
    with torch.no_grad():
        first = vae.encoder.down_blocks[0]
        for resnet in first.resnets:  # identity: a resnet's output is its input plus conv2's (now zero) output
            resnet.conv2.weight.zero_()
            resnet.conv2.bias.zero_()
        pool = first.downsamplers[0].conv  # Downsample2D pads (0, 1, 0, 1) then a 3×3 stride-2 convolution
        pool.weight.zero_()
        pool.bias.zero_()
        for channel in range(pool.weight.shape[0]):
            pool.weight[channel, channel, :2, :2] = 0.25
        last = vae.decoder.up_blocks[depth]
        for resnet in last.resnets:
            resnet.conv2.weight.zero_()
            resnet.conv2.bias.zero_()
        upsample = vae.decoder.up_blocks[depth - 1].upsamplers[0].conv  # nearest ×2, then this convolution
        upsample.weight.zero_()
        upsample.bias.zero_()
        for channel in range(upsample.weight.shape[0]):
            upsample.weight[channel, channel, 1, 1] = 1.0
    expected = {n for n in missing if n.startswith(("encoder.down_blocks.0.", f"decoder.up_blocks.{depth}.",
                                                    f"decoder.up_blocks.{depth - 1}.upsamplers."))}
    if set(missing) != expected:
        raise MirageError("the source VAE does not fit one stage inside the grown one: "
                          f"{sorted(set(missing) - expected)}")
    vae.register_to_config(scaling_factor=source_vae.config.scaling_factor)
    return vae


def grow_generator(source_dir: Path, small: dict, large: dict, out_dir: Path, work_dir: Path, steps: int,
                   device: torch.device, log: Log, batch: int = 8, seed: int = 0) -> dict:
    """Train the grown VAE on `large` pixels (their `small` versions are what the source VAE encodes) and publish
    it with the source's UNet, LCM-LoRA and report into `out_dir`."""
    if Path(out_dir).resolve() == Path(source_dir).resolve():
        raise MirageError("grow into another folder: the source generator stays as it is")
    source_config = load_config(source_dir)
    config = grown_config(source_config)
    if large["pixels"].shape[-1] != config["resolution"] or small["pixels"].shape[-1] != source_config["resolution"]:
        raise MirageError("the pixels given do not match the source resolution and twice it")
    if list(small["ids"]) != list(large["ids"]):
        raise MirageError("the two resolutions' training images differ: prepare both from the same records")
    source = new_vae(source_config, source_dir).to(device).eval().requires_grad_(False)
    vae = grown_vae(config, source)
    settings = config["train"]
    optimiser = torch.optim.AdamW(vae.parameters(), lr=settings["vae_lr"] / 5)  # from a working start: gently
    checkpoint = Checkpoint(work_dir, "grow")
    _, step = checkpoint.resume(vae, optimiser, 0)
    vae.to(device).train()
    perceptual = PerceptualDistance().to(device)
    small_pixels, large_pixels = unit_range(small["pixels"]), unit_range(large["pixels"])
    generator = torch.Generator().manual_seed(seed + step)
    started, losses = time.time(), []
    while step < steps:
        rows = torch.randint(0, len(large_pixels), (batch,), generator=generator)
        flip = (torch.rand(batch, generator=generator) < 0.5)[:, None, None, None]
        target = torch.where(flip, large_pixels[rows].flip(-1), large_pixels[rows]).to(device)
        seen = torch.where(flip, small_pixels[rows].flip(-1), small_pixels[rows]).to(device)
        with torch.no_grad():
            wanted = source.encode(seen).latent_dist
        with autocast_for(device):
            posterior = vae.encode(target).latent_dist
            reconstruction = vae.decode(wanted.sample()).sample.float()
            l1 = (reconstruction - target).abs().mean()
            kept = (posterior.mean.float() - wanted.mean).pow(2).mean() + (posterior.logvar.float()
                                                                            - wanted.logvar).pow(2).mean()
            loss = l1 + settings.get("vae_perceptual_weight", 1.0) * perceptual(reconstruction, target) + kept
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        losses.append((l1.item(), kept.item()))
        if step % CHECKPOINT_EVERY == 0 or step == steps:
            checkpoint.save({"model": vae.state_dict(), "optimiser": optimiser.state_dict(), "step": step})
            recent = np.mean(losses[-CHECKPOINT_EVERY:], axis=0)
            log(f"grow step {step}/{steps} L1 {recent[0]:.4f} latent drift {recent[1]:.4f} "
                f"({(time.time() - started) / max(len(losses), 1):.2f} s/step)")
    publish(source_dir, out_dir, config, vae.eval().cpu())
    recent = np.mean(losses[-100:], axis=0) if losses else (None, None)
    return {"grow_steps": step, "grow_l1": None if recent[0] is None else float(recent[0]),
            "grow_latent_drift": None if recent[1] is None else float(recent[1]), "grown_from": str(source_dir)}


def publish(source_dir: Path, out_dir: Path, config: dict, vae) -> None:
    """The grown VAE beside copies of the source's UNet and LCM-LoRA (same latent space, so both stay valid) and
    of its VAE as `vae-<side>` (the same latents drawn at the source's size: students can compare)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copies = {f"vae-{load_config(source_dir)['resolution']}": "vae", "unet": "unet"}
    for name, part in copies.items():
        with atomic_folder(out_dir / name) as staging:
            shutil.copytree(source_dir / part, staging, dirs_exist_ok=True)
    for name in (LORA_WEIGHT_NAME, "training.json"):
        if (source_dir / name).exists():
            with atomic_path(out_dir / name) as temporary:
                shutil.copy2(source_dir / name, temporary)
    save_components(out_dir, config, vae=vae)
