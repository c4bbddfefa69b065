"""Index building throughput: decode, preprocess and both encoders, in images per second."""

from __future__ import annotations

import dataclasses
import time

import torch

from ..corpus import Corpus
from ..index import build_index
from . import BenchResult


@dataclasses.dataclass
class BuildResult(BenchResult):
    images: int
    seconds: float
    images_per_s: float
    encoder: str
    threads: int
    peak_rss_mib: float

    def describe(self) -> str:
        return (f"built {self.images} images in {self.seconds} s: {self.images_per_s} images/s "
                f"(peak RSS {self.peak_rss_mib:,.0f} MiB)")


def bench_build(corpus: Corpus, n: int = 256, encoder=None) -> BuildResult:
    """Images per second for building an index of the first n records (decode, preprocess, encode)."""
    from ..encoders import create_encoder
    from . import peak_rss_mib

    encoder = encoder or create_encoder("lite")
    subset = Corpus(corpus.name, corpus.records[:n], corpus.skipped)
    build_index(Corpus(corpus.name, corpus.records[:8]), encoder)  # warm-up: first-call allocations
    started = time.perf_counter()
    index = build_index(subset, encoder)
    seconds = time.perf_counter() - started
    return BuildResult(images=len(index), seconds=round(seconds, 2), images_per_s=round(len(index) / seconds, 1),
                       encoder=encoder.name, threads=torch.get_num_threads(), peak_rss_mib=round(peak_rss_mib()))
