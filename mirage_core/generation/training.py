"""`mirage train-generator`: the three training stages of the lite generator, each resumable.

1. `vae` — a small AutoencoderKL (grayscale 64 px → 8×16×16 latents), L1 + a tiny KL term + a perceptual
   term (LPIPS-style: distances between channel-normalised activations of the frozen ImageNet
   EfficientNet-Lite0, so textures such as ultrasound speckle or CT noise survive the autoencoder).
2. `unet` — a UNet2DConditionModel denoising those latents, cross-attending to the encoder's joint
   embedding of either the caption or the image (so text, images and dual-search vectors all steer it),
   with condition dropout for classifier-free guidance, min-SNR loss weighting and an EMA of the weights.
3. `lcm` — latent consistency distillation of the EMA UNet into a LoRA (peft), following Luo et al.'s
   LCM-LoRA recipe: a DDIM teacher step with guidance, a Huber consistency loss, boundary scalings as in
   diffusers' `LCMScheduler`. The adapter is saved with peft's key names (a diffusers LoRA file) and loaded with
   `load_lora_weights`, exactly like `latent-consistency/lcm-lora-sdv1-5` for the SD profile.

Every stage checkpoints (weights, optimiser, step) atomically into a work folder every few hundred steps,
so training can be stopped and resumed over several stretches of time; `--steps` is the stage's total.
Without a work checkpoint the VAE and UNet stages continue from the weights in the output folder when there
are any (the committed checkpoint, with its step count from `training.json`; the optimiser starts afresh),
else from scratch; the LCM-LoRA is distilled afresh from the current UNet, and a UNet that trains further
drops the LoRA distilled from its earlier self; more VAE training under a trained UNet is refused (it would
move the UNet's latent space). Only the training split of `mirage_core.splits` is used.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..corpus import Record
from ..errors import ImageError, MirageError
from ..files import atomic_path, write_json
from ..images import open_image
from .pipelines import (
    LORA_WEIGHT_NAME,
    condition_tokens,
    load_config,
    new_scheduler,
    new_unet,
    new_vae,
    save_components,
)

Log = Callable[[str], None]
Progress = Callable[[dict], None]  # told the report fields of weights just published to the output folder
CHECKPOINT_EVERY = 250
STAGES = ("vae", "unet", "lcm")


def square_grayscale(path: str, resolution: int) -> np.ndarray:
    """The image's centre square, grayscale, `resolution` px a side, as uint8."""
    image = open_image(path).convert("L")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((resolution, resolution), resample=3)
    return np.asarray(image, dtype=np.uint8)


