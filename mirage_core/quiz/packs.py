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
SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


class PackError(MirageError):
    """A pack file that cannot be used, and why."""


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
    try:
        pack = json.loads(text) if text.lstrip().startswith(("{", "[")) else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise PackError(f"{name} is not valid JSON or YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(pack, dict) or "mirage_pack" not in pack:
        raise PackError(f"{name} is not a MIRAGE quiz pack (no 'mirage_pack' field)")
    if pack["mirage_pack"] != PACK_FORMAT:
        raise PackError(f"{name} has pack format {pack['mirage_pack']!r}; this version reads format {PACK_FORMAT}")
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
    header = {"title": str(pack.get("title") or "Untitled quiz"), "author": str(pack.get("author") or ""),
              "corpus": str(pack.get("corpus") or "")}
    return header, questions


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
    allowed = {"text", "record_id", "modality", "region"}
    fields = {"kind", "prompt", "options", "answer", "subject_id", "topic", "difficulty", "hint", "expression"}
    try:
        question = Question.from_dict({
            **{k: v for k, v in item.items() if k in fields},
            "options": [{k: str(v) for k, v in o.items() if k in allowed} for o in options],
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
