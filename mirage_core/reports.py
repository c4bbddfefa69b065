"""Grounded educational reports: what the nearest real cases say about a query, with numbered sources.

`grounded_report` is deterministic. For a text query, an image or a dual-search vector it retrieves the top-k
cases and composes:
- **modality and region**: the similarity-weighted vote of the cases' labels (`mirage_core.labels`), with
  the share of support, citing the cases that carry the winning label;
- **findings**: sentences of the cases' captions ranked by similarity to the query (near-duplicates
  dropped), each citing its case;
- **key concepts**: the findings and anatomy the cases share, in whole words of their captions (`concepts.key_terms`:
  no stems, no filler, not the modality's own name), each citing the cases that have it;
- **sources**: numbered ROCO ids with their PMC article and licence, in ranking order; a case from an animal
  study, a phantom or a cadaver is flagged as such (`non_human`).
Every statement cites at least one source, and the sources are exactly the retrieved cases. When no case
is close enough (below the similarity floor, or a text whose words the corpus never uses) the report says
it found nothing relevant instead of inventing.

`enrich_query` expands a text query (with an LLM, or with the key concepts of its nearest cases) and searches
again, returning both result lists — the first is exactly the list the report is grounded in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .concepts import key_terms, named
from .display import inert, link
from .encoders.base import Encoder
from .index import Hit, Index
from .labels import UNKNOWN
from .query import Query, as_unit_vector, check_query_text, kind_of
from .relevance import assess
from .search import search_text
from .text import words

FINDINGS = 4
CONCEPTS = 8
DUPLICATE_SENTENCE = 0.92
NON_HUMAN = {  # caption words that say a case is not a patient's
    "animal study": re.compile(r"\b(pigs?|porcine|swine|piglets?|rats?|murine|mouse|mice|canine|dogs?|rabbits?|"
                               r"sheep|ovine|bovine|equine|horses?|primates?|monkeys?|animal model|in an animal)\b",
                               re.IGNORECASE),
    "phantom": re.compile(r"\bphantoms?\b", re.IGNORECASE),
    "cadaver": re.compile(r"\bcadaver(s|ic)?\b|\bex vivo\b|\bpost-?mortem\b", re.IGNORECASE),
}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
GENERIC_WORDS = {
    "arrow", "arrows", "arrowhead", "image", "images", "right", "left", "patient", "showing", "show", "shows",
    "view", "case", "figure", "white", "black", "red", "yellow", "blue", "year", "month", "day", "old", "mas",
    "level", "side", "area", "region", "small", "large", "normal", "seen", "scan", "note", "time", "follow",
    "the", "and", "with", "of", "after", "before", "showed", "revealed", "demonstrating", "demonstrates",
}


@dataclass(frozen=True)
class Source:
    number: int
    record_id: str
    similarity: float
    caption: str
    article_url: str
    pmc_id: str
    licence: str
    licence_url: str
    modality: str
    region: str
    flag: str = ""  # "animal study", "phantom" or "cadaver" when the caption says so (`non_human`)

    @property
    def anchor(self) -> str:
        """The id of this source's place on a page, which its [n] citations link to."""
        return f"source-{self.number}"


def non_human(caption: str) -> str:
    """'animal study', 'phantom' or 'cadaver' when a caption says its image is not of a patient, else ''."""
    return next((flag for flag, pattern in NON_HUMAN.items() if pattern.search(caption)), "")


@dataclass(frozen=True)
class Statement:
    text: str
    sources: tuple[int, ...]

    def cited(self) -> str:
        return f"{self.text} {''.join(f'[{n}]' for n in self.sources)}"

    def cited_markdown(self, linked: bool = False) -> str:
        """`cited()` with the statement's words inert (they come from captions); with `linked`, each [n] links to
        its source's place on the page (`Source.anchor`)."""
        if not linked:
            return inert(self.cited())
        return f"{inert(self.text)} " + "".join(f"[\\[{n}\\]](#source-{n})" for n in self.sources)