def prepare_data(records: Sequence[Record], encoder, resolution: int, cache_dir: Path, log: Log) -> dict:
    """Pixels plus the encoder's image and caption embeddings of each readable record (cached)."""
    cache = cache_dir / f"data-{resolution}-{encoder.fingerprint}.npz"
    if cache.exists():
        data = dict(np.load(cache))
        cached = set(data["ids"])
        if len(cached) and list(data["ids"]) == [r.id for r in records if r.id in cached]:
            return data
    pixels, kept = [], []
    for record in records:
        try:
            pixels.append(square_grayscale(record.image_path, resolution))
            kept.append(record)
        except ImageError:
            continue
    log(f"embedding {len(kept)} images and captions with encoder {encoder.name}")
    image_rows = [encoder.encode_image([open_image(r.image_path) for r in kept[i : i + 32]])
                  for i in range(0, len(kept), 32)]
    data = {
        "ids": np.array([r.id for r in kept]),
        "pixels": np.stack(pixels),
        "image_embeddings": np.concatenate(image_rows),
        "text_embeddings": encoder.encode_text([r.caption for r in kept]),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as temporary:
        np.savez(temporary, **data)
    return data


def _to_unit_range(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float().div(127.5).sub(1.0).unsqueeze(1)


class _Checkpoint:
    """Atomic torch checkpoints of one stage in the work folder."""

    def __init__(self, work_dir: Path, stage: str):
        self.path = work_dir / f"{stage}.pt"

    def load(self) -> dict | None:
        return torch.load(self.path, weights_only=False) if self.path.exists() else None

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as temporary:
            torch.save(state, temporary)


def _autocast(device: torch.device):
    """bfloat16 autocast where the hardware computes in it: ~25 % faster steps on AVX-512 CPUs, the usual mixed
    precision on GPUs. A CPU without AVX-512 emulates bfloat16, which made a UNet step 15× slower (8.1 s
    against 0.56 s in float32 on 2 AVX2 cores), so there training stays in float32."""
    if device.type == "cpu" and "AVX512" not in torch.backends.cpu.get_cpu_capability():
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class PerceptualDistance(torch.nn.Module):
    """LPIPS-style distance on the frozen ImageNet EfficientNet-Lite0 (the one pretrained image network that
    ships offline): mean squared difference of channel-normalised activations of a few early blocks."""

    def __init__(self, taps: Sequence[int] = (1, 3, 7)):
        super().__init__()
        from ..encoders.lite import ImageBackbone, load_config

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
    checkpoint = _Checkpoint(work_dir, "vae")
    committed = out_dir if (out_dir / "vae").exists() else None
    vae = new_vae(config, committed)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=settings["vae_lr"])
    state = checkpoint.load()
    step = done if committed else 0
    if state:
        vae.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step = state["step"]
    vae.to(device).train()
    perceptual_weight = settings.get("vae_perceptual_weight", 0.0)
    perceptual = PerceptualDistance().to(device) if perceptual_weight else None
    pixels = _to_unit_range(data["pixels"])
    generator = torch.Generator().manual_seed(seed + step)
    started, losses = time.time(), []
    while step < steps:
        rows = torch.randint(0, len(pixels), (settings["vae_batch"],), generator=generator)
        batch = pixels[rows]
        flip = torch.rand(len(batch), generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch).to(device)
        with _autocast(device):
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


class _LatentTable:
    """The trained VAE's posterior (mean, std; times its scaling factor) of every image and of its mirror."""

    def __init__(self, config: dict, out_dir: Path, data: dict, device: torch.device):
        vae = new_vae(config, out_dir).to(device).eval()
        pixels = _to_unit_range(data["pixels"])
        means, stds = [], []
        with torch.no_grad():
            for view in (pixels, pixels.flip(-1)):
                for i in range(0, len(view), 256):
                    posterior = vae.encode(view[i : i + 256].to(device)).latent_dist
                    means.append(posterior.mean.cpu())
                    stds.append(posterior.std.cpu())
        scaling = vae.config.scaling_factor
        self.means, self.stds = torch.cat(means) * scaling, torch.cat(stds) * scaling

    def __len__(self) -> int:
        return len(self.means)

    def sample(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(self.means[rows].shape, generator=generator)
        return self.means[rows] + self.stds[rows] * noise


def _conditions(data: dict, rows: torch.Tensor, config: dict, generator: torch.Generator) -> torch.Tensor:
    """Per row: the caption's or the image's embedding, or nothing (classifier-free guidance dropout)."""
    settings = config["train"]
    count = len(data["ids"])
    source_rows = rows % count
    text = torch.from_numpy(data["text_embeddings"])[source_rows]
    image = torch.from_numpy(data["image_embeddings"])[source_rows]
    use_image = torch.rand(len(rows), generator=generator) < settings["image_condition_share"]
    vectors = torch.where(use_image[:, None], image, text)
    keep = torch.rand(len(rows), generator=generator) >= settings["condition_dropout"]
    return condition_tokens(vectors * keep[:, None], config)


def _snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    return torch.clamp(snr, max=gamma) / snr


def transplant(model: torch.nn.Module, donor: torch.nn.Module) -> list[str]:
    """Copy into `model` every tensor of `donor` with the same name and shape; returns the names left as
    initialised (e.g. the UNet's input and output convolutions after the latent channels changed)."""
    own, theirs = model.state_dict(), donor.state_dict()
    fitting = {name: tensor for name, tensor in theirs.items() if name in own and own[name].shape == tensor.shape}
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


def train_unet(data: dict, config: dict, out_dir: Path, work_dir: Path, steps: int, device: torch.device,
               log: Log, seed: int = 0, done: int = 0, progress: Progress | None = None,
               unet_from: Path | None = None) -> dict:
    settings = config["train"]
    table = _LatentTable(config, out_dir, data, device)
    scheduler = new_scheduler(config)
    checkpoint = _Checkpoint(work_dir, "unet")
    committed = out_dir if (out_dir / "unet").exists() else None
    unet = new_unet(config, committed)
    if unet_from is not None and committed is None and not checkpoint.path.exists():
        fresh = transplant(unet, new_unet(load_config(unet_from), unet_from))
        log(f"unet starts from {unet_from} except {len(fresh)} tensors: {', '.join(fresh[:6])}")
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=settings["unet_lr"], weight_decay=0.01)
    state = checkpoint.load()
    step = done if committed else 0
    if state:
        unet.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        step = state["step"]
    unet.to(device).train()
    ema.to(device)
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
        hidden = _conditions(data, rows, config, generator)
        with _autocast(device):
            prediction = unet(noisy.to(device), timesteps.to(device), encoder_hidden_states=hidden.to(device)).sample
        per_sample = F.mse_loss(prediction.float(), noise.to(device), reduction="none").mean((1, 2, 3))
        loss = (per_sample * _snr_weights(scheduler, timesteps, settings["min_snr_gamma"]).to(device)).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        step += 1
        decay = min(settings["ema_decay"], (1 + step) / (10 + step))
        with torch.no_grad():
            for average, current in zip(ema.parameters(), unet.parameters(), strict=True):
                average.lerp_(current, 1 - decay)
        losses.append(loss.item())
        if step % CHECKPOINT_EVERY == 0 or step == steps:
            checkpoint.save({"model": unet.state_dict(), "ema": ema.state_dict(),
                             "optimiser": optimiser.state_dict(), "step": step})
            save_components(out_dir, config, unet=copy.deepcopy(ema).cpu())
            if progress:
                progress(summary())
            log(f"unet step {step}/{steps} loss {np.mean(losses[-CHECKPOINT_EVERY:]):.4f} "
                f"({(time.time() - started) / max(len(losses), 1):.2f} s/step)")
    save_components(out_dir, config, unet=copy.deepcopy(ema).cpu())
    return summary()


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
    table = _LatentTable(config, out_dir, data, device)
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
    checkpoint = _Checkpoint(work_dir, "lcm")
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
        hidden = _conditions(data, rows, config, generator).to(device)
        empty = torch.zeros_like(hidden)
        index = torch.randint(0, len(solver.timesteps), (len(rows),), generator=generator)
        start = solver.timesteps[index].to(device)
        end = torch.clamp(start - solver.skip, min=0)
        skip_start, out_start = boundary_scalings(start)
        skip_end, out_end = boundary_scalings(end)
        noise = torch.randn(latents.shape, generator=generator)
        noisy = scheduler.add_noise(latents.cpu(), noise, start.cpu()).to(device)
        guidance = (low + (high - low) * torch.rand(len(rows), generator=generator)).view(-1, 1, 1, 1).to(device)
        with _autocast(device):
            epsilon = student(noisy, start, encoder_hidden_states=hidden).sample.float()
        prediction = skip_start * noisy + out_start * _x0(epsilon, start, noisy, alphas)
        with torch.no_grad(), _autocast(device):
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


def _forget_distillation(out_dir: Path, work_dir: Path, report: dict, log: Log) -> None:
    """A UNet that trains further is a new teacher: the LCM-LoRA distilled from the old one no longer fits it,
    so it is removed (never paired with a UNet it was not distilled from) and the 'lcm' stage starts afresh."""
    stale = [key for key in report if key.startswith("lcm_")]
    lora = out_dir / LORA_WEIGHT_NAME
    if stale or lora.exists():
        for key in stale:
            del report[key]
        lora.unlink(missing_ok=True)
        _Checkpoint(work_dir, "lcm").path.unlink(missing_ok=True)
        log("the UNet trains further: its old LCM-LoRA is removed until the 'lcm' stage distils it again")


def _refuse_to_strand_the_unet(out_dir: Path, work_dir: Path) -> None:
    """More VAE training moves the latent space under a UNet trained in it, which would then draw noise.
    Unlike a stale LCM-LoRA (cheap to distil again), a UNet is hours of work, so it is never removed: the
    new VAE goes into a fresh folder, whose UNet can start from this one (`--unet-from`)."""
    if (out_dir / "unet").exists() or _Checkpoint(work_dir, "unet").path.exists():
        raise MirageError(
            f"{out_dir} holds a UNet trained on its VAE's latents; training that VAE further would leave the "
            f"UNet unusable. Train the new VAE into another --out (and --work) folder, with --unet-from {out_dir} "
            f"to start its UNet from this one")


def train_generator(corpus, encoder, out_dir: Path, work_dir: Path, stages: Sequence[str] = STAGES,
                    steps: dict[str, int] | None = None, device: str = "cpu", log: Log | None = None,
                    config: dict | None = None, unet_from: Path | None = None) -> dict:
    """Run the requested stages in order; returns a report (also written to `training.json`)."""
    from ..splits import split_records

    log = log or (lambda message: None)
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise MirageError(f"unknown stage(s) {sorted(unknown)}: choose from {', '.join(STAGES)}")
    config = config or load_config(out_dir if (out_dir / "config.json").exists() else None)
    if encoder.dim != config["condition_dim"]:
        raise MirageError(f"the generator is conditioned on {config['condition_dim']}-d embeddings; encoder "
                          f"'{encoder.name}' gives {encoder.dim}")
    train_records, _ = split_records(corpus.records)
    if len(train_records) < 8:
        raise MirageError(f"{len(train_records)} training images are too few to train on (need at least 8)")
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch_device = torch.device(device)
    report_path = out_dir / "training.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    totals = {stage: (steps or {}).get(stage) or config["train"][f"{stage}_steps"] for stage in stages}
    if totals.get("vae", 0) > int(report.get("vae_steps") or 0):
        _refuse_to_strand_the_unet(out_dir, work_dir)
    data = prepare_data(train_records, encoder, config["resolution"], work_dir, log)
    report.update({"corpus": corpus.name, "train_images": int(len(data["ids"])),
                   "encoder": encoder.name,
                   "encoder_fingerprint": getattr(encoder, "space_fingerprint", encoder.fingerprint)})
    def record(update: dict) -> None:
        # written with every checkpoint the UNet and LCM stages publish, so that stopping a run at any
        # point leaves weights and report agreeing on how far they were trained
        report.update(update)
        write_json(report_path, report)

    for stage in STAGES:
        if stage in stages:
            total = totals[stage]
            done = int(report.get(f"{stage}_steps") or 0)
            if stage == "vae":  # the VAE publishes its weights only once finished
                result = train_vae(data, config, out_dir, work_dir, total, torch_device, log, done=done)
            elif stage == "unet":
                if total > done:
                    _forget_distillation(out_dir, work_dir, report, log)
                    record({})
                result = train_unet(data, config, out_dir, work_dir, total, torch_device, log, done=done,
                                    progress=record, unet_from=unet_from)
            else:
                result = distill_lcm(data, config, out_dir, work_dir, total, torch_device, log, done=done,
                                     progress=record)
            record({**result, f"{stage}_finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return report

