"""Stage 2, `unet`: the conditional UNet denoising the VAE's latents, with min-SNR loss weighting and an EMA of
its weights (both from `diffusers.training_utils`); the EMA weights are what is published."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..pipelines import load_config, new_scheduler, new_unet, save_components
from .common import CHECKPOINT_EVERY, Checkpoint, LatentTable, Log, Progress, autocast_for, conditions


def transplant(model: torch.nn.Module, donor: torch.nn.Module) -> list[str]:
    """Copy into `model` every tensor of `donor` with the same name and shape; returns the names left as
    initialised (e.g. the UNet's input and output convolutions after the latent channels changed)."""
    own, theirs = model.state_dict(), donor.state_dict()
    fitting = {name: tensor for name, tensor in theirs.items() if name in own and own[name].shape == tensor.shape}
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights for ε-prediction (Hang et al. 2023): min(SNR, γ) / SNR."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps)
    return torch.clamp(snr, max=gamma) / snr


def _moving_average(unet: torch.nn.Module, state: dict | None, step: int, decay: float):
    """diffusers' EMAModel of the UNet's weights (decay (1 + n) / (10 + n), capped at `decay`), resumed from the
    checkpoint; a checkpoint of the previous release kept the average as a UNet state dict, read as such."""
    from diffusers.training_utils import EMAModel

    saved = (state or {}).get("ema")
    if saved is not None and "shadow_params" not in saved:
        average = copy.deepcopy(unet)
        average.load_state_dict(saved)
        ema = EMAModel(average.parameters(), decay=decay)
    else:
        ema = EMAModel(unet.parameters(), decay=decay)
        if saved is not None:
            ema.load_state_dict(saved)
    ema.optimization_step = max(ema.optimization_step, step)
    ema.to(next(unet.parameters()).device)
    return ema


def train_unet(data: dict, config: dict, out_dir: Path, work_dir: Path, steps: int, device: torch.device,
               log: Log, seed: int = 0, done: int = 0, progress: Progress | None = None,
               unet_from: Path | None = None) -> dict:
    settings = config["train"]
    table = LatentTable(config, out_dir, data, device)
    scheduler = new_scheduler(config)
    checkpoint = Checkpoint(work_dir, "unet")
    committed = out_dir if (out_dir / "unet").exists() else None
    unet = new_unet(config, committed)
    if unet_from is not None and committed is None and not checkpoint.path.exists():
        fresh = transplant(unet, new_unet(load_config(unet_from), unet_from))
        log(f"unet starts from {unet_from} except {len(fresh)} tensors: {', '.join(fresh[:6])}")
    optimiser = torch.optim.AdamW(unet.parameters(), lr=settings["unet_lr"], weight_decay=0.01)
    state, step = checkpoint.resume(unet, optimiser, done if committed else 0)
    unet.to(device).train()
    ema = _moving_average(unet, state, step, settings["ema_decay"])

    def averaged() -> torch.nn.Module:
        model = copy.deepcopy(unet)
        ema.copy_to(model.parameters())
        return model.cpu()
    generator = torch.Generator().manual_seed(seed + step)
    started, losses = time.time(), []

    def summary() -> dict:
        # a run resumed only to finish takes no step: it keeps the loss the report already has
        return {"unet_steps": step, **({"unet_loss": float(np.mean(losses[-200:]))} if losses else {})}

    while step < steps:
        rows = torch.randint(0, len(table), (settings["unet_batch"],), generator=generator)
        latents = table.sample(rows, generator)
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(rows),), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        hidden = conditions(data, rows, config, generator)
        with autocast_for(device):
            prediction = unet(noisy.to(device), timesteps.to(device), encoder_hidden_states=hidden.to(device)).sample
        per_sample = F.mse_loss(prediction.float(), noise.to(device), reduction="none").mean((1, 2, 3))
        loss = (per_sample * min_snr_weights(scheduler, timesteps, settings["min_snr_gamma"]).to(device)).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        step += 1
        ema.step(unet.parameters())
        losses.append(loss.item())
        if step % CHECKPOINT_EVERY == 0 or step == steps:
            checkpoint.save({"model": unet.state_dict(), "ema": ema.state_dict(),
                             "optimiser": optimiser.state_dict(), "step": step})
            save_components(out_dir, config, unet=averaged())
            if progress:
                progress(summary())
            log(f"unet step {step}/{steps} loss {np.mean(losses[-CHECKPOINT_EVERY:]):.4f} "
                f"({(time.time() - started) / max(len(losses), 1):.2f} s/step)")
    save_components(out_dir, config, unet=averaged())
    return summary()
