"""Dual search / latent arithmetic: v = normalise(w_q·q − Σ w_s·s + Σ w_a·a).

Each term is a text, an image or a ready vector, with a weight. `compose` returns every intermediate
vector (the query, the running sum after each term, the normalised result) so that the app can draw the
moves; `dual_search` adds the hits for the original and the modified query. A result that cancels out
(the query minus itself) is a `QueryError`, never a vector of NaNs. `concept_walk` slides from one concept
to another along the sphere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .encoders.base import Encoder
from .errors import QueryError
from .index import Hit, Index
from .query import as_unit_vector, check_query_text

MIN_NORM = 1e-3


@dataclass(frozen=True)
class Term:
    """One operand: `value` is a text, a PIL image or an embedding; `label` names it in plots."""

    value: str | Image.Image | np.ndarray
    weight: float = 1.0
    label: str = ""

    def describe(self) -> str:
        if self.label:
            return self.label
        if isinstance(self.value, str):
            return self.value
        return "image" if isinstance(self.value, Image.Image) else "vector"


@dataclass
class Step:
    label: str
    sign: int
    weight: float
    term_vector: np.ndarray
    running: np.ndarray

    def signed_label(self, with_weight: bool = False) -> str:
        weight = f"{self.weight:g}×" if with_weight and self.weight != 1 else ""
        return f"{'+' if self.sign > 0 else '−'} {weight}{self.label}"


@dataclass
class Composition:
    """The query vector, each step's running sum, and the normalised result."""

    query: np.ndarray
    steps: list[Step] = field(default_factory=list)
    result: np.ndarray | None = None
    query_label: str = "query"

    def path(self) -> list[tuple[str, np.ndarray]]:
        """(label, vector) from the query through every step to the normalised result."""
        points = [("query", self.query)]
        points += [(step.signed_label(), step.running) for step in self.steps]
        return points + [("result", self.result)]

    def step_names(self) -> list[str]:
        """`path()`'s points in plain words: 'start: chest x-ray', 'after subtracting bones', …, 'result'."""
        names = [f"start: {self.query_label}"]
        names += [f"after {'adding' if step.sign > 0 else 'subtracting'} {step.label}" for step in self.steps]
        return names + ["result"]

    def expression(self) -> str:
        """The arithmetic as a reader would write it: 'chest x-ray − 0.5×bones + soft tissue'."""
        return " ".join([self.query_label, *(step.signed_label(with_weight=True) for step in self.steps)])


@dataclass
class DualSearchResult:
    composition: Composition
    original: list[Hit]
    modified: list[Hit]


def embed_term(encoder: Encoder, term: Term) -> np.ndarray:
    return as_unit_vector(encoder, term.value, what="term")


def combine(
    query: np.ndarray, subtract: Sequence[tuple[np.ndarray, float, str]] = (),
    add: Sequence[tuple[np.ndarray, float, str]] = (), query_weight: float = 1.0, query_label: str = "query",
) -> Composition:
    """Pure vector arithmetic on (vector, weight, label) triples; subtractions first, then additions."""
    query = np.asarray(query, dtype=np.float32)
    running = query_weight * query
    composition = Composition(query=query, query_label=query_label)
    for sign, terms in ((-1, subtract), (1, add)):
        for vector, weight, label in terms:
            running = running + sign * weight * np.asarray(vector, dtype=np.float32)
            composition.steps.append(Step(label, sign, weight, np.asarray(vector, dtype=np.float32), running.copy()))
    norm = float(np.linalg.norm(running))
    if not np.isfinite(norm) or norm < MIN_NORM:
        raise QueryError("the terms cancel out (the result is a zero vector): change a term or a weight")
    composition.result = (running / norm).astype(np.float32)
    return composition


def compose(
    encoder: Encoder, query: Term, subtract: Sequence[Term] = (), add: Sequence[Term] = ()
) -> Composition:
    """Embed every term and combine them."""
    return combine(
        embed_term(encoder, query),
        [(embed_term(encoder, t), t.weight, t.describe()) for t in subtract],
        [(embed_term(encoder, t), t.weight, t.describe()) for t in add],
        query_weight=query.weight, query_label=query.describe(),
    )


