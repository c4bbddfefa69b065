"""`mirage fetch-roco`: download a subset of ROCO's images from the PMC open-access packages.

ROCO publishes its metadata (captions, keywords, CUIs, licences, `dlinks.txt`) but not its images: each
`dlinks.txt` line names the PMC open-access package (a .tar.gz of the article) and the figure file inside
it. `fetch_roco` reads a ROCO split folder's metadata, keeps the records that pass the licence filter (up
to `limit`), downloads each package over HTTPS, extracts the figure, re-encodes it (JPEG, max side 512 px)
and writes ROCO's own layout — metadata files trimmed to the fetched records and `images/ROCO_xxxxx.jpg`.

It is resumable: images already present are skipped, a package download interrupted half-way continues
from where it stopped (HTTP Range), and every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import io
import re
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .corpus import load_corpus
from .errors import MirageError
from .files import copy_bounded, write_bytes, write_text
from .images import MAX_BYTES, open_image

PMC_BASE_URL = "https://ftp.ncbi.nlm.nih.gov/pub/pmc/"
MAX_SIDE = 512
MAX_PACKAGE_BYTES = 2 * 1024**3  # the largest PMC article packages are a few hundred MB
MAX_DOWNLOAD_SECONDS = 600.0  # one package, start to end: a server dripping bytes cannot hold a fetch forever
METADATA_FILES = ("captions.txt", "keywords.txt", "cuis.txt", "semtypes.txt", "dlinks.txt")
_PACKAGE_RE = re.compile(r"(?:ftp|https?)://[^/\s]+/pub/pmc/(\S+\.tar\.gz)")
Progress = Callable[[int, int], None]


@dataclass
class FetchReport:
    fetched: int = 0
    already_there: int = 0
    failed: Counter = field(default_factory=Counter)
    out: str = ""


def package_paths(split_folder: Path) -> dict[str, tuple[str, str]]:
    """ROCO id -> (package path under pub/pmc/, figure file name) from dlinks.txt."""
    links = {}
    dlinks = split_folder / "dlinks.txt"
    if not dlinks.exists():
        raise MirageError(f"missing {dlinks}: fetch-roco needs ROCO's dlinks.txt to find the packages")
    for line in dlinks.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        match = _PACKAGE_RE.search(parts[1]) if len(parts) >= 3 else None
        if match:
            links[parts[0].strip()] = (match.group(1), parts[2].strip())
    return links


def fetch_roco(
    source: str | Path, out: str | Path, split: str | None = None, licences: str | None = None,
    limit: int | None = None, base_url: str = PMC_BASE_URL, cache: str | Path | None = None,
    progress: Progress | None = None, timeout: float = 60.0, deadline: float | None = None,
) -> FetchReport:
    """Download up to `limit` images of a ROCO split (metadata at `source`) into `out` in ROCO's layout.

    `timeout` bounds each network read, `deadline` each package's whole download (`MAX_DOWNLOAD_SECONDS`)."""
    deadline = MAX_DOWNLOAD_SECONDS if deadline is None else deadline
    if not re.match(r"https?://[^/\s]+", base_url or ""):
        raise MirageError(f"--base-url must be an http(s) address, not '{base_url}'")
    corpus = load_corpus(source, split=split, licences=licences, check_images=False)
    split_folder = Path(corpus.name)
    links = package_paths(split_folder)
    records = [r for r in corpus.records if r.id in links][: limit or None]
    if not records:
        raise MirageError(f"no records of {split_folder} have a download link that passes the filters")
    out = Path(out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache else out / ".packages"
    cache.mkdir(parents=True, exist_ok=True)
    report = FetchReport(out=str(out))
    kept = []
    for number, record in enumerate(records, 1):
        target = images / f"{record.id}.jpg"  # ids passed corpus.safe_id, so this stays in `images`
        if target.exists():
            report.already_there += 1
            kept.append(record.id)
        else:
            package, figure = links[record.id]
            try:
                archive = _download(base_url.rstrip("/") + "/" + package, cache / Path(package).name, timeout,
                                    deadline)
                _save_figure(_extract(archive, figure), target)
                report.fetched += 1
                kept.append(record.id)
            except (OSError, urllib.error.URLError, tarfile.TarError, MirageError) as error:
                report.failed[type(error).__name__ if not isinstance(error, MirageError) else str(error)] += 1
        if progress:
            progress(number, len(records))
    _write_metadata(split_folder, out, set(kept))
    return report


def _download(url: str, path: Path, timeout: float, deadline: float) -> Path:
    """Download to `path` (kept as a cache) through a `.part` file, renamed into place when whole. A `.part` that
    a killed run left behind is resumed with an HTTP Range request; a download that fails or stalls while this
    run watches deletes its `.part` (a half package is never left to be mistaken for data)."""
    if path.exists():
        return path
    partial = path.with_name(path.name + ".part")
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            mode = "ab" if offset and response.status == 206 else "wb"  # a server that ignores Range restarts
            with open(partial, mode) as handle:
                copy_bounded(response, handle, Path(url).name, MAX_PACKAGE_BYTES, deadline,
                             already=offset if mode == "ab" else 0)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _extract(archive: Path, figure: str) -> bytes:
    """The figure's bytes; a member larger than an image may be (`MAX_BYTES`) is refused before it is read."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.isfile() and Path(member.name).name == figure:
                if member.size > MAX_BYTES:
                    raise MirageError(f"figure {figure} in {archive.name} declares {member.size / 1e6:.0f} MB: "
                                      "too large for an image")
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read(MAX_BYTES + 1)
    raise MirageError(f"figure {figure} not in {archive.name}")


def _save_figure(data: bytes, target: Path) -> None:
    image = open_image(data, target.name)
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB" if image.mode != "L" else "L").save(buffer, "JPEG", quality=85)
    write_bytes(target, buffer.getvalue())


def _write_metadata(source: Path, out: Path, ids: set[str]) -> None:
    """ROCO's metadata files, trimmed to the records that have an image in `out`."""
    for name in (*METADATA_FILES, "licences.txt"):
        path = source / name
        if not path.exists() or (path.resolve() == (out / name).resolve()):
            continue
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        separator = "," if name == "licences.txt" else "\t"
        kept = [line for i, line in enumerate(lines)
                if line.split(separator, 1)[0].strip() in ids or (name == "licences.txt" and i == 0)]
        write_text(out / name, "".join(kept))
