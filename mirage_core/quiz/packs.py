"""Instructor packs: a fixed quiz saved as JSON or YAML, for students to import and presenters to show.

A pack names its questions in full (prompt, options, answer) and refers to images by ROCO id, so it works on
any index that holds those images. Loading checks everything — format, fields, types, that each question
is sound (`validate`) and, given an index, that its images are there — and says what is wrong, by question
number, in a `PackError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..errors import MirageError
from ..files import write_text
from ..index import Index
from .questions import KINDS, Question, validate

PACK_FORMAT = 1
MAX_PACK_BYTES = 5 * 1024 * 1024
MAX_QUESTIONS = 500
MAX_DEPTH = 8  # a pack is pack → questions → question → options → option: deeper nesting is never a pack
MAX_BRACKETS = 200  # brackets in captions count too, so this bound is loose
MAX_TEXT = 5_000  # characters of any one text field (a prompt quotes one caption)
SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
TEXT_FIELDS = ("prompt", "subject_id", "topic", "difficulty", "hint", "expression")


class _PackLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases and with a depth limit: `&a [*a, *a]` chains expand exponentially
    (a 695-byte file became 400 MB), and a pack never needs to repeat a node by reference."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError("while reading a pack", None, "aliases (*name) are not allowed in a pack",
                                       event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError("while reading a pack", None,
                                           f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class PackError(MirageError):
    """A pack file that cannot be used, and why."""


def pack_filename(title: str, kind: str = "json") -> str:
    """A file name from the pack's title: 'Chest X-ray week 3' → 'chest-x-ray-week-3.json' (letters, digits and
    hyphens only, so no title can name a path)."""
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", str(title).lower()).strip("-")[:60].strip("-")
    return f"{slug or 'mirage-pack'}.{kind}"


def make_pack(questions: Sequence[Question], title: str, author: str = "", corpus: str = "") -> dict:
    if not questions:
        raise PackError("a pack needs at least one question")
    return {"mirage_pack": PACK_FORMAT, "title": title.strip() or "Untitled quiz", "author": author.strip(),
            "corpus": corpus, "questions": [q.to_dict() for q in questions]}


def dump_pack(pack: dict, fmt: str = "json") -> str:
    if fmt == "yaml":
        return yaml.safe_dump(pack, sort_keys=False, allow_unicode=True)
    return json.dumps(pack, indent=1, ensure_ascii=False)


def save_pack(pack: dict, path: str | Path) -> Path:
    """Write atomically; the format follows the suffix (.json, .yaml, .yml)."""
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise PackError(f"save a pack as .json, .yaml or .yml, not '{path.suffix or path.name}'")
    return write_text(path, dump_pack(pack, fmt))


def read_pack(path: str | Path, index: Index | None = None) -> tuple[dict, list[Question]]:
    path = Path(path)
    if not path.is_file():
        raise PackError(f"no pack file at {path}")
    if path.stat().st_size > MAX_PACK_BYTES:
        raise PackError(f"{path.name} is larger than {MAX_PACK_BYTES // 2**20} MB: not a quiz pack")
    return parse_pack(path.read_bytes(), path.name, index)


def parse_pack(data: bytes, name: str = "pack", index: Index | None = None) -> tuple[dict, list[Question]]:
    """The pack's header and its questions, or a PackError naming the first problem."""
    if len(data) > MAX_PACK_BYTES:
        raise PackError(f"{name} is larger than {MAX_PACK_BYTES // 2**20} MB: not a quiz pack")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PackError(f"{name} is not a text file (a pack is JSON or YAML)") from None
    if _bracket_depth(text) > MAX_BRACKETS:  # before a parser recurses into it
        raise PackError(f"{name} is nested deeper than {MAX_DEPTH} levels: not a quiz pack")
    try:
        pack = json.loads(text) if text.lstrip().startswith(("{", "[")) else yaml.load(text, Loader=_PackLoader)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PackError(f"{name} is not valid JSON or YAML: {problem}") from None
    except (ValueError, RecursionError):  # e.g. an integer of 100,000 digits
        raise PackError(f"{name} holds a value too large to be part of a quiz pack") from None
    if _depth(pack) > MAX_DEPTH:
        raise PackError(f"{name} is nested deeper than {MAX_DEPTH} levels: not a quiz pack")
    if not isinstance(pack, dict) or "mirage_pack" not in pack:
        raise PackError(f"{name} is not a MIRAGE quiz pack (no 'mirage_pack' field)")
    if type(pack["mirage_pack"]) is not int or pack["mirage_pack"] != PACK_FORMAT:  # True == 1 in Python
        raise PackError(f"{name} has pack format {str(pack['mirage_pack'])[:20]}; this version reads format "
                        f"{PACK_FORMAT}")
    for key in ("title", "author", "corpus"):
        if pack.get(key) is not None and not isinstance(pack[key], str | int | float):
            raise PackError(f"{name}: '{key}' must be text")
    items = pack.get("questions")
    if not isinstance(items, list) or not items:
        raise PackError(f"{name} has no questions")
    if len(items) > MAX_QUESTIONS:
        raise PackError(f"{name} has {len(items)} questions; the limit is {MAX_QUESTIONS}")
    questions = [_question(item, number, name) for number, item in enumerate(items, 1)]
    if index is not None:
        for number, question in enumerate(questions, 1):
            missing = [i for i in _image_ids(question) if i not in index]
            if missing:
                raise PackError(f"{name}, question {number}: image {missing[0]} is not in this corpus")
    header = {"title": str(pack.get("title") or "Untitled quiz")[:200], "author": str(pack.get("author") or "")[:200],
              "corpus": str(pack.get("corpus") or "")[:1000]}
    return header, questions