@dataclass
class Report:
    query: str
    modality: Statement | None = None
    region: Statement | None = None
    findings: list[Statement] = field(default_factory=list)
    concepts: list[Statement] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    modality_label: str = UNKNOWN
    region_label: str = UNKNOWN
    nothing_found: str = ""
    left_out: int = 0  # retrieved cases below the relevance floor, not used

    @property
    def statements(self) -> list[Statement]:
        return [s for s in (self.modality, self.region) if s] + self.findings + self.concepts

    def to_markdown(self, level: int = 1, title: bool = True, linked: bool = False) -> str:
        """The report as a Markdown document; `level` is the title's heading level (sections one below) and
        `title=False` leaves the title out, for a page that shows the report under a heading of its own;
        `linked` makes each [n] a link to its source's image on the page."""
        title_mark, section = "#" * level, "#" * (level + 1)
        lines = [f"{title_mark} MIRAGE report: {inert(self.query)}", ""] if title else []
        lines += ["*Educational summary composed from retrieved real cases — not a diagnosis.*", ""]
        if self.nothing_found:
            return "\n".join([*lines, self.nothing_found, ""])
        lines += [f"{section} Modality and region", ""]
        lines += [f"- {s.cited_markdown(linked)}" for s in (self.modality, self.region) if s]
        lines += ["", f"{section} Findings in similar cases", ""] + [f"- {s.cited_markdown(linked)}"
                                                                     for s in self.findings]
        lines += ["", f"{section} Key concepts", ""] + [f"- {s.cited_markdown(linked)}" for s in self.concepts]
        lines += ["", f"{section} Sources", ""]
        if self.left_out:
            lines += [f"*{self.left_out} more retrieved case(s) were left out: too far from the query to ground "
                      "a statement.*", ""]
        for source in self.sources:
            article = link(source.pmc_id, source.article_url) if source.article_url else "PMC article unknown"
            flag = f" **{source.flag.upper()}, not a patient.**" if source.flag else ""
            lines.append(f"{source.number}. {inert(source.record_id)} — {article}, "
                         f"{link(source.licence, source.licence_url)} (similarity {source.similarity:.2f}):{flag} "
                         f"{inert(source.caption)}")
        return "\n".join(lines) + "\n"


def query_vector(encoder: Encoder, query: Query) -> tuple[np.ndarray, str, str]:
    """(unit vector, kind 'text'/'image'/'vector', description) of a query."""
    kind = kind_of(query)
    description = {"text": check_query_text(query) if kind == "text" else "", "image": "uploaded image",
                   "vector": "dual-search vector"}[kind]
    return as_unit_vector(encoder, query), kind, description


def grounded_report(index: Index, encoder: Encoder, query: str | Image.Image | np.ndarray, k: int = 8,
                    floor: float | None = None, exclude: Sequence[int] = ()) -> Report:
    """The report on the query's k nearest cases (see the module docstring). Whether anything relevant was
    found is `relevance.assess`; cases scoring below the floor (the calibrated one unless `floor` is given) are
    left out, and the report says how many."""
    vector, kind, description = query_vector(encoder, query)
    report = Report(description)
    if kind == "text":  # the hybrid search of Retrieval: the cases whose captions say what was asked join in
        hits = search_text(index, encoder, description, k, exclude=exclude)
    else:
        hits = index.search(vector, k, exclude=exclude)
    verdict = assess(index, hits, description if kind == "text" else None, kind)
    if not verdict.relevant and floor is None:
        report.nothing_found = f"Nothing relevant found: {verdict.reason}. The report does not guess."
        return report
    cut = verdict.floor if floor is None else floor
    # a case the captions' channels found is kept on their word; one the joint space alone found must clear the floor
    kept = [h for h in hits if h.ranking >= cut or {"meaning", "words"} & set(h.channels)]
    report.left_out = len(hits) - len(kept)
    hits = kept
    if not hits:
        report.nothing_found = (f"Nothing relevant found: no case is close enough to the query (similarity floor "
                                f"{cut:.2f}). The report does not guess.")
        return report
    report.sources = [_source(n, hit) for n, hit in enumerate(hits, 1)]
    weights = np.array([max(h.score, 1e-3) for h in hits])
    report.modality, report.modality_label = _label_statement(report.sources, weights, "modality")
    report.region, report.region_label = _label_statement(report.sources, weights, "region")
    report.findings = _findings(encoder, vector, hits)
    report.concepts = _concepts(hits, index.concept_names)
    return report


def _source(number: int, hit: Hit) -> Source:
    r = hit.record
    return Source(number, r.id, hit.score, r.caption, r.article_url, r.pmc_id, r.licence, r.licence_url,
                  r.modality, r.region, non_human(r.caption))