def dual_search(
    index: Index, encoder: Encoder, query: Term, subtract: Sequence[Term] = (), add: Sequence[Term] = (),
    k: int = 10, **filters,
) -> DualSearchResult:
    composition = compose(encoder, query, subtract, add)
    original = composition.query / max(float(np.linalg.norm(composition.query)), 1e-12)
    return DualSearchResult(
        composition, index.search(original, k, **filters), index.search(composition.result, k, **filters)
    )


def walk(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The unit vector a fraction t of the way from a to b (spherical interpolation)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    angle = float(np.arccos(np.clip(a @ b, -1.0, 1.0)))
    if angle < 1e-6:
        return a.astype(np.float32)
    mixed = (np.sin((1 - t) * angle) * a + np.sin(t * angle) * b) / np.sin(angle)
    return (mixed / np.linalg.norm(mixed)).astype(np.float32)


def concept_walk(index: Index, encoder: Encoder, start: str, end: str, t: float, k: int = 8) -> list[Hit]:
    """The images nearest to the point a fraction t of the way from one text concept to another."""
    start_vector, end_vector = encoder.encode_query([check_query_text(start, "start"), check_query_text(end, "end")])
    return index.search(walk(start_vector, end_vector, t), k)


@dataclass(frozen=True)
class Preset:
    """A dual search to demonstrate, and how to tell that it worked: the results after the arithmetic should
    show the added concept — a caption pattern and/or the labels (modality, region) it implies."""

    name: str
    query: str
    subtract: tuple[str, ...]
    add: tuple[str, ...]
    caption: str = ""  # a regex the added concept's captions match
    modality: str = ""  # the modality the added concept implies
    region: str = ""  # the region the result should keep

    def matches(self, hit: Hit) -> bool:
        record = hit.record
        if self.modality and record.modality != self.modality:
            return False
        if self.region and record.region != self.region:
            return False
        return not self.caption or re.search(self.caption, record.caption, re.IGNORECASE) is not None

    def terms(self) -> tuple[Term, list[Term], list[Term]]:
        return Term(self.query), [Term(t) for t in self.subtract], [Term(t) for t in self.add]


# Each one measured by `mirage bench arithmetic` on the demo corpus; a preset ships when the arithmetic lifts at
# least 2 of the top 8 to the added concept. The paper's "Chest X-Ray − Bones + Soft Tissue" (0 → 1 of 8) and
# "Lungs X-Ray − Clear Lungs + Pneumonia" (2 → 3) did not, and were replaced.
PRESETS = (
    Preset("Chest X-ray − No foreign bodies + Pacemaker", "Chest X-ray", ("No foreign bodies",),
           ("Pacemaker generator and leads",), caption=r"pacemaker|lead|defibrillator|\bICD\b|device"),
    Preset("Brain MRI − Normal + Tumour", "Brain MRI", ("Normal",), ("Tumour",),
           caption=r"tumou?r|glioma|mass|metasta|meningioma|lesion"),
    Preset("Abdominal CT − CT + Ultrasound", "Abdominal CT", ("CT",), ("Ultrasound",), modality="ultrasound",
           region="abdomen"),
    Preset("Brain MRI − MRI + CT", "Brain MRI", ("MRI",), ("CT",), modality="CT", region="head"),
    Preset("Chest CT − CT + X-ray", "Chest CT", ("CT",), ("X-ray",), modality="X-ray", region="chest"),
    Preset("Brain CT − CT + MRI", "Brain CT", ("CT",), ("MRI",), modality="MRI", region="head"),
)
SHIPPING_LIFT = 2  # of the top 8, how many more must show the added concept for a preset to ship


@dataclass(frozen=True)
class PresetEffect:
    preset: str
    before: int  # of the top k before the arithmetic, how many show the added concept
    after: int
    k: int

    @property
    def moved(self) -> bool:
        return self.after > self.before

    def describe(self) -> str:
        return f"{self.before}/{self.k} → {self.after}/{self.k} show the added concept"


def preset_effect(index: Index, encoder: Encoder, preset: Preset, k: int = 8) -> PresetEffect:
    """How many of the top k show the added concept, before and after the preset's arithmetic."""
    query, subtract, add = preset.terms()
    result = dual_search(index, encoder, query, subtract, add, k=k)
    return PresetEffect(preset.name, sum(map(preset.matches, result.original)),
                        sum(map(preset.matches, result.modified)), k)