def _bracket_depth(text: str) -> int:
    """The deepest bracket nesting of a text, brackets inside strings included (so only a coarse bound)."""
    depth = deepest = 0
    for character in text:
        if character in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _question(item: object, number: int, name: str) -> Question:
    where = f"{name}, question {number}"
    if not isinstance(item, dict):
        raise PackError(f"{where} is not a mapping of fields")
    if item.get("kind") not in KINDS:
        raise PackError(f"{where}: kind must be one of {', '.join(KINDS)}, not {item.get('kind')!r}")
    options = item.get("options")
    if not isinstance(options, list) or not all(
            isinstance(o, dict) and isinstance(o.get("text"), str) for o in options):
        raise PackError(f"{where}: options must be a list of mappings with a 'text'")
    if not isinstance(item.get("answer"), int) or isinstance(item.get("answer"), bool):
        raise PackError(f"{where}: answer must be the number of the correct option (0-based)")
    if not isinstance(item.get("prompt"), str):
        raise PackError(f"{where}: prompt must be text")
    for key in TEXT_FIELDS:
        if key in item and not isinstance(item[key], str):
            raise PackError(f"{where}: {key} must be text")
    texts = [item.get(key) or "" for key in TEXT_FIELDS] + [str(v) for o in options for v in o.values()]
    if any(len(text) > MAX_TEXT for text in texts):
        raise PackError(f"{where}: a text field is longer than {MAX_TEXT:,} characters")
    allowed = {"text", "record_id", "modality", "region", "why"}
    fields = {"kind", "prompt", "options", "answer", "subject_id", "topic", "difficulty", "hint", "expression"}
    try:
        question = Question.from_dict({
            **{k: v for k, v in item.items() if k in fields},
            "options": [{**{k: str(v) for k, v in o.items() if k in allowed},
                         "findings": tuple(str(f)[:200] for f in o.get("findings", ())[:50])
                         if isinstance(o.get("findings", ()), list | tuple) else ()} for o in options],
        })
    except TypeError as error:
        raise PackError(f"{where}: {error}") from None
    problem = validate(question)
    if problem:
        raise PackError(f"{where} is not sound: {problem}")
    return question


def _image_ids(question: Question) -> list[str]:
    ids = [question.subject_id] if question.subject_id else []
    return ids + [o.record_id for o in question.options if o.record_id]
