"""Whether each dual-search preset demonstrates what it claims: of the top 8 before and after the arithmetic, how
many show the added concept (by labels and caption words, `arithmetic.Preset.matches`)."""

from __future__ import annotations

import dataclasses

from . import BenchResult


@dataclasses.dataclass
class ArithmeticResult(BenchResult):
    corpus: str
    k: int
    presets: list[dict]

    def describe(self) -> str:
        lines = [f"dual-search presets on {self.corpus}: of the top {self.k}, how many show the added concept"]
        lines += [f"  {p['preset']:<48} before {p['before']}/{self.k}  after {p['after']}/{self.k}"
                  f"  {'moves' if p['moved'] else 'DOES NOT MOVE'}" for p in self.presets]
        return "\n".join(lines)


def bench_arithmetic(index, encoder, presets=None, k: int = 8) -> ArithmeticResult:
    from ..arithmetic import PRESETS, preset_effect

    effects = [preset_effect(index, encoder, preset, k) for preset in presets or PRESETS]
    return ArithmeticResult(corpus=str(index.manifest.get("corpus", "")), k=k,
                            presets=[{**dataclasses.asdict(e), "moved": e.moved} for e in effects])
