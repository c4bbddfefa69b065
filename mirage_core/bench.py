"""`mirage bench`: the speed figures quoted in issues and model cards, measured the same way every time.

* `bench_search`: text → top-10 (query encoding + exact search) over N vectors, p50/p95 in ms, for
  MIRAGE's lite path (`Index.search`) and, in the same run, the original MIRAGE's path: an open_clip
  ViT-L-14 text tower (768-d outputs; random weights cost the same time as trained ones), a float32
  product and a full `argsort` of the scores.
* `bench_build`: index building throughput (decode + preprocess + both encoders) in images per second.
* `bench_quiz`: quiz questions generated per second and the share of candidates that validation rejects,
  per difficulty.
* `bench_startup`: what a dashboard user waits for — a fresh process importing Streamlit and MIRAGE, loading
  the encoder and a built index, up to the first retrieval result; then warm text searches and dual
  searches; and the process' peak resident memory.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .corpus import Corpus
from .index import SEARCH_METHOD, Index, build_index, top_k

QUERIES = [
    "chest x-ray pneumothorax", "axial CT of the abdomen showing a liver lesion", "MRI brain T2 hyperintensity",
    "ultrasound of the gallbladder with stones", "coronary angiography stenosis", "pelvic fracture radiograph",
    "pacemaker generator and leads", "mammography spiculated mass", "PET-CT uptake in lymph nodes",
    "sagittal MRI of the lumbar spine disc herniation",
]


def _timings(run: Callable[[str], None], repeats: int) -> dict:
    for query in QUERIES[:3]:
        run(query)
    samples = []
    for i in range(repeats):
        started = time.perf_counter()
        run(QUERIES[i % len(QUERIES)])
        samples.append((time.perf_counter() - started) * 1000)
    p50, p95 = np.percentile(samples, [50, 95])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2)}


def _random_unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def bench_search(n: int = 65536, repeats: int = 50, encoder=None, baseline: bool = True) -> dict:
    """p50/p95 of text → top-10 at n vectors, MIRAGE's lite path and the original's, in one run."""
    from .corpus import Record
    from .encoders import create_encoder

    torch.set_num_threads(max(1, torch.get_num_threads()))
    encoder = encoder or create_encoder("lite")
    rows = _random_unit_rows(n, encoder.dim, seed=0)
    records = [Record(id=str(i), image_path="", caption="") for i in range(n)]
    index = Index(rows, rows, records, {"fingerprint": encoder.fingerprint})

    def ours(query: str) -> None:
        index.search(encoder.encode_text([query])[0], k=10)

    result = {"n": n, "repeats": repeats, "threads": torch.get_num_threads(),
              "mirage": {"encoder": encoder.name, "dim": encoder.dim, "search": SEARCH_METHOD,
                         **_timings(ours, repeats)}}
    if baseline:
        result["original"] = _bench_original(n, repeats)
        result["speedup_p50"] = round(result["original"]["p50_ms"] / result["mirage"]["p50_ms"], 1)
    return result


def _bench_original(n: int, repeats: int) -> dict:
    import open_clip

    model = open_clip.create_model("ViT-L-14", pretrained=None).eval()
    model.visual = None  # only the text tower is timed; drop the 300M-parameter image tower
    tokenizer = open_clip.get_tokenizer("ViT-L-14")
    matrix = _random_unit_rows(n, 768, seed=1)

    @torch.inference_mode()
    def original(query: str) -> None:
        vector = model.encode_text(tokenizer([query]))[0].numpy()
        vector = vector / np.linalg.norm(vector)
        np.argsort(-(matrix @ vector))[:10]

    return {"encoder": "open_clip ViT-L-14 text tower (random weights)", "dim": 768,
            "search": "float32 matrix–vector product, full argsort",
            **_timings(original, repeats)}


def bench_build(corpus: Corpus, n: int = 256, encoder=None) -> dict:
    """Images per second for building an index of the first n records (decode, preprocess, encode)."""
    from .encoders import create_encoder

    encoder = encoder or create_encoder("lite")
    subset = Corpus(corpus.name, corpus.records[:n], corpus.skipped)
    build_index(Corpus(corpus.name, corpus.records[:8]), encoder)  # warm-up: first-call allocations
    started = time.perf_counter()
    index = build_index(subset, encoder)
    seconds = time.perf_counter() - started
    return {"images": len(index), "seconds": round(seconds, 2), "images_per_s": round(len(index) / seconds, 1),
            "encoder": encoder.name, "threads": torch.get_num_threads()}


_STARTUP_PROBE = """
import json, sys, time
started = time.perf_counter()
import streamlit  # noqa: F401  (the app imports it before anything else)
from mirage_core.arithmetic import Term, dual_search
from mirage_core.config import load_settings
from mirage_core.encoders import create_encoder
from mirage_core.index import load_index
from mirage_core.bench import peak_rss_mib, resident_split_mib
from mirage_core.search import search_text
settings = load_settings()
encoder = create_encoder(settings.encoder, settings.device)
index = load_index(settings.index_dir(encoder.fingerprint), encoder)
search_text(index, encoder, "chest x-ray pneumothorax", 12)
cold = time.perf_counter() - started
def timed(run, n=20):
    samples = []
    for i in range(n):
        t = time.perf_counter(); run(i); samples.append((time.perf_counter() - t) * 1000)
    return sorted(samples)[n // 2]
queries = sys.argv[1:]
text_ms = timed(lambda i: search_text(index, encoder, queries[i % len(queries)], 12))
dual_ms = timed(lambda i: dual_search(index, encoder, Term(queries[i % len(queries)]), [Term("bones")],
                                      [Term("soft tissue")], k=8))
print(json.dumps({"cold_start_to_first_result_s": round(cold, 2), "warm_text_search_p50_ms": round(text_ms, 1),
                  "warm_dual_search_p50_ms": round(dual_ms, 1), "images": len(index),
                  "peak_rss_mb": round(peak_rss_mib()),
                  "resident_now_mb": resident_split_mib()}))
"""


def bench_startup(settings) -> dict:
    """Cold start to first result in a fresh process (index already built), warm latencies, peak RSS."""
    import dataclasses
    import json
    import os
    import subprocess
    import sys

    from .encoders import create_encoder
    from .index import open_or_build_index

    encoder = create_encoder(settings.encoder, settings.device)
    open_or_build_index(settings.index_dir(encoder.fingerprint), encoder, settings.load_corpus)
    del encoder
    env = {**os.environ, **{f"MIRAGE_{k.upper()}": str(v) for k, v in dataclasses.asdict(settings).items()}}
    done = subprocess.run([sys.executable, "-c", _STARTUP_PROBE, *QUERIES], capture_output=True, text=True,
                          check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_quiz(index: Index, encoder, n: int = 250, seed: int = 0) -> dict:
    from .quiz import KINDS, QuestionGenerator

    result = {"n": n, "images": len(index)}
    for difficulty in ("easy", "medium", "hard"):
        generator = QuestionGenerator(index, encoder, seed=seed)
        started = time.perf_counter()
        generator.questions(n, KINDS, difficulty)
        seconds = time.perf_counter() - started
        result[difficulty] = {"ms_per_question": round(1000 * seconds / n, 2),
                              "rejected_share": round(generator.rejected_share, 3),
                              "attempts": generator.attempts}
    return result


def bench_report(index: Index, encoder, settings, n: int = 50, with_llm: bool = True, llm_reports: int = 3) -> dict:
    """Modality agreement of grounded reports on held-out captions, report latency, LLM load and speed.

    Each of the first n held-out records with a known modality queries the index with its caption, its own
    article left out; the report's modality is compared with the record's label."""
    from .reports import grounded_report
    from .splits import split_records

    _, heldout = split_records(index.records)
    cases = [r for r in heldout if r.modality != "unknown"][:n]
    agree = uncertain = 0
    samples, reports = [], []
    for record in cases:
        same_article = [i for i, other in enumerate(index.records) if other.pmc_id == record.pmc_id]
        started = time.perf_counter()
        report = grounded_report(index, encoder, record.caption, exclude=same_article)
        samples.append((time.perf_counter() - started) * 1000)
        agree += report.modality_label == record.modality
        uncertain += report.modality_label == "unknown"
        reports.append(report)
    result = {"n": len(cases), "modality_agreement": round(agree / max(len(cases), 1), 3),
              "modality_uncertain": round(uncertain / max(len(cases), 1), 3),
              "report_ms_p50": round(float(np.percentile(samples, 50)), 1)}
    if with_llm:
        from .llm import create_llm, enrich_report

        llm = create_llm(settings.llm, Path(settings.home) / "llm", settings.device)
        result["llm"] = settings.llm
        result["llm_load_s"] = round(llm.load_seconds, 2)
        runs = []
        for report in reports[:llm_reports]:
            started = time.perf_counter()
            enrichment = enrich_report(llm, report)
            runs.append((time.perf_counter() - started, enrichment))
        generations = [e.generation for _, e in runs if e.generation]
        tokens = sum(g.new_tokens for g in generations)
        result["llm_tokens_per_s"] = round(tokens / max(sum(g.seconds for g in generations), 1e-9), 2)
        with_llm = float(np.mean([s for s, _ in runs])) + result["report_ms_p50"] / 1000
        result["report_with_llm_s_mean"] = round(with_llm, 2)
        result["llm_accepted"] = sum(e.accepted for _, e in runs)
        result["llm_reports"] = len(runs)
    return result


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


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resident_split_mib() -> dict:
    """This process's resident memory now, split (Linux; empty elsewhere): `anonymous` is its own data and
    varies only with the code; `file_backed` is mapped libraries and files, shared with the page cache, so the
    same code shows more or less of it depending on what the cache holds (a freshly installed torch: ~250 MB
    more). The peak RSS figures include both."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    except OSError:
        return {}
    fields = {"anonymous": "RssAnon", "file_backed": "RssFile"}
    return {name: round(int(status[key].split()[0]) / 1024) for name, key in fields.items() if key in status}


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


def bench_generate(encoder, settings, n: int = 8, repeats: int = 3, fidelity: int = 100,
                   grid_path=None) -> dict:
    """Lite LCM (4 steps) vs the undistilled model (DDIM 25 and 50 steps, guidance 3), per image; fidelity
    of both on held-out captions; the same step timings for an SD-1.5-shaped UNet at 512 px; peak memory.

    Fidelity: each held-out caption with a known modality prompts one image per sampler; the encoder embeds
    the unmarked image, and it counts as right when its 10 nearest reference images mostly have the
    caption's modality. Two references: the training images as the generator learnt them (64 px grayscale
    centre squares: the model's own domain, so resolution and colour do not count against it) and the full-
    size corpus index. Each is also applied to the real held-out images, at 64 px and full size, which gives
    the yardstick's own ceiling.
    """
    from PIL import Image

    from .generation import GenerationRequest, LiteGenerator
    from .generation.training import prepare_data, square_grayscale
    from .images import open_image
    from .index import open_or_build_index
    from .splits import split_records

    generator = LiteGenerator(encoder)
    settings_for = {"lcm-4": ("lcm", 4, 1.0), "ddim-25": ("ddim", 25, 3.0), "ddim-50": ("ddim", 50, 3.0)}
    prompt = "chest x-ray"
    result: dict = {"images_per_run": n}
    for name, (sampler, steps, guidance) in settings_for.items():
        generator.generate(GenerationRequest(prompt, n=1, steps=steps, guidance=guidance, sampler=sampler))  # warm
        runs = []
        for repeat in range(repeats):
            started = time.perf_counter()
            generator.generate(GenerationRequest(prompt, n=n, steps=steps, guidance=guidance, sampler=sampler,
                                                 seed=repeat * n))
            runs.append((time.perf_counter() - started) / n)
        result[name] = {"s_per_image": round(float(np.median(runs)), 3), "steps": steps, "guidance": guidance}
    result["speedup_vs_ddim_25"] = round(result["ddim-25"]["s_per_image"] / result["lcm-4"]["s_per_image"], 1)
    result["speedup_vs_ddim_50"] = round(result["ddim-50"]["s_per_image"] / result["lcm-4"]["s_per_image"], 1)
    result["peak_rss_lite_mib"] = round(peak_rss_mib())  # the lite encoder and generator, sampling
    result["resident_now_lite_mib"] = resident_split_mib()

    index = open_or_build_index(settings.index_dir(encoder.fingerprint), encoder, settings.load_corpus)
    train, heldout = split_records(index.records)
    side = generator.config["resolution"]
    learnt = prepare_data(train, encoder, side, settings.generator_work_dir(), lambda message: None)
    modality_of = {r.id: r.modality for r in train}
    learnt_vectors = np.concatenate([
        encoder.encode_image([Image.fromarray(p) for p in learnt["pixels"][i : i + 16]])
        for i in range(0, len(learnt["pixels"]), 16)])
    yardsticks = {"generator's domain": ModalityYardstick(learnt_vectors, [modality_of[i] for i in learnt["ids"]]),
                  "full-size corpus": ModalityYardstick(index.images, [r.modality for r in index.records])}
    cases = [r for r in heldout if r.modality != "unknown"][:fidelity]
    hits = {name: dict.fromkeys(("lcm-4", "ddim-25", "real image at 64 px", "real image"), 0) for name in yardsticks}
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
        vectors = dict(zip(images, encoder.encode_image(list(images.values())), strict=True))
        for yardstick_name, yardstick in yardsticks.items():
            exclude = own_article if yardstick_name == "full-size corpus" else None
            for name, vector in vectors.items():
                hits[yardstick_name][name] += yardstick(vector, exclude) == record.modality
    result["fidelity_n"] = len(cases)
    result["fidelity_modality"] = {
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
    result["grid"] = str(grid_path)
    result["grid_columns"] = "held-out real image | lite LCM 4 steps | lite DDIM 25 steps (its caption as prompt)"
    result["sd15_512px"] = _bench_sd15()
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


def describe(result: dict) -> str:
    if "lcm-4" in result or "modality_agreement" in result:
        return "\n".join(f"{key}: {value}" for key, value in result.items())
    if "easy" in result and "hard" in result:
        return "\n".join([f"{result['n']} questions per difficulty from {result['images']} images"] + [
            f"  {d:6s} {result[d]['ms_per_question']:6.2f} ms/question, {100 * result[d]['rejected_share']:.1f} % of "
            f"{result[d]['attempts']} candidates rejected" for d in ("easy", "medium", "hard")])
    if "cold_start_to_first_result_s" in result:
        return "\n".join(f"{key}: {value}" for key, value in result.items())
    if "images_per_s" in result:
        return f"built {result['images']} images in {result['seconds']} s: {result['images_per_s']} images/s"
    lines = [f"text → top-10 over {result['n']:,} vectors ({result['repeats']} queries)"]
    for key in ("mirage", "original"):
        if key in result:
            part = result[key]
            lines.append(f"  {key:8s} p50 {part['p50_ms']:8.2f} ms  p95 {part['p95_ms']:8.2f} ms  "
                         f"({part['encoder']}; {part['search']})")
    if "speedup_p50" in result:
        lines.append(f"  speed-up at p50: {result['speedup_p50']}×")
    return "\n".join(lines)

