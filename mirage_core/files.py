"""Atomic file writes: a reader sees either the old file or the complete new one, never half of one.

Each writer writes a hidden temporary file beside its target (same folder, so the rename stays on one
file system) and renames it over the target; a write that fails removes its temporary file and leaves the
old file as it was. Folders that change as a whole (an index, a model's weights) are written beside the old
one and swapped in with two renames.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on an exception it is removed.

    The temporary name keeps the target's suffix, for writers that append one when it is missing
    (`numpy.savez` adds `.npz`).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it takes the place of `path` (the old folder is
    renamed aside, then deleted), on an exception it is deleted and the old folder stays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide an index or model folder from other users of a deployment
    try:
        yield staging
        retired = path.with_name(f".{path.name}.old-{time.time_ns()}")
        if path.exists():
            path.rename(retired)
        staging.rename(path)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, newline: str | None = None) -> Path:
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)
    return Path(path)


def write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False))
