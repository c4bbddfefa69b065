"""Stage 1, `vae`: a small AutoencoderKL trained with L1, a tiny KL term and a perceptual term."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ...errors import MirageError
from ..pipelines import new_vae, save_components
from .common import CHECKPOINT_EVERY, Checkpoint, Log, autocast_for, unit_range


class PerceptualDistance(torch.nn.Module):
    """LPIPS-style distance on the frozen ImageNet EfficientNet-Lite0 (the one pretrained image network that
    ships offline): mean squared difference of channel-normalised activations of a few early blocks."""

    def __init__(self, taps: Sequence[int] = (1, 3, 7)):
        super().__init__()
        from ...encoders.lite import ImageBackbone, load_config

        self.backbone = ImageBackbone(load_config()).requires_grad_(False)
        self.taps = set(taps)

    def _features(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        return [x / (x.pow(2).mean(1, keepdim=True).sqrt() + 1e-6)
                for index, x in self.backbone.block_outputs(pixels.expand(-1, 3, -1, -1), max(self.taps) + 1)
                if index in self.taps]

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self._features(target)
        return sum((a.float() - b.float()).pow(2).mean() for a, b in zip(self._features(reconstruction), wanted))


def train_vae(data: dict, config: dict, out_dir: Path, work_dir: Path, steps: int, device: torch.device,
              log: Log, seed: int = 0, done: int = 0) -> dict:
    settings = config["train"]
    checkpoint = Checkpoint(work_dir, "vae")
    committed = out_dir if (out_dir / "vae").exists() else None
    vae = new_vae(config, committed)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=settings["vae_lr"])
    state, step = checkpoint.resume(vae, optimiser, done if committed else 0)
    vae.to(device).train()
    perceptual_weight = settings.get("vae_perceptual_weight", 0.0)
    perceptual = PerceptualDistance().to(device) if perceptual_weight else None
    pixels = unit_range(data["pixels"])
    generator = torch.Generator().manual_seed(seed + step)
    started, losses = time.time(), []
    while step < steps:
        rows = torch.randint(0, len(pixels), (settings["vae_batch"],), generator=generator)
        batch = pixels[rows]
        flip = torch.rand(len(batch), generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch).to(device)
        with autocast_for(device):
            posterior = vae.encode(batch).latent_dist
            reconstruction = vae.decode(posterior.sample()).sample.float()
            l1 = (reconstruction - batch).abs().mean()
            loss = l1 + settings["vae_kl_weight"] * posterior.kl().mean()
            if perceptual:
                loss = loss + perceptual_weight * perceptual(reconstruction, batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        losses.append(l1.item())
        if step % CHECKPOINT_EVERY == 0 or step == steps:
            checkpoint.save({"model": vae.state_dict(), "optimiser": optimiser.state_dict(), "step": step})
            log(f"vae step {step}/{steps} L1 {np.mean(losses[-CHECKPOINT_EVERY:]):.4f} "
                f"({(time.time() - started) / max(len(losses), 1):.2f} s/step)")
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(pixels[i : i + 256].to(device)).latent_dist.mean
                             for i in range(0, len(pixels), 256)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    save_components(out_dir, config, vae=vae.cpu())
    return {"vae_steps": step, "vae_l1": float(np.mean(losses[-100:])) if losses else None,
            "scaling_factor": vae.config.scaling_factor}


def refuse_to_strand_the_unet(out_dir: Path, work_dir: Path) -> None:
    """More VAE training moves the latent space under a UNet trained in it, which would then draw noise.
    Unlike a stale LCM-LoRA (cheap to distil again), a UNet is hours of work, so it is never removed: the
    new VAE goes into a fresh folder, whose UNet can start from this one (`--unet-from`)."""
    if (out_dir / "unet").exists() or Checkpoint(work_dir, "unet").path.exists():
        raise MirageError(
            f"{out_dir} holds a UNet trained on its VAE's latents; training that VAE further would leave the "
            f"UNet unusable. Train the new VAE into another --out (and --work) folder, with --unet-from {out_dir} "
            f"to start its UNet from this one")
