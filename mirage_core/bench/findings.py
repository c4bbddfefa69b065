"""Finding-level precision of text search: of the top 12 results for a query naming a finding, how many
are answers — the dense ranking alone against the ranking with the finding channel (`mirage_core.findings`).

A query's answers are the records whose caption matches its pattern (the finding and its usual spellings and
plurals, below) and, where the query names a modality, whose modality label is that one: a CT of a kidney cyst
answers "CT kidney cyst", an MRI of a brain cyst does not. `TUNING_QUERIES` chose the channel's bonus
(`tune=True` prints the grid); `HELD_OUT_QUERIES` were written before any measurement and are what the figures
report. A query counts only where the corpus holds at least `MIN_ANSWERS` answers.
"""

from __future__ import annotations

import dataclasses
import re

from . import BenchResult

K = 12
MIN_ANSWERS = 3
BONUSES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)

TUNING_QUERIES = [
    ("chest x-ray pneumothorax", r"pneumothora"), ("CT pulmonary embolism", r"embol"),
    ("MRI brain glioblastoma", r"gliobl|glioma"), ("abdominal CT appendicitis", r"appendic"),
    ("chest x-ray pleural effusion", r"effusion"), ("CT aortic dissection", r"dissect"),
    ("x-ray fracture of the femur", r"fractur"), ("ultrasound gallbladder stones", r"stone|calcul|cholelith"),
    ("coronary angiography stenosis", r"stenos"), ("MRI spine disc herniation", r"herniat"),
]
HELD_OUT_QUERIES = [
    ("CT liver metastases", r"metasta"), ("chest CT pneumonia", r"pneumoni"),
    ("brain CT hemorrhage", r"h(a)?emorrhag|bleed|hematoma|haematoma"),
    ("abdominal x-ray bowel obstruction", r"obstruct"),
    ("CT kidney cyst", r"cyst"), ("ultrasound thyroid nodule", r"nodul"), ("chest x-ray cardiomegaly", r"cardiomegal"),
    ("CT abscess", r"abscess"), ("MRI knee meniscus tear", r"menisc"), ("angiography aneurysm", r"aneurysm"),
    ("CT lymphadenopathy", r"lymphadenopath|lymph node"), ("x-ray pacemaker leads", r"pacemaker|lead"),
]


@dataclasses.dataclass
class FindingsResult(BenchResult):
    queries: int
    precision_at_12_dense: float
    precision_at_12_with_findings: float
    bonus: float
    per_query: list[dict]
    tuning: dict | None = None

    def describe(self) -> str:
        lines = [f"finding-level precision@{K} on {self.queries} held-out finding queries: dense "
                 f"{100 * self.precision_at_12_dense:.1f} %, with the finding channel (bonus {self.bonus}) "
                 f"{100 * self.precision_at_12_with_findings:.1f} %"]
        lines += [f"  {q['query']:<40} answers {q['answers']:>4}  dense {q['dense']:>2}/{K}  with {q['with']:>2}/{K}"
                  for q in self.per_query]
        if self.tuning:
            lines.append("tuning queries, mean precision by bonus: " + ", ".join(
                f"{bonus}: {100 * value:.1f} %" for bonus, value in self.tuning.items()))
        return "\n".join(lines)


def _precision(index, encoder, queries, bonus: float) -> list[dict]:
    from ..findings import with_findings
    from ..labels import modalities_named
    from ..query import as_unit_vector

    rows = []
    for query, pattern in queries:
        finding, modalities = re.compile(pattern, re.IGNORECASE), set(modalities_named(query))

        def answers(record, finding=finding, modalities=modalities) -> bool:
            return bool(finding.search(record.caption)) and (not modalities or record.modality in modalities)

        count = sum(answers(r) for r in index.records)
        if count < MIN_ANSWERS:
            continue
        vector = as_unit_vector(encoder, query)
        dense = index.search(vector, K)
        boosted = with_findings(index, vector, query, dense, K, bonus=bonus)
        rows.append({"query": query, "answers": count, "dense": sum(answers(h.record) for h in dense),
                     "with": sum(answers(h.record) for h in boosted)})
    return rows


def bench_findings(index, encoder, tune: bool = False) -> FindingsResult:
    from ..findings import BONUS

    tuning = None
    if tune:
        tuning = {}
        for bonus in BONUSES:
            rows = _precision(index, encoder, TUNING_QUERIES, bonus)
            tuning[bonus] = round(sum(r["with"] for r in rows) / (K * max(len(rows), 1)), 4)
    rows = _precision(index, encoder, HELD_OUT_QUERIES, BONUS)
    total = K * max(len(rows), 1)
    return FindingsResult(queries=len(rows), precision_at_12_dense=round(sum(r["dense"] for r in rows) / total, 4),
                          precision_at_12_with_findings=round(sum(r["with"] for r in rows) / total, 4),
                          bonus=BONUS, per_query=rows, tuning=tuning)
