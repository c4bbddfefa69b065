"""Generation: the lite model's LCM (4 steps) against its undistilled sampler (DDIM 25 and 50 steps),
interleaved; fidelity on held-out captions; Stable Diffusion 1.5's shapes at 512 px; peak memory."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..backends import top_k
from . import BenchResult, interleaved, peak_rss_mib, resident_split_mib


@dataclasses.dataclass
class GenerateResult(BenchResult):
    images_per_run: int
    samplers: dict
    speedup_vs_ddim_25: float
    speedup_vs_ddim_50: float
    peak_rss_lite_mib: float
    resident_now_lite_mib: dict
    fidelity_n: int = 0
    fidelity_modality: dict = dataclasses.field(default_factory=dict)
    grid: str = ""
    grid_columns: str = ""
    sd15_512px: dict = dataclasses.field(default_factory=dict)


SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "cross_attention_dim": 768,
    "block_out_channels": [320, 640, 1280, 1280], "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "sample_size": 512,
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}


class ModalityYardstick:
    """The majority known modality among an image embedding's k nearest reference embeddings."""

    def __init__(self, vectors: np.ndarray, modalities, k: int = 10):
        self.vectors, self.modalities, self.k = vectors, np.asarray(modalities), k

    def __call__(self, vector: np.ndarray, exclude: np.ndarray | None = None) -> str:
        scores = self.vectors @ vector
        if exclude is not None:
            scores = np.where(exclude, -np.inf, scores)
        votes = Counter(m for m in self.modalities[top_k(scores, self.k)] if m != "unknown")
        return votes.most_common(1)[0][0] if votes else "unknown"


class PixelModalityClassifier:
    """An independent yardstick: a small CNN trained from scratch on the real training images' pixels (64 px
    grayscale, as the generator sees them) to tell their modality. It never sees the encoder the generator is
    conditioned on, so a sample that fools the encoder's neighbourhood does not fool it for that reason."""

    def __init__(self, pixels: np.ndarray, labels, epochs: int = 30, seed: int = 0):
        from torch import nn

        known = np.array([label != "unknown" for label in labels])
        self.classes = sorted({label for label in labels if label != "unknown"})
        targets = torch.tensor([self.classes.index(label) for label in np.asarray(labels)[known]])
        inputs = self._tensor(pixels[known])
        torch.manual_seed(seed)

        def block(n_in: int, n_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(n_in, n_out, 3, padding=1), nn.BatchNorm2d(n_out), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.model = nn.Sequential(block(1, 16), block(16, 32), block(32, 64), block(64, 96),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3),
                                   nn.Linear(96, len(self.classes)))
        optimiser = torch.optim.AdamW(self.model.parameters(), lr=3e-3, weight_decay=1e-3)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=epochs * (len(inputs) // 64 + 1))
        # classes are unbalanced (CT and X-ray dominate): weight each by its inverse frequency
        weights = 1.0 / torch.bincount(targets, minlength=len(self.classes)).clamp(min=1).float()
        loss_of = nn.CrossEntropyLoss(weight=weights / weights.mean())
        generator = torch.Generator().manual_seed(seed)
        self.model.train()
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(inputs), 64):
                batch = inputs[order[start:start + 64]]
                if torch.rand(1, generator=generator) < 0.5:
                    batch = batch.flip(-1)  # left and right are not what tells a modality
                loss = loss_of(self.model(batch), targets[order[start:start + 64]])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        self.model.eval()

    @staticmethod
    def _tensor(pixels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 127.5 - 1.0).unsqueeze(1)

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray) -> list[str]:
        """The modality of each 64 px grayscale image (uint8, [N, side, side])."""
        return [self.classes[i] for i in self.model(self._tensor(pixels)).argmax(1).tolist()]


