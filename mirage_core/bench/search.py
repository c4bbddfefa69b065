"""Text → top-10 latency and recall per index backend: the hybrid search the app runs, the joint space alone, and
the original MIRAGE's query path.

The corpus is shaped like MIRAGE's own: `n` rows drawn around the encoder's reference bank (the training
set's image embeddings) with noise, so that queries — the lite text encoder's embeddings of real queries —
have real neighbourhoods, and an approximate index's recall means what it would on a real corpus (on
random vectors every neighbour is a coin toss). Each row gets a real caption (the configured corpus' captions,
repeated) for the words channel, and a meaning vector drawn around the sentence vectors of those captions the
same way. The hybrid path (`search.search_text`) includes every channel: one pass of the query text encoder, the
image and meaning scans, BM25 and the fusion; the dense path is the query encoder and the image scan alone.
Recall@10 (of the dense path) is against a float64 brute force over the same rows and queries, so for the exact
backend it checks that the int8 scan's preselection lost nothing. Latency
includes encoding the query text. For the exact backend the original MIRAGE's path runs in the same process,
interleaved query by query: an open_clip ViT-L-14 text tower (768-d; random weights cost the same time as
trained ones), a float32 product and a full `argsort`.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from . import QUERIES, BenchResult, interleaved, p50_p95, peak_rss_mib


@dataclasses.dataclass
class SearchResult(BenchResult):
    backend: str
    n: int
    repeats: int
    p50_ms: float
    p95_ms: float
    recall_at_10: float
    build_s: float
    rss_mib: float
    threads: int
    encoder: str
    back_to_back_p50_ms: float | None = None  # the same queries, one after another without the other path between
    dense_p50_ms: float | None = None  # the joint space alone (query encoder + image scan), interleaved
    dense_p95_ms: float | None = None
    bytes_per_image: dict | None = None  # what each image costs in memory, by part
    original: dict | None = None
    speedup_p50: float | None = None

    def describe(self) -> str:
        lines = [f"text → top-10 over {self.n:,} vectors, {self.backend} ({self.repeats} queries, "
                 f"{self.threads} threads)",
                 f"  hybrid    p50 {self.p50_ms:8.2f} ms  p95 {self.p95_ms:8.2f} ms  (every channel and the fusion)",
                 f"  dense     p50 {self.dense_p50_ms:8.2f} ms  p95 {self.dense_p95_ms:8.2f} ms  recall@10 "
                 f"{self.recall_at_10:.3f}  build {self.build_s:.1f} s  peak RSS {self.rss_mib:,.0f} MiB"]
        if self.bytes_per_image:
            lines.append("  memory per image: " + ", ".join(f"{k} {v:,.0f} B" for k, v in self.bytes_per_image.items()))
        if self.original:
            lines.append(f"  original  p50 {self.original['p50_ms']:8.2f} ms  p95 {self.original['p95_ms']:8.2f} ms"
                         f"  ({self.original['encoder']})")
            lines.append(f"  speed-up at p50: {self.speedup_p50}×")
        if self.back_to_back_p50_ms is not None:
            original = f", original {self.original['back_to_back_p50_ms']:.2f} ms" if self.original else ""
            lines.append(f"  back to back (each path on its own, warm): hybrid {self.back_to_back_p50_ms:.2f} ms"
                         + original)
        return "\n".join(lines)


def corpus_shaped_rows(n: int, bank: np.ndarray, seed: int = 0, spread: float = 0.03) -> np.ndarray:
    """n unit rows around the bank's rows (each a bank row plus Gaussian noise of `spread` per dimension),
    made in chunks so that only the result is sized by n."""
    rng = np.random.default_rng(seed)
    rows = np.empty((n, bank.shape[1]), dtype=np.float32)
    for start in range(0, n, 65536):
        size = min(65536, n - start)
        chunk = bank[rng.integers(0, len(bank), size)] + spread * rng.standard_normal((size, bank.shape[1]),
                                                                                        dtype=np.float32)
        rows[start : start + size] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return rows


def bench_search(n: int = 65536, repeats: int = 50, backend: str = "exact", encoder=None, baseline: bool = True,
                 database_url: str | None = None, captions: list[str] | None = None) -> SearchResult:
    from ..backends import FaissSearch, PgVectorSearch, upload_index
    from ..corpus import Record
    from ..encoders import create_encoder
    from ..index import Index
    from ..search import search_text

    encoder = encoder or create_encoder("lite")
    bank = getattr(encoder, "reference_bank", None)
    reference = bank["images"] if bank else np.random.default_rng(1).standard_normal((2048, encoder.dim),
                                                                                    dtype=np.float32)
    rows = corpus_shaped_rows(n, np.asarray(reference, dtype=np.float32))
    captions = list(captions or QUERIES)
    records = [Record(id=str(i), image_path="", caption=captions[i % len(captions)]) for i in range(n)]
    sample = captions[:512]
    sentences = corpus_shaped_rows(n, encoder.encode_sentences(sample), seed=2)
    index = Index(rows, rows, records, {"fingerprint": encoder.fingerprint}, sentences=sentences)
    started = time.perf_counter()
    if backend == "faiss":
        index = index.using(FaissSearch.build(index, targets=("images", "sentences")))
    elif backend == "pgvector":
        if not database_url:
            from ..errors import MirageError

            raise MirageError("bench search --backend pgvector needs --database postgresql://…")
        upload_index(index, database_url, f"bench-{n}", targets=("images", "sentences"))
        index = index.using(PgVectorSearch(database_url, f"bench-{n}"))
    index.lexical  # noqa: B018 (built here, so that the build time counts it and the first query does not)
    build_s = time.perf_counter() - started

    vectors = encoder.encode_query(QUERIES)
    found = 0
    for vector in vectors:
        found += len(_brute_force_top_10(rows, vector) & {h.row for h in index.search(vector, 10)})
    recall = found / (10 * len(vectors))

    def query(i: int) -> str:
        return QUERIES[i % len(QUERIES)]

    variants = {"mirage": lambda i: search_text(index, encoder, query(i), 10),  # the app's path
                "dense": lambda i: index.search(encoder.encode_query([query(i)])[0], 10)}
    original = None
    if baseline and backend == "exact":
        variants["original"] = _original_path(n)
    samples = interleaved(variants, repeats)
    p50, p95 = p50_p95(samples["mirage"])
    d50, d95 = p50_p95(samples["dense"])
    # Interleaved, each query starts with caches the other path has just flushed; back to back shows warm ones
    alone = {name: p50_p95(interleaved({name: run}, repeats, warm=1)[name])[0] for name, run in variants.items()}
    if "original" in samples:
        o50, o95 = p50_p95(samples["original"])
        original = {"p50_ms": o50, "p95_ms": o95, "back_to_back_p50_ms": alone["original"],
                    "encoder": "open_clip ViT-L-14 text tower (random weights)",
                    "dim": 768, "search": "float32 matrix–vector product, full argsort"}
    return SearchResult(backend=backend, n=n, repeats=repeats, p50_ms=p50, p95_ms=p95, recall_at_10=round(recall, 4),
                        build_s=round(build_s, 1), rss_mib=round(peak_rss_mib()), threads=torch.get_num_threads(),
                        encoder=encoder.name, back_to_back_p50_ms=alone["mirage"], dense_p50_ms=d50, dense_p95_ms=d95,
                        bytes_per_image=_bytes_per_image(index), original=original,
                        speedup_p50=round(original["p50_ms"] / p50, 1) if original else None)


def _bytes_per_image(index) -> dict:
    """Resident bytes per image of each part of a searched index (the records' own text aside)."""
    n = max(len(index), 1)
    lexical = index.lexical.bm25
    bm25 = sum(array.nbytes for array in lexical.scores.values() if hasattr(array, "nbytes")) if lexical else 0
    parts = {"joint matrices (float32)": index.images.nbytes + index.captions.nbytes,
             "meaning vectors (float32)": index.sentences.nbytes if index.sentences is not None else 0,
             "BM25 postings": bm25}
    if index.backend.name == "exact":  # the int8 copies the scan packs, per target scanned so far
        parts["int8 copies"] = sum(index.matrix(t)[0].shape[1] * n for t in index.backend._scans)
    return {name: round(size / n) for name, size in parts.items()}


def _brute_force_top_10(rows: np.ndarray, vector: np.ndarray) -> set[int]:
    """The true top 10 by float64 cosine, a chunk at a time (a float64 copy of 10⁶ rows would take 2 GB)."""
    from ..backends import top_k

    query = np.asarray(vector, dtype=np.float64).reshape(-1)
    scores = np.concatenate([rows[start : start + 65536].astype(np.float64) @ query
                             for start in range(0, len(rows), 65536)])
    return set(top_k(scores, 10).tolist())


def _original_path(n: int):
    import open_clip

    model = open_clip.create_model("ViT-L-14", pretrained=None).eval()
    model.visual = None  # only the text tower is timed; drop the 300M-parameter image tower
    tokenizer = open_clip.get_tokenizer("ViT-L-14")
    rows = np.random.default_rng(1).standard_normal((n, 768), dtype=np.float32)
    matrix = rows / np.linalg.norm(rows, axis=1, keepdims=True)

    @torch.inference_mode()
    def original(i: int) -> None:
        vector = model.encode_text(tokenizer([QUERIES[i % len(QUERIES)]]))[0].numpy()
        vector = vector / np.linalg.norm(vector)
        np.argsort(-(matrix @ vector))[:10]

    return original
