"""Atomic file writes: a reader sees either the old file or the complete new one, never half of one.

Each writer writes a hidden temporary file beside its target (same folder, so the rename stays on one
file system) and renames it over the target; a write that fails removes its temporary file and leaves the
old file as it was. Folders that change as a whole (an index, a model's weights) are written beside the old
one and swapped in with two renames; `recover_folder` finishes a swap that a killed process left half done and
clears what such processes left behind.
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
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".new", dir=path.parent))
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


def recover_folder(path: str | Path, complete_marker: str) -> bool:
    """Make `path` whole again after a writer of `atomic_folder` was killed; True when `path` then exists.

    A kill between the two renames leaves no `path` but a complete copy beside it: the old folder renamed
    aside (`.NAME.old-*`), or a staging folder (`.NAME.PID.*.new`) that holds `complete_marker`, the file its
    writer writes last. The newest complete staging folder wins, else the newest old one. Leftovers of dead
    writers are deleted; a staging folder whose writer is still running is left alone."""
    path = Path(path)
    if not path.parent.is_dir():
        return False
    old = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    staging = [p for p in path.parent.glob(f".{path.name}.*.new") if not _writer_alive(p, path.name)]
    if not path.exists():
        complete = sorted((p for p in staging if (p / complete_marker).is_file()), key=lambda p: p.stat().st_mtime)
        chosen = complete[-1] if complete else (old[-1] if old else None)
        if chosen is not None:
            chosen.rename(path)
    for leftover in [*old, *staging]:
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)
    return path.exists()


def _writer_alive(staging: Path, name: str) -> bool:
    pid = staging.name[len(name) + 2:].split(".", 1)[0]
    if not pid.isdigit():
        return False  # an older release's staging folder: its writer is long gone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True  # running (this very process too: another thread may be writing it now)


def writable(folder: str | Path) -> bool:
    """Whether this user can create files in `folder` (or create it), on a file system not mounted read-only
    (root can write anywhere else, so permission bits alone do not tell)."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        return os.access(existing, os.W_OK | os.X_OK) and not os.statvfs(existing).f_flag & os.ST_RDONLY
    except OSError:
        return False


def check_writable(folder: str | Path, what: str) -> None:
    """Fail now, with a message, rather than after minutes of work whose result could not be saved."""
    from .errors import MirageError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check."):
            pass
    except OSError as error:
        raise MirageError(f"{what} {folder} is not writable ({error.strerror or error}): set MIRAGE_HOME (or --out) "
                          "to a folder this user can write") from None


def copy_bounded(source, handle, what: str, max_bytes: int, deadline: float, already: int = 0,
                 expected: int = 0, progress=None) -> int:
    """Copy a stream (a network response) to an open file, refusing past `max_bytes` in all or `deadline`
    seconds of wall time — a server that drips a byte at a time never beats a read timeout alone. Returns the
    bytes written, `already` included; `progress(done, expected)` is told as it goes."""
    from .errors import MirageError

    started, written = time.monotonic(), already
    # read1 returns what has arrived: read(n) would wait for all n bytes, and a dripping server never sends them
    read = getattr(source, "read1", source.read)
    for block in iter(lambda: read(1 << 16), b""):
        written += len(block)
        if written > max_bytes:
            raise MirageError(f"{what} is larger than the {max_bytes / 2**30:.0f} GB limit: not downloaded")
        if time.monotonic() - started > deadline:
            raise MirageError(f"{what}: the download took longer than {deadline:.0f} s; try again later")
        handle.write(block)
        if progress and expected:
            progress(written, expected)
    return written