def bench_generate(encoder, settings, n: int = 8, repeats: int = 3, fidelity: int = 100,
                   grid_path=None) -> GenerateResult:
    """Lite LCM (4 steps) vs the undistilled model (DDIM 25 and 50 steps, guidance 3), per image; fidelity
    of both on held-out captions; the same step timings for an SD-1.5-shaped UNet at 512 px; peak memory.

    Fidelity: each held-out caption with a known modality prompts one image per sampler; the encoder embeds
    the unmarked image, and it counts as right when its 10 nearest reference images mostly have the
    caption's modality. Two references: the training images as the generator learnt them (64 px grayscale
    centre squares: the model's own domain, so resolution and colour do not count against it) and the full-
    size corpus index. Each is also applied to the real held-out images, at 64 px and full size, which gives
    the yardstick's own ceiling. A third yardstick is independent of the encoder: `PixelModalityClassifier`,
    trained on the training images' pixels only.
    """
    from PIL import Image

    from ..generation import GenerationRequest, LiteGenerator
    from ..generation.training import prepare_data, square_grayscale
    from ..images import open_image
    from ..splits import split_records
    from ..startup import open_or_build_index

    generator = LiteGenerator(encoder)
    settings_for = {"lcm-4": ("lcm", 4, 1.0), "ddim-25": ("ddim", 25, 3.0), "ddim-50": ("ddim", 50, 3.0)}
    prompt = "chest x-ray"
    def run(name: str):
        sampler, steps, guidance = settings_for[name]
        return lambda i: generator.generate(GenerationRequest(prompt, n=n, steps=steps, guidance=guidance,
                                                              sampler=sampler, seed=i * n))

    samples = interleaved({name: run(name) for name in settings_for}, repeats, warm=1)  # A B C A B C …
    samplers = {name: {"s_per_image": round(float(np.median(samples[name])) / 1000 / n, 3), "steps": steps,
                       "guidance": guidance} for name, (_, steps, guidance) in settings_for.items()}
    lcm = samplers["lcm-4"]["s_per_image"]
    result = GenerateResult(
        images_per_run=n, samplers=samplers,
        speedup_vs_ddim_25=round(samplers["ddim-25"]["s_per_image"] / lcm, 1),
        speedup_vs_ddim_50=round(samplers["ddim-50"]["s_per_image"] / lcm, 1),
        peak_rss_lite_mib=round(peak_rss_mib()), resident_now_lite_mib=resident_split_mib())

    index = open_or_build_index(settings.index_dir(encoder.fingerprint), encoder, settings.load_corpus,
                                backend=settings.index)
    train, heldout = split_records(index.records)
    side = generator.config["resolution"]
    learnt = prepare_data(train, encoder, side, settings.generator_work_dir(), lambda message: None)
    modality_of = {r.id: r.modality for r in train}
    learnt_vectors = np.concatenate([
        encoder.encode_image([Image.fromarray(p) for p in learnt["pixels"][i : i + 16]])
        for i in range(0, len(learnt["pixels"]), 16)])
    yardsticks = {"generator's domain": ModalityYardstick(learnt_vectors, [modality_of[i] for i in learnt["ids"]]),
                  "full-size corpus": ModalityYardstick(index.images, [r.modality for r in index.records])}
    pixel_yardstick = PixelModalityClassifier(learnt["pixels"], [modality_of[i] for i in learnt["ids"]])
    cases = [r for r in heldout if r.modality != "unknown"][:fidelity]
    hits = {name: dict.fromkeys(("lcm-4", "ddim-25", "real image at 64 px", "real image"), 0) for name in yardsticks}
    independent = dict.fromkeys(("lcm-4", "ddim-25", "real image at 64 px"), 0)
    rows = []
    for i, record in enumerate(cases):
        own_article = np.array([other.pmc_id == record.pmc_id for other in index.records])
        small = Image.fromarray(square_grayscale(record.image_path, side))
        images = {"real image at 64 px": small, "real image": open_image(record.image_path)}
        marked = []
        for name in ("lcm-4", "ddim-25"):
            sampler, steps, guidance = settings_for[name]
            synthetic = generator.generate(GenerationRequest(record.caption[:300], n=1, steps=steps,
                                                             guidance=guidance, sampler=sampler, seed=i))[0]
            images[name] = synthetic.native  # the red mark would sway the encoder
            marked.append(synthetic.image)
        rows.append((record, marked))
        small_pixels = {name: np.asarray(images[name].convert("L").resize((side, side))) for name in independent}
        for name, label in zip(small_pixels, pixel_yardstick(np.stack(list(small_pixels.values()))), strict=True):
            independent[name] += label == record.modality
        vectors = dict(zip(images, encoder.encode_image(list(images.values())), strict=True))
        for yardstick_name, yardstick in yardsticks.items():
            exclude = own_article if yardstick_name == "full-size corpus" else None
            for name, vector in vectors.items():
                hits[yardstick_name][name] += yardstick(vector, exclude) == record.modality
    result.fidelity_n = len(cases)
    hits["independent pixel classifier"] = independent
    result.fidelity_modality = {
        yardstick: {name: round(count / max(len(cases), 1), 3) for name, count in counts.items()}
        for yardstick, counts in hits.items()}

    side = 128
    grid = Image.new("RGB", (side * 3, side * min(len(rows), 8)), "white")
    for r, (record, images) in enumerate(rows[:8]):
        real = open_image(record.image_path).convert("RGB")
        grid.paste(real.resize((side, side)), (0, r * side))
        for c, image in enumerate(images, 1):
            grid.paste(image.resize((side, side)), (c * side, r * side))
    grid_path = Path(grid_path) if grid_path else Path(settings.home) / "bench" / "generation-samples.png"
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(grid_path)
    result.grid = str(grid_path)
    result.grid_columns = "held-out real image | lite LCM 4 steps | lite DDIM 25 steps (its caption as prompt)"
    result.sd15_512px = _bench_sd15()
    return result


