"""`mirage bench …`: the figures quoted in issues and model cards, measured the same way every time.

One module per benchmark — `search` (latency and recall per index backend, beside the original MIRAGE's
path), `build` (index throughput), `startup` (a fresh process to its first result), `quiz`, `report`,
`generate` (LCM against DDIM), `tour` (a first start and every page, peak memory) and `load` (concurrent
sessions). Each returns a `BenchResult`: a dataclass whose fields are the figures, which prints itself
(`describe`) or becomes JSON (`to_dict`). This machine is shared and noisy, so benchmarks that compare
variants interleave them (A B A B …, `interleaved`) and report medians.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

QUERIES = [
    "chest x-ray pneumothorax", "axial CT of the abdomen showing a liver lesion", "MRI brain T2 hyperintensity",
    "ultrasound of the gallbladder with stones", "coronary angiography stenosis", "pelvic fracture radiograph",
    "pacemaker generator and leads", "mammography spiculated mass", "PET-CT uptake in lymph nodes",
    "sagittal MRI of the lumbar spine disc herniation",
]


@dataclasses.dataclass
class BenchResult:
    """A benchmark's figures; subclasses name them as fields."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        return "\n".join(_lines(self.to_dict()))


def _lines(values: dict, indent: str = "") -> list[str]:
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key}:", *_lines(value, indent + "  ")]
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def interleaved(variants: dict[str, Callable[[int], None]], repeats: int, warm: int = 2) -> dict[str, list[float]]:
    """Milliseconds per call of each variant, run in turn (A B A B …) so that a busy moment of a shared
    machine falls on all of them alike; `warm` untimed rounds first."""
    for i in range(warm):
        for run in variants.values():
            run(i)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(repeats):
        for name, run in variants.items():
            started = time.perf_counter()
            run(i)
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def p50_p95(samples: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(samples, [50, 95])
    return round(float(p50), 2), round(float(p95), 2)


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss elsewhere, which on Linux also counts the size of
    the process that forked this one)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
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