def _label_statement(sources: list[Source], weights: np.ndarray, key: str) -> tuple[Statement | None, str]:
    votes: Counter = Counter()
    for source, weight in zip(sources, weights):
        votes[getattr(source, key)] += float(weight)
    known = {label: w for label, w in votes.items() if label != UNKNOWN}
    noun = "Modality" if key == "modality" else "Body region"
    if not known:
        everyone = tuple(s.number for s in sources)
        return Statement(f"{noun}: not stated by the similar cases' captions.", everyone), UNKNOWN
    label, weight = max(known.items(), key=lambda item: item[1])
    share = weight / sum(votes.values())
    citing = tuple(s.number for s in sources if getattr(s, key) == label)
    if share < 0.5:
        others = ", ".join(f"{name}" for name in sorted(known, key=known.get, reverse=True)[1:3])
        text = f"{noun}: uncertain — most often {label} ({share:.0%} of the similarity weight)" + (
            f", also {others}" if others else "") + "."
        return Statement(text, citing), UNKNOWN
    return Statement(f"{noun}: {label} ({share:.0%} of the similar cases by similarity weight).", citing), label


def split_sentences(caption: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(" ".join(caption.split())) if len(s.split()) >= 5]


def _findings(encoder: Encoder, vector: np.ndarray, hits: Sequence[Hit]) -> list[Statement]:
    sentences, owners = [], []
    for number, hit in enumerate(hits, 1):
        for sentence in split_sentences(hit.record.caption):
            sentences.append(sentence)
            owners.append(number)
    if not sentences:
        return []
    embedded = encoder.encode_text(sentences)
    order = np.argsort(-(embedded @ vector), kind="stable")
    chosen: list[int] = []
    for i in order:
        if all(float(embedded[i] @ embedded[j]) < DUPLICATE_SENTENCE for j in chosen):
            chosen.append(int(i))
        if len(chosen) == FINDINGS:
            break
    return [Statement(sentences[i].rstrip("."), (owners[i],)) for i in chosen]


def _concepts(hits: Sequence[Hit], names: dict[str, str]) -> list[Statement]:
    """Findings and anatomy that several cases name, in whole caption words (never the modality's own name)."""
    term_sources: dict[str, list[int]] = {}
    for number, hit in enumerate(hits, 1):
        record = hit.record
        for term in key_terms(record.caption, record.keywords, named(record.cuis, names), limit=50, anatomy=True):
            if term not in GENERIC_WORDS:
                term_sources.setdefault(term, []).append(number)
    shared = sorted(term_sources.items(), key=lambda item: (-len(item[1]), item[0]))
    return [Statement(f"{word} (in {len(numbers)} of {len(hits)} cases)", tuple(numbers))
            for word, numbers in shared[:CONCEPTS] if len(numbers) > 1 or len(hits) == 1]


@dataclass
class QueryEnrichment:
    query: str
    expansion: str
    method: str  # "llm" or "concepts"
    before: list[Hit]
    after: list[Hit]


def expansion_from_concepts(index: Index, hits: Sequence[Hit], query: str, terms: int = 4) -> str:
    """Key concepts (whole caption words) shared by the query's results that the query does not already say."""
    said = set(words(query))
    counts = Counter(term for hit in hits for term in key_terms(
        hit.record.caption, hit.record.keywords, named(hit.record.cuis, index.concept_names), limit=50, anatomy=True))
    picked = [w for w, c in counts.most_common() if c > 1 and not set(w.split()) <= said and w not in GENERIC_WORDS]
    return " ".join(picked[:terms])


def enrich_query(index: Index, encoder: Encoder, query: str, llm=None, k: int = 10) -> QueryEnrichment:
    """Expand the query and search again. `before` is the hybrid search the report is grounded in (the same
    list, in the same order); `after` is the same search for the query followed by its expansion."""
    text = check_query_text(query)
    before = search_text(index, encoder, text, k)
    expansion, method = "", "concepts"
    if llm is not None:
        from .llm import expand_query

        expansion, method = expand_query(llm, text, known_words=index.caption_words), "llm"
    if not expansion:
        expansion, method = expansion_from_concepts(index, before, text), "concepts"
    if not expansion:
        return QueryEnrichment(text, "", method, before, before)
    return QueryEnrichment(text, expansion, method, before, search_text(index, encoder, f"{text} {expansion}", k))