@torch.inference_mode()
def _bench_sd15(measured_steps: int = 2) -> dict:
    """Per-step UNet time (batch 1 = no guidance, batch 2 = classifier-free guidance) and VAE decode time of
    Stable Diffusion 1.5's shapes at 512 px, random weights; totals for 4-step LCM and 25/50-step sampling."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel(**SD15_UNET).eval()
    vae = AutoencoderKL(**SD15_VAE).eval()
    text = torch.randn(2, 77, 768)

    def step_time(batch: int) -> float:
        latents = torch.randn(batch, 4, 64, 64)
        unet(latents, 999, encoder_hidden_states=text[:batch])  # warm
        started = time.perf_counter()
        for _ in range(measured_steps):
            unet(latents, 500, encoder_hidden_states=text[:batch])
        return (time.perf_counter() - started) / measured_steps

    single, guided = step_time(1), step_time(2)
    started = time.perf_counter()
    vae.decode(torch.randn(1, 4, 64, 64))
    decode = time.perf_counter() - started
    lcm = 4 * single + decode
    return {"unet_params_m": round(sum(p.numel() for p in unet.parameters()) / 1e6),
            "unet_step_s": round(single, 2), "unet_step_guided_s": round(guided, 2), "vae_decode_s": round(decode, 2),
            "lcm_4_s_per_image": round(lcm, 1), "ddim_25_s_per_image": round(25 * guided + decode, 1),
            "ddim_50_s_per_image": round(50 * guided + decode, 1),
            "speedup_vs_25": round((25 * guided + decode) / lcm, 1), "measured_steps": measured_steps}


@dataclasses.dataclass
class SizesResult(BenchResult):
    """One lite generator's sizes side by side (`mirage bench generate --sizes`)."""

    folder: str
    models: dict  # "<side> px" → LCM-4 seconds per image, fidelity per yardstick, detail
    fidelity_n: int
    ceilings: dict  # the yardsticks on the real held-out images at each size
    grid: str = ""
    grid_columns: str = ""


def _detail(pixels: np.ndarray) -> float:
    """Mean absolute Laplacian of 128 px grayscale images (uint8 [N, 128, 128]): how much fine structure."""
    x = pixels.astype(np.float32)
    laplacian = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return float(np.abs(laplacian).mean())


