"""Quiz questions generated from an index: the subject, four options, and hard negatives as distractors.

Kinds:
- `image_to_caption`: an image, which of four captions describes it;
- `caption_to_image`: a caption, which of four images it describes;
- `modality` / `region`: an image, which of four labels (see `mirage_core.labels`);
- `arithmetic`: which image best matches "A − B + C" (e.g. "CT of the chest" − "CT" + "MRI"); the answer is
  an image with C's modality in A's region, the distractors are what a student gets by not applying the
  arithmetic (A itself), by applying only half of it, or by another region.

Distractors are chosen with the encoder — the captions or images nearest to the subject (by the index's
embeddings) — among records whose labels differ from the answer's, never from the same article and never
near-duplicates. The difficulty sets how near: `hard` takes the nearest valid candidates, `medium` starts
further down the ranking, `easy` draws at random. Every question is then checked by `validate`: exactly
one option is correct by the labels, options are distinct; a question that fails is not asked (and counted
in `QuestionGenerator.rejected`); a kind the corpus cannot support (too few images of a label) is dropped after
repeated failures and the other kinds fill in (`QuestionGenerator.dropped_kinds`). Generation is deterministic under a
seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..concepts import key_terms, named
from ..errors import MirageError
from ..index import Index
from ..labels import MODALITIES, REGIONS, UNKNOWN
from .explain import explain, topic_name

KINDS = ("image_to_caption", "caption_to_image", "modality", "region", "arithmetic")
KIND_NAMES = {"image_to_caption": "Image → caption", "caption_to_image": "Caption → image", "modality": "Modality",
              "region": "Body region", "arithmetic": "Latent arithmetic"}
DIFFICULTIES = ("easy", "medium", "hard")
OPTIONS = 4
NEAR_DUPLICATE = 0.97
BAND_START = {"hard": 0, "medium": 15}
ATTEMPTS_PER_QUESTION = 8
QUOTE = "\n\n> "  # between a question and the caption it quotes (a Markdown block quote)


@dataclass(frozen=True)
class Option:
    """A caption or image (`record_id` set) or a label (`record_id` empty); `text` is what is shown."""

    text: str
    record_id: str = ""
    modality: str = UNKNOWN
    region: str = UNKNOWN
    findings: tuple[str, ...] = ()  # what the record shows, in whole caption words (`explain.key_terms`)
    why: str = ""  # why this option is right, or wrong (`explain`), in sentences


@dataclass(frozen=True)
class Question:
    kind: str
    prompt: str
    options: tuple[Option, ...]
    answer: int
    subject_id: str = ""  # the record the question is about (its image, or its caption)
    topic: str = ""  # e.g. "modality:CT", what mastery is tracked under
    difficulty: str = "medium"
    hint: str = ""
    expression: str = ""

    @property
    def id(self) -> str:
        options = [o.record_id or o.text for o in self.options]
        payload = json.dumps([self.kind, self.subject_id, self.expression, options])
        return hashlib.sha1(payload.encode()).hexdigest()[:12]

    @property
    def prompt_parts(self) -> tuple[str, str]:
        """The question itself and the caption it quotes ("" when it quotes none), to lay out apart."""
        question, _, quoted = self.prompt.partition(QUOTE)
        return question, quoted

    def summary(self, width: int = 90) -> str:
        """The prompt on one line, a quoted caption inline, shortened to `width` characters (for lists)."""
        question, quoted = self.prompt_parts
        return textwrap.shorten(f"{question} “{quoted}”" if quoted else question, width, placeholder="…")

    @property
    def card_id(self) -> str:
        """What spaced repetition schedules: the kind of question about this subject."""
        return f"{self.kind}:{self.subject_id or self.expression}"

    @property
    def correct(self) -> Option:
        return self.options[self.answer]

    def explained(self) -> Question:
        """The question with every option's `why` written (kept where an option already has one, as a pack's)."""
        reasons = explain(self.kind, self.options, self.answer, self.expression)
        options = tuple(o if o.why else dataclasses.replace(o, why=r) for o, r in zip(self.options, reasons))
        return dataclasses.replace(self, options=options)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Question:
        values = dict(data)
        values["options"] = tuple(Option(**{**option, "findings": tuple(option.get("findings", ()))})
                                  for option in data["options"])
        return cls(**values)


MATCHING_HINT = ("Settle the modality and the body region first; then compare the finding each option names "
                 "with what the image shows.")
MODALITY_HINT = ("Is it a projection (structures overlap) or a cross-section? Bright bone with grey soft tissue, "
                 "signal that depends on the sequence, a fan-shaped speckled sector, contrast-filled vessels or "
                 "blobs of tracer uptake each point to a different technique.")
REGION_HINT = "Find the largest structure you recognise — a bone, an organ, an air-filled space — and where it sits."


def hint_problem(question: Question) -> str | None:
    """Why the question's hint gives the answer away (it names the answer's text or its label), or None."""
    correct = question.correct
    giveaways = [correct.text] + [label for label in (correct.modality, correct.region) if label != UNKNOWN]
    for giveaway in giveaways:
        if giveaway and re.search(rf"(?<!\w){re.escape(giveaway.lower())}(?!\w)", question.hint.lower()):
            return f"the hint names '{giveaway[:60]}'"
    return None


def why_wrong(question: Question, chosen: int) -> str:
    """Why option `chosen` is not the answer, in sentences (for feedback and the presenter's reveal); "" for the
    answer itself."""
    if chosen == question.answer:
        return ""
    return question.options[chosen].why or explain(question.kind, question.options, question.answer,
                                                   question.expression)[chosen]


def why_right(question: Question) -> str:
    """Why the answer is right, in a sentence."""
    return question.correct.why or explain(question.kind, question.options, question.answer,
                                           question.expression)[question.answer]


def topic_kind(topic: str) -> str | None:
    """The kind of question a topic already answers: 'region' for 'region:chest', 'modality' for 'modality:CT'."""
    kind = str(topic or "").partition(":")[0]
    return kind if kind in ("modality", "region") and ":" in str(topic) else None


def topic_of(kind: str, option: Option) -> str:
    if kind == "region":
        return f"region:{option.region}"
    return f"modality:{option.modality}"


def validate(question: Question) -> str | None:
    """Why the question must not be asked, or None when it is sound."""
    options = question.options
    if question.kind not in KINDS:
        return f"unknown kind {question.kind}"
    if len(options) != OPTIONS:
        return f"{len(options)} options instead of {OPTIONS}"
    if not 0 <= question.answer < len(options):
        return "the answer is not one of the options"
    if problem := hint_problem(question):
        return problem
    keys = [o.record_id or o.text for o in options]
    if len(set(keys)) != len(keys) or len({o.text for o in options}) != len(options):
        return "two options are the same"
    answer = options[question.answer]
    correct = [i for i, option in enumerate(options) if _consistent(question.kind, option, answer)]
    if correct != [question.answer]:
        return f"{len(correct)} options are correct by the labels"
    return None


def _consistent(kind: str, option: Option, answer: Option) -> bool:
    """Whether the labels cannot tell this option from the answer."""
    if kind == "modality":
        return option.modality == answer.modality
    if kind == "region":
        return option.region == answer.region
    if kind == "arithmetic":
        return (option.modality, option.region) == (answer.modality, answer.region)
    differs = [
        key for key in ("modality", "region")
        if UNKNOWN not in (getattr(option, key), getattr(answer, key)) and getattr(option, key) != getattr(answer, key)
    ]
    # the same modality and region can still be told apart by the finding: both name findings, none shared
    findings_differ = bool(option.findings and answer.findings) and not set(option.findings) & set(answer.findings)
    return not differs and not findings_differ


@dataclass
class QuestionGenerator:
    """Makes questions from an index (and the encoder, for arithmetic terms); deterministic under a seed."""

    index: Index
    encoder: object = None
    seed: int = 0
    rejected: int = 0
    attempts: int = 0
    dropped_kinds: list[str] = field(default_factory=list)
    _text_cache: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)
        records = self.index.records
        self.modality = np.array([r.modality for r in records])
        self.region = np.array([r.region for r in records])
        self.article = np.array([r.pmc_id or r.id for r in records])
        self.caption_key = np.array([" ".join(r.caption.lower().split()) for r in records])

    # -- public ------------------------------------------------------------------------------------------
    def questions(self, n: int, kinds: Sequence[str] = KINDS, difficulty: str = "medium",
                  topic: str = "mixed", allow_fewer: bool = False) -> list[Question]:
        """n valid questions, kinds in rotation, about subjects of the topic ('mixed', 'modality:CT', …).

        With `allow_fewer`, a corpus too small for n gives what it can (at least one) instead of an error."""
        kinds = list(kinds)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise MirageError(f"unknown question type(s) {unknown}: choose from {', '.join(KINDS)}")
        subjects = self._subjects(topic)  # an unknown topic is said first
        answered = topic_kind(topic)
        if answered in kinds:  # a region topic answers every region question: the answer would always be the same
            kinds.remove(answered)
            self.dropped_kinds.append(answered)
            if not kinds:
                raise MirageError(f"every {answered} question of the topic {topic_name(topic)} has the same answer: "
                                  "choose other kinds of question, or the mixed topic")
        if difficulty not in DIFFICULTIES:
            raise MirageError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, not '{difficulty}'")
        made: list[Question] = []
        seen: set[str] = set()
        failures = dict.fromkeys(kinds, 0)
        active = list(kinds)
        budget = n * ATTEMPTS_PER_QUESTION
        while len(made) < n and budget > 0 and active:
            kind = active[len(made) % len(active)]
            budget -= 1
            self.attempts += 1
            question = self._make(kind, int(self.rng.choice(subjects)), difficulty)
            off_topic = question is not None and not self._on_topic(question, topic)
            if question is None or off_topic or validate(question) is not None or question.card_id in seen:
                self.rejected += 1
                failures[kind] += 1
                if failures[kind] >= ATTEMPTS_PER_QUESTION * 4 and len(active) > 1:
                    active.remove(kind)  # this corpus (or topic) cannot support this kind: the others fill in
                    self.dropped_kinds.append(kind)
                    budget += failures[kind]  # its failed tries were not the other kinds' to lose
                continue
            failures[kind] = 0
            seen.add(question.card_id)
            if topic and topic != "mixed":  # mastery is tracked under the topic the student chose
                question = dataclasses.replace(question, topic=topic)
            made.append(question.explained())
        if len(made) < n and not (allow_fewer and made):
            raise MirageError(
                f"only {len(made)} of {n} questions could be made for topic '{topic}' from {len(self.index)} "
                "images: choose another topic, fewer questions or a larger corpus"
            )
        return made

    def notes(self, kind_names: dict[str, str], wanted: int, made: int, topic: str) -> list[str]:
        """What a student or instructor should know about the last `questions` call, in sentences."""
        notes = []
        if made < wanted:
            notes.append(f"This corpus gives {made} such questions, not {wanted}.")
        answered = topic_kind(topic)
        if answered in self.dropped_kinds:
            notes.append(f"No {kind_names.get(answered, answered)} questions in the topic {topic_name(topic)}: every "
                         f"one would have the same answer, {topic.partition(':')[2]}.")
        scarce = [kind_names.get(k, k) for k in dict.fromkeys(self.dropped_kinds) if k != answered]
        if scarce:
            notes.append(f"Too few suitable images here for: {', '.join(scarce)} — the other kinds fill in.")
        return notes

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.attempts if self.attempts else 0.0

    def _on_topic(self, question: Question, topic: str) -> bool:
        """Whether the question's subject (the answer's record, for arithmetic) carries the topic's label."""
        if not topic or topic == "mixed":
            return True
        key, _, value = topic.partition(":")
        record = self.index.records[self.index.row_of(question.subject_id)]
        return getattr(record, key) == value

    # -- subjects and candidates ---------------------------------------------------------------------------
    def _subjects(self, topic: str) -> np.ndarray:
        known = (self.modality != UNKNOWN) | (self.region != UNKNOWN)
        if topic and topic != "mixed":
            key, _, value = topic.partition(":")
            if key not in ("modality", "region") or value not in (MODALITIES if key == "modality" else REGIONS):
                raise MirageError(f"unknown topic '{topic}': use 'mixed', 'modality:<name>' or 'region:<name>'")
            known &= (self.modality if key == "modality" else self.region) == value
        rows = np.flatnonzero(known)
        if len(rows) == 0:
            raise MirageError(f"no image of this corpus has the topic '{topic}'")
        return rows

    def _ranked(self, vector: np.ndarray, matrix: np.ndarray, difficulty: str) -> np.ndarray:
        """Row order to draw distractors from: nearest first (from the band's start), or random for easy."""
        if difficulty == "easy":
            return self.rng.permutation(len(matrix))
        order = np.argsort(-(matrix @ vector), kind="stable")
        return order[BAND_START[difficulty]:]

    def _acceptable(self, row: int, subject: int, chosen: list[int], matrix: np.ndarray, kind: str) -> bool:
        if row == subject or self.article[row] == self.article[subject] or row in chosen:
            return False
        if self.caption_key[row] in {self.caption_key[subject], *(self.caption_key[c] for c in chosen)}:
            return False
        if any(float(matrix[row] @ matrix[other]) > NEAR_DUPLICATE for other in [subject, *chosen]):
            return False
        return not _consistent(kind, self._option(row), self._option(subject))

    def _option(self, row: int, text: str | None = None) -> Option:
        record = self.index.records[row]
        findings = key_terms(record.caption, record.keywords, named(record.cuis, self.index.concept_names))
        return Option(text if text is not None else record.caption, record.id, record.modality, record.region,
                      findings)

    def _pick(self, subject: int, vector: np.ndarray, matrix: np.ndarray, difficulty: str, kind: str,
              count: int = OPTIONS - 1) -> list[int] | None:
        chosen: list[int] = []
        ranked = self._ranked(vector, matrix, difficulty)
        if difficulty == "hard":
            # hard: only the closest images of the same modality and region, told apart by their findings
            if UNKNOWN in (self.modality[subject], self.region[subject]):
                return None
            same = (self.modality[ranked] == self.modality[subject]) & (self.region[ranked] == self.region[subject])
            ranked = ranked[same]
        for row in ranked:
            if self._acceptable(int(row), subject, chosen, matrix, kind):
                chosen.append(int(row))
                if len(chosen) == count:
                    return chosen
        return None

    def _shuffle(self, correct: Option, distractors: list[Option]) -> tuple[tuple[Option, ...], int]:
        options = [correct, *distractors]
        order = self.rng.permutation(len(options))
        return tuple(options[i] for i in order), int(np.flatnonzero(order == 0)[0])

    # -- kinds -----------------------------------------------------------------------------------------
    def _make(self, kind: str, subject: int, difficulty: str) -> Question | None:
        return getattr(self, f"_{kind}")(subject, difficulty)

    def _image_to_caption(self, subject: int, difficulty: str) -> Question | None:
        rows = self._pick(subject, self.index.images[subject], self.index.captions, difficulty, "image_to_caption")
        if rows is None:
            return None
        options, answer = self._shuffle(self._option(subject), [self._option(r) for r in rows])
        return Question("image_to_caption", "Which caption describes this image?", options, answer,
                        self.index.records[subject].id, topic_of("modality", self._option(subject)), difficulty,
                        MATCHING_HINT)

    def _caption_to_image(self, subject: int, difficulty: str) -> Question | None:
        rows = self._pick(subject, self.index.captions[subject], self.index.images, difficulty, "caption_to_image")
        if rows is None:
            return None
        options, answer = self._shuffle(self._option(subject), [self._option(r) for r in rows])
        record = self.index.records[subject]
        return Question("caption_to_image", f"Which image does this caption describe?{QUOTE}{record.caption}",
                        options, answer, record.id, topic_of("modality", self._option(subject)), difficulty,
                        MATCHING_HINT)

    def _label_question(self, subject: int, difficulty: str, key: str) -> Question | None:
        labels = self.modality if key == "modality" else self.region
        truth = str(labels[subject])
        if truth == UNKNOWN:
            return None
        others = [name for name in (MODALITIES if key == "modality" else REGIONS) if name not in (truth, UNKNOWN)]
        if difficulty == "easy":
            distractors = list(self.rng.choice(others, OPTIONS - 1, replace=False))
        else:
            # the labels whose images sit closest to this image are the confusable ones
            image = self.index.images[subject]
            closeness = {name: float(self.index.images[labels == name].mean(0) @ image)
                         for name in others if (labels == name).any()}
            ranked = sorted(closeness, key=closeness.get, reverse=True)
            pool = ranked[:OPTIONS - 1] if difficulty == "hard" else ranked[: OPTIONS + 2]
            if len(pool) < OPTIONS - 1:
                return None
            distractors = list(self.rng.choice(pool, OPTIONS - 1, replace=False))

        def label_option(name: str) -> Option:
            return Option(name, modality=name if key == "modality" else UNKNOWN,
                          region=name if key == "region" else UNKNOWN)

        options, answer = self._shuffle(label_option(truth), [label_option(str(n)) for n in distractors])
        prompt = "Which imaging modality is this?" if key == "modality" else "Which body region does this image show?"
        record = self.index.records[subject]
        hint = MODALITY_HINT if key == "modality" else REGION_HINT
        return Question(key, prompt, options, answer, record.id, f"{key}:{truth}", difficulty, hint)

    def _modality(self, subject: int, difficulty: str) -> Question | None:
        return self._label_question(subject, difficulty, "modality")

    def _region(self, subject: int, difficulty: str) -> Question | None:
        return self._label_question(subject, difficulty, "region")

    def _text_vector(self, text: str) -> np.ndarray:
        if text not in self._text_cache:
            if self.encoder is None:
                raise MirageError("arithmetic questions need the encoder")
            self._text_cache[text] = self.encoder.encode_text([text])[0]
        return self._text_cache[text]

    def _arithmetic(self, subject: int, difficulty: str) -> Question | None:
        modality, region = str(self.modality[subject]), str(self.region[subject])
        if UNKNOWN in (modality, region):
            return None
        swaps = [m for m in MODALITIES if m not in (modality, UNKNOWN)
                 and ((self.modality == m) & (self.region == region)).any()]
        if not swaps:
            return None
        target = str(self.rng.choice(swaps))
        start = f"{modality} of the {region}"
        expression = f"“{start}” − “{modality}” + “{target}”"
        vector = self._text_vector(start) - self._text_vector(modality) + self._text_vector(target)
        vector = vector / max(float(np.linalg.norm(vector)), 1e-6)
        groups = [  # (modality, region) of the answer, then of each distractor
            (target, region),  # the answer: the arithmetic applied
            (modality, region),  # the query unchanged
            (target, None),  # the new modality in another region
            (None, region),  # the region with a third modality
        ]
        rows: list[int] = []
        for group_modality, group_region in groups:
            row = self._nearest_in_group(vector, group_modality, group_region, target, region, rows, difficulty)
            if row is None:
                return None
            rows.append(row)
        options, answer = self._shuffle(self._option(rows[0]), [self._option(r) for r in rows[1:]])
        return Question("arithmetic", f"Which image best matches {expression}?", options, answer,
                        self.index.records[rows[0]].id, f"modality:{target}", difficulty,
                        "the answer keeps the query's body region and swaps its modality for the one added",
                        expression)

    def _nearest_in_group(self, vector, modality, region, answer_modality, answer_region, taken, difficulty):
        mask = np.ones(len(self.index), dtype=bool)
        if modality is not None:
            mask &= self.modality == modality
        else:  # any other known modality than the answer's
            mask &= (self.modality != answer_modality) & (self.modality != UNKNOWN)
        if region is not None:
            mask &= self.region == region
        else:
            mask &= (self.region != answer_region) & (self.region != UNKNOWN)
        mask[taken] = False
        for row in taken:
            mask &= self.article != self.article[row]
        candidates = np.flatnonzero(mask)
        if len(candidates) == 0:
            return None
        if difficulty == "easy":
            return int(self.rng.choice(candidates))
        scores = self.index.images[candidates] @ vector
        order = candidates[np.argsort(-scores, kind="stable")]
        return int(order[min(len(order) - 1, 0 if difficulty == "hard" or not taken else 2)])
