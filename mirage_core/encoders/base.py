"""The one interface every image–text encoder offers, whatever its architecture."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Texts per forward pass. Attention activations grow with batch × tokens², so a first start's index build peaked
# 574 MiB above the loaded models with 64 captions a batch, 100 MiB with 8 — and 8 was faster too (less padding):
# 2,116 demo captions in 16.9 s against 23.1 s on 2 cores.
MAX_TEXT_BATCH = 8
# neighbours whose mean similarity measures a row's hubness (see `hubness`)
HUB_K = 20


class Encoder(ABC):
    """Maps texts and images into one space: L2-normalised float32 rows of width `dim`.

    `fingerprint` identifies the exact weights, so an index can refuse to be searched by another model.
    `reference_bank`, when the encoder ships one, lets the index correct for hubness (see `index.py`).
    `training_ids`: the records it was trained on, which no held-out figure may count as unseen.
    `preprocess` turns a PIL image into the tensor `encode_pixels` expects; index building runs it in
    loader workers, everything else calls `encode_image`.
    `encode_sentences` gives a text's meaning vector from the encoder's sentence model (`sentence_model`; None when
    it has none): what hybrid search compares a query with the captions by, text to text.
    """

    name: str
    dim: int
    fingerprint: str
    reference_bank: dict[str, np.ndarray] | None = None  # training embeddings {"images", "captions"}
    training_ids: frozenset[str] = frozenset()
    sentence_model: str | None = None

    @abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor: ...

    @abstractmethod
    def _text_features(self, texts: list[str]) -> torch.Tensor: ...

    @abstractmethod
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray: ...

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], query: bool = False) -> np.ndarray:
        """Unit embeddings of texts. `query=True` marks a user's query rather than corpus text: an encoder may
        answer it by a faster path of its own (see `encode_query`)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._finish(normalise_rows(in_batches(texts, self._query_features if query else self._text_features)),
                            "text")

    def encode_sentences(self, texts: Sequence[str], query: bool = False) -> np.ndarray:
        """Unit meaning vectors of texts from the encoder's sentence model."""
        from ..errors import MirageError

        raise MirageError(f"the encoder {self.name} has no sentence model")

    def encode_captions(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Corpus captions' joint-space embeddings and meaning vectors (None without a sentence model; an encoder
        may make both in one pass)."""
        return self.encode_text(texts), self.encode_sentences(texts) if self.sentence_model else None

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of query texts (what a user types), which search the corpus' embeddings."""
        return self.encode_text(texts, query=True)

    def _query_features(self, texts: list[str]) -> torch.Tensor:
        return self._text_features(texts)

    def _finish(self, rows: np.ndarray, modality: str) -> np.ndarray:
        """Last step for both modalities (identity here); an encoder may refine its unit rows."""
        return rows

    @torch.inference_mode()
    def encode_image(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(torch.stack([self.preprocess(image) for image in images]))


@torch.inference_mode()
def in_batches(texts: list[str], features) -> np.ndarray:
    """features(batch) → rows for every text, in batches of similar length (less padding), in the texts' order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    ordered = [texts[i] for i in order]
    chunks = [features(ordered[i : i + MAX_TEXT_BATCH]) for i in range(0, len(ordered), MAX_TEXT_BATCH)]
    stacked = torch.cat([torch.as_tensor(chunk) for chunk in chunks]).float().cpu().numpy()
    rows = np.empty_like(stacked)
    rows[order] = stacked
    return rows


def normalise_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return np.ascontiguousarray(rows / np.maximum(norms, 1e-12), dtype=np.float32)


def fingerprint_of(name: str, config: dict, files: Sequence[Path] = ()) -> str:
    """A short hash of the profile, its config and the bytes of its weight files."""
    digest = hashlib.sha256(name.encode())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def hubness(vectors: np.ndarray, bank: np.ndarray | None, k: int = HUB_K) -> np.ndarray:
    """Mean cosine of each vector to its k nearest bank rows (zeros without a bank)."""
    if bank is None or not len(bank):
        return np.zeros(len(vectors), dtype=np.float32)
    k = min(k, len(bank))
    result = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), 4096):  # bounded memory for large corpora
        scores = vectors[start : start + 4096] @ bank.T
        result[start : start + 4096] = np.partition(scores, len(bank) - k, axis=1)[:, -k:].mean(1)
    return result