def bench_sizes(encoder, settings, folder=None, fidelity: int = 100, repeats: int = 5, grid_path=None) -> SizesResult:
    """A lite generator at each size it draws (a grown one: its own and its source's, from the same latents),
    interleaved: LCM-4 seconds per image (A B A B …, medians); modality fidelity on the first `fidelity` held-out
    captions with a known modality, by the independent pixel classifier (every image judged at 64 px: what it
    shows, not its detail) and by the encoder's 10 nearest full-size corpus images (the image at its own size, its
    own article left out); and detail, the mean absolute Laplacian at 128 px (smaller images enlarged bicubically)
    as a share of the real images'. A sample grid, each image at its native size."""
    from PIL import Image

    from ..generation import GenerationRequest, LiteGenerator
    from ..generation.pipelines import LITE_WEIGHTS
    from ..generation.training import square_grayscale
    from ..generation.training.grow import paired_pixels
    from ..images import open_image
    from ..splits import split_records
    from ..startup import open_or_build_index

    folder = Path(folder or LITE_WEIGHTS)
    generator = LiteGenerator(encoder, folder)
    sizes = {f"{side} px": side for side in generator.sizes}

    def lcm4(side: int):
        return lambda i: generator.generate(GenerationRequest("chest x-ray", n=4, steps=4, guidance=1.0,
                                                              sampler="lcm", seed=i * 4, size=side))

    timings = interleaved({name: lcm4(side) for name, side in sizes.items()}, repeats, warm=1)
    index = open_or_build_index(settings.index_dir(encoder.fingerprint), encoder, settings.load_corpus,
                                backend=settings.index)
    train, heldout = split_records(index.records)
    modality_of = {r.id: r.modality for r in train}
    small, _ = paired_pixels(train, 64, 128, settings.generator_work_dir(), lambda message: None)
    classifier = PixelModalityClassifier(small["pixels"], [modality_of[i] for i in small["ids"]])
    corpus = ModalityYardstick(index.images, [r.modality for r in index.records])
    cases = [r for r in heldout if r.modality != "unknown"][:fidelity]
    kinds = [*sizes, "real image at 64 px", "real image at 128 px"]
    pixel_hits, encoder_hits = dict.fromkeys(kinds, 0), dict.fromkeys(kinds, 0)
    detail = {kind: [] for kind in kinds}
    rows = []
    for i, record in enumerate(cases):
        images = {name: generator.generate(GenerationRequest(record.caption[:300], n=1, steps=4, guidance=1.0,
                                                             sampler="lcm", seed=i, size=side))[0].native
                  for name, side in sizes.items()}  # unmarked: the red band would sway the yardsticks
        images["real image at 64 px"] = Image.fromarray(square_grayscale(record.image_path, 64))
        images["real image at 128 px"] = Image.fromarray(square_grayscale(record.image_path, 128))
        rows.append((record, {name: images[name] for name in sizes}))
        own_article = np.array([other.pmc_id == record.pmc_id for other in index.records])
        judged = np.stack([np.asarray(image.convert("L").resize((64, 64), Image.Resampling.BICUBIC))
                           for image in images.values()])
        vectors = encoder.encode_image(list(images.values()))
        for kind, label, vector, image in zip(images, classifier(judged), vectors, images.values(), strict=True):
            pixel_hits[kind] += label == record.modality
            encoder_hits[kind] += corpus(vector, own_article) == record.modality
            detail[kind].append(np.asarray(image.convert("L").resize((128, 128), Image.Resampling.BICUBIC)))
    real_detail = _detail(np.stack(detail["real image at 128 px"])) if cases else 1.0
    count = max(len(cases), 1)
    figures = {kind: {"pixel classifier": round(pixel_hits[kind] / count, 3),
                      "encoder, full-size corpus": round(encoder_hits[kind] / count, 3),
                      "detail vs real 128 px": (round(_detail(np.stack(detail[kind])) / real_detail, 3)
                                                if cases else None)}
               for kind in kinds}
    models = {name: {"lcm4_s_per_image": round(float(np.median(timings[name])) / 1000 / 4, 3), **figures[name]}
              for name in sizes}
    side = 128
    grid = Image.new("RGB", (side * (1 + len(sizes)), side * min(len(rows), 8)), "white")
    for r, (record, drawn) in enumerate(rows[:8]):
        grid.paste(open_image(record.image_path).convert("RGB").resize((side, side)), (0, r * side))
        for c, image in enumerate(drawn.values(), 1):  # each at its native size, top left of its cell
            grid.paste(image.convert("RGB"), (c * side, r * side))
    grid_path = Path(grid_path) if grid_path else Path(settings.home) / "bench" / "generation-sizes.png"
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(grid_path)
    return SizesResult(folder=str(folder), models=models, fidelity_n=len(cases),
                       ceilings={kind: figures[kind] for kind in kinds if kind not in sizes}, grid=str(grid_path),
                       grid_columns="held-out real image (128 px) | " + " | ".join(
                           f"{name}, LCM 4 steps, native size" for name in sizes))
