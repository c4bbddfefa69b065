"""Stage 3, `lcm`: latent consistency distillation of the EMA UNet into a LoRA (LCM-LoRA)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ...files import atomic_path
from ..pipelines import LORA_WEIGHT_NAME, new_scheduler, new_unet
from .common import CHECKPOINT_EVERY, Checkpoint, LatentTable, Log, Progress, autocast_for, conditions


class DDIMSolver:
    """The teacher's one DDIM step between LCM's skipping timesteps (from diffusers' LCM scripts)."""

    def __init__(self, alphas_cumprod: torch.Tensor, train_steps: int, ddim_steps: int):
        ratio = train_steps // ddim_steps
        self.timesteps = (torch.arange(1, ddim_steps + 1) * ratio).round().long() - 1
        self.alphas = alphas_cumprod[self.timesteps]
        self.previous_alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[self.timesteps[:-1]]])
        self.skip = ratio

    def step(self, x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        previous = self.previous_alphas[index].view(-1, 1, 1, 1)
        return previous.sqrt() * x0 + (1 - previous).sqrt() * noise


def boundary_scalings(timesteps: torch.Tensor, sigma_data: float = 0.5, timestep_scaling: float = 10.0):
    """c_skip and c_out of the consistency parameterisation, as in `LCMScheduler`."""
    scaled = timestep_scaling * timesteps.float()
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)


def _x0(epsilon: torch.Tensor, timesteps: torch.Tensor, sample: torch.Tensor, alphas_cumprod: torch.Tensor):
    alpha = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    return (sample - (1 - alpha).sqrt() * epsilon) / alpha.sqrt()


LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]


def distill_lcm(data: dict, config: dict, out_dir: Path, work_dir: Path, steps: int, device: torch.device,
                log: Log, seed: int = 0, done: int = 0, progress: Progress | None = None) -> dict:
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    settings = config["train"]
    table = LatentTable(config, out_dir, data, device)
    scheduler = new_scheduler(config)
    alphas = scheduler.alphas_cumprod.to(device)
    solver = DDIMSolver(alphas, scheduler.config.num_train_timesteps, settings["lcm_ddim_steps"])
    teacher = new_unet(config, out_dir).to(device).requires_grad_(False).eval()
    student = new_unet(config, out_dir).requires_grad_(False)
    rank = settings["lcm_rank"]
    student.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, init_lora_weights="gaussian"))
    student.to(device).train()
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=settings["lcm_lr"])
    checkpoint = Checkpoint(work_dir, "lcm")
    state = checkpoint.load()
    step = 0  # the LoRA restarts without its work checkpoint: `done` is not used (the teacher may have changed)
    if state:
        set_peft_model_state_dict(student, state["lora"])
        optimiser.load_state_dict(state["optimiser"])
        step = state["step"]
    generator = torch.Generator().manual_seed(seed + step)
    low, high = settings["lcm_guidance"]
    started, losses = time.time(), []

    def summary() -> dict:
        return {"lcm_steps": step, "lcm_rank": rank, **({"lcm_loss": float(np.mean(losses[-200:]))} if losses else {})}

    while step < steps:
        rows = torch.randint(0, len(table), (settings["lcm_batch"],), generator=generator)
        latents = table.sample(rows, generator).to(device)
        hidden = conditions(data, rows, config, generator).to(device)
        empty = torch.zeros_like(hidden)
        index = torch.randint(0, len(solver.timesteps), (len(rows),), generator=generator)
        start = solver.timesteps[index].to(device)
        end = torch.clamp(start - solver.skip, min=0)
        skip_start, out_start = boundary_scalings(start)
        skip_end, out_end = boundary_scalings(end)
        noise = torch.randn(latents.shape, generator=generator)
        noisy = scheduler.add_noise(latents.cpu(), noise, start.cpu()).to(device)
        guidance = (low + (high - low) * torch.rand(len(rows), generator=generator)).view(-1, 1, 1, 1).to(device)
        with autocast_for(device):
            epsilon = student(noisy, start, encoder_hidden_states=hidden).sample.float()
        prediction = skip_start * noisy + out_start * _x0(epsilon, start, noisy, alphas)
        with torch.no_grad(), autocast_for(device):
            both = teacher(torch.cat([noisy, noisy]), torch.cat([start, start]),
                           encoder_hidden_states=torch.cat([hidden, empty])).sample.float()
            conditional, unconditional = both.chunk(2)
            teacher_noise = unconditional + guidance * (conditional - unconditional)
            teacher_x0 = _x0(teacher_noise, start, noisy, alphas)
            previous = solver.step(teacher_x0, teacher_noise, index.to(device))
            target_epsilon = student(previous, end, encoder_hidden_states=hidden).sample.float()
            target = skip_end * previous + out_end * _x0(target_epsilon, end, previous, alphas)
        loss = (torch.sqrt((prediction - target) ** 2 + 1e-6) - 1e-3).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimiser.step()
        step += 1
        losses.append(loss.item())
        if step % CHECKPOINT_EVERY == 0 or step == steps:
            lora = get_peft_model_state_dict(student)
            checkpoint.save({"lora": lora, "optimiser": optimiser.state_dict(), "step": step})
            _save_lora(out_dir, lora)
            if progress:
                progress(summary())
            log(f"lcm step {step}/{steps} loss {np.mean(losses[-CHECKPOINT_EVERY:]):.5f} "
                f"({(time.time() - started) / max(len(losses), 1):.2f} s/step)")
    _save_lora(out_dir, get_peft_model_state_dict(student))
    return summary()


def _save_lora(out_dir: Path, layers: dict) -> None:
    """Save peft's own key names (lora_A/lora_B), which diffusers' `load_lora_weights` reads as they are.
    Not `convert_state_dict_to_diffusers`: it renames only the attention layers to the old
    `lora.down/up` style, and a file mixing both styles loads without its attention adapters."""
    from diffusers import StableDiffusionPipeline

    layers = {name: tensor.half() for name, tensor in layers.items()}  # float16 on disk; loads into float32
    with atomic_path(out_dir / LORA_WEIGHT_NAME) as temporary:
        StableDiffusionPipeline.save_lora_weights(temporary.parent, unet_lora_layers=layers,
                                                  weight_name=temporary.name, safe_serialization=True)


def forget_distillation(out_dir: Path, work_dir: Path, report: dict, log: Log) -> None:
    """A UNet that trains further is a new teacher: the LCM-LoRA distilled from the old one no longer fits it,
    so it is removed (never paired with a UNet it was not distilled from) and the 'lcm' stage starts afresh."""
    stale = [key for key in report if key.startswith("lcm_")]
    lora = out_dir / LORA_WEIGHT_NAME
    if stale or lora.exists():
        for key in stale:
            del report[key]
        lora.unlink(missing_ok=True)
        Checkpoint(work_dir, "lcm").path.unlink(missing_ok=True)
        log("the UNet trains further: its old LCM-LoRA is removed until the 'lcm' stage distils it again")
