"""Corpus bundles: one archive that carries a corpus to a deployment — display-sized images, the records
(captions, labels, licences, PMC ids), a prebuilt index for one encoder and a manifest of checksums — so that
a Community Cloud start is a download and a load, not an hour of embedding.

`create_bundle` writes the archive (a .tar.gz, atomically). `install_bundle` takes a path or an http(s) URL
(`MIRAGE_BUNDLE_URL`, optionally `MIRAGE_BUNDLE_SHA256`), and trusts nothing in it: the download has a
connect timeout, a total deadline and a size cap; the archive's SHA-256 is checked when one is given; members
are extracted only if they are plain files with plain relative names, within count and size caps, into a
staging folder; every file is checked against the manifest; only then is the folder renamed into place under
`MIRAGE_HOME/bundles/`. Anything that fails leaves nothing behind that a later start could take for a bundle.
Image paths are never read from the archive: an installed index finds each image as `images/<id>.jpg`, and ids
are checked by `corpus.safe_id`.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from PIL import Image

from .corpus import Corpus, safe_id
from .errors import MirageError
from .files import atomic_path, check_writable, copy_bounded
from .images import open_image

BUNDLE_FORMAT = 1
DISPLAY_SIDE = 512
MAX_BUNDLE_BYTES = 4 * 1024**3  # the archive as downloaded
MAX_MEMBERS = 500_000
MAX_MEMBER_BYTES = 2 * 1024**3  # the index matrices of a few million rows
MAX_UNPACKED_BYTES = 8 * 1024**3
DOWNLOAD_DEADLINE_S = 1800.0
Progress = Callable[[int, int], None]


class BundleError(MirageError):
    """A bundle that cannot be used, and why."""


def create_bundle(corpus: Corpus, index, out: str | Path, progress: Progress | None = None) -> dict:
    """Write `corpus`'s images (at most `DISPLAY_SIDE` px) and `index` as one .tar.gz at `out`; returns the
    manifest. The index must have been built from this corpus (same records, same order)."""
    out = Path(out)
    if [r.id for r in index.records] != [r.id for r in corpus.records if r.id in index]:
        raise BundleError("the index was not built from this corpus: rebuild it first")
    files: dict[str, dict] = {}
    licences: dict[str, int] = {}
    with atomic_path(out) as temporary, tarfile.open(temporary, "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
            files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

        for number, record in enumerate(index.records, 1):
            image = open_image(record.image_path)
            image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            image.convert("RGB" if image.mode != "L" else "L").save(buffer, "JPEG", quality=85)
            add(f"images/{record.id}.jpg", buffer.getvalue())
            licences[record.licence] = licences.get(record.licence, 0) + 1
            if progress:
                progress(number, len(index))
        with tempfile.TemporaryDirectory() as staging:
            from .index import save_index

            save_index(index, Path(staging) / "index")
            for path in sorted((Path(staging) / "index").iterdir()):
                add(f"index/{path.name}", path.read_bytes())
        add("ATTRIBUTION.md", _attribution(index, licences).encode())
        manifest = {"mirage_bundle": BUNDLE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "corpus": corpus.name, "count": len(index), "encoder": index.manifest.get("encoder"),
                    "fingerprint": index.manifest.get("fingerprint"), "licences": licences, "files": files}
        add("bundle.json", json.dumps(manifest, indent=1).encode())
    return manifest


def _attribution(index, licences: dict[str, int]) -> str:
    lines = ["# Images in this bundle", "", "Each image belongs to the PubMed Central article named by its PMC id, "
             "under the licence given; images were resized for display. Licences: "
             + ", ".join(f"{name} ({count})" for name, count in sorted(licences.items())) + ".", "",
             "ROCO: O. Pelka, S. Koitka, J. Rückert, F. Nensa, C. M. Friedrich, \"Radiology Objects in COntext "
             "(ROCO): A Multimodal Image Dataset\", MICCAI LABELS 2018, LNCS 11043, pp. 180–189.", ""]
    lines += [f"- {r.id}: {r.pmc_id or 'PMC id unknown'} ({r.article_url or '—'}), {r.licence}" for r in index.records]
    return "\n".join(lines) + "\n"


def bundle_folder(source: str, home: str | Path, sha256: str = "") -> Path:
    """Where the bundle from `source` is (or will be) installed; it is complete when it holds bundle.json."""
    return Path(home) / "bundles" / hashlib.sha256(f"{source}|{sha256.lower()}".encode()).hexdigest()[:16]


def install_bundle(source: str, home: str | Path, sha256: str = "", progress: Progress | None = None,
                   timeout: float = 30.0, deadline: float = DOWNLOAD_DEADLINE_S) -> Path:
    """The installed bundle folder for `source` (a path or an http(s) URL), installing it first if needed."""
    target = bundle_folder(source, home, sha256)
    if (target / "bundle.json").is_file():
        return target
    home = target.parent
    check_writable(home, "the bundle folder")
    with tempfile.TemporaryDirectory(prefix=".incoming-", dir=home) as incoming:
        archive = _fetch(source, Path(incoming), timeout, deadline, progress)
        if sha256:
            actual = sha256_of(archive)
            if actual != sha256.lower():
                raise BundleError(f"the bundle's SHA-256 is {actual}, not the expected {sha256.lower()}: "
                                  "refused (a damaged or different file)")
        staging = Path(incoming) / "bundle"
        _extract(archive, staging)
        _verify(staging)
        if target.exists():  # a half-installed folder from an older release: never used, replaced
            shutil.rmtree(target)
        staging.rename(target)
    return target


def load_bundle_index(folder: str | Path, encoder=None):
    """The bundle's index, its images found inside the bundle by record id."""
    import dataclasses

    from .index import load_index

    folder = Path(folder)
    index = load_index(folder / "index", encoder)
    for row, record in enumerate(index.records):
        if not safe_id(record.id):
            raise BundleError(f"the bundle holds an unsafe record id {record.id[:40]!r}")
        index.records[row] = dataclasses.replace(record, image_path=str(folder / "images" / f"{record.id}.jpg"))
    return index


def _fetch(source: str, folder: Path, timeout: float, deadline: float, progress: Progress | None) -> Path:
    if not source.startswith(("http://", "https://")):
        if "://" in source:
            raise BundleError(f"a bundle is a local path or an http(s) URL, not '{source}'")
        path = Path(source).expanduser()
        if not path.is_file():
            raise BundleError(f"no bundle at {path}")
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise BundleError(f"{path.name} is larger than the {MAX_BUNDLE_BYTES // 2**30} GB bundle limit")
        return path
    archive = folder / "bundle.tar.gz"
    try:
        with urllib.request.urlopen(source, timeout=timeout) as response, open(archive, "wb") as handle:
            expected = int(response.headers.get("Content-Length") or 0)
            if expected > MAX_BUNDLE_BYTES:
                raise BundleError(f"the bundle is {expected / 1e9:.1f} GB, over the "
                                  f"{MAX_BUNDLE_BYTES // 2**30} GB limit")
            received = copy_bounded(response, handle, "the bundle", MAX_BUNDLE_BYTES, deadline, expected=expected,
                                    progress=progress)
    except MirageError as error:
        raise BundleError(str(error)) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise BundleError(f"cannot download the bundle from {source}: {reason}") from None
    if expected and received != expected:
        raise BundleError(f"the bundle download stopped at {received:,} of {expected:,} bytes: try again")
    return archive


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _extract(archive: Path, staging: Path) -> None:
    """Plain files with plain relative names only, within the caps; anything else refuses the whole bundle."""
    staging.mkdir()
    members = unpacked = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                members += 1
                if members > MAX_MEMBERS:
                    raise BundleError(f"the bundle has more than {MAX_MEMBERS:,} files")
                if member.isdir():
                    continue
                name = PurePosixPath(member.name)
                if not member.isfile() or name.is_absolute() or ".." in name.parts or not name.parts \
                        or name.parts[0] not in ("images", "index", "bundle.json", "ATTRIBUTION.md"):
                    raise BundleError(f"the bundle holds '{member.name[:80]}', which is not a plain file of a "
                                      "bundle: refused")
                if member.size > MAX_MEMBER_BYTES or unpacked + member.size > MAX_UNPACKED_BYTES:
                    raise BundleError(f"'{member.name[:80]}' would unpack past the bundle's size limits: refused")
                unpacked += member.size
                target = staging.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with open(target, "wb") as handle:
                    copied = 0
                    for block in iter(lambda stream=source: stream.read(1 << 20), b""):
                        copied += len(block)
                        if copied > member.size:
                            raise BundleError(f"'{member.name[:80]}' is larger than it declares: refused")
                        handle.write(block)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise BundleError(f"the bundle is not a readable .tar.gz ({error}): download it again") from None


def _verify(staging: Path) -> None:
    """Every file the manifest names is there with its size and SHA-256, and nothing else is."""
    manifest_file = staging / "bundle.json"
    try:
        manifest = json.loads(manifest_file.read_text())
        files = manifest["files"]
        if manifest.get("mirage_bundle") != BUNDLE_FORMAT or not isinstance(files, dict):
            raise ValueError("format")
    except (OSError, ValueError, KeyError, TypeError):
        raise BundleError("the bundle has no readable manifest (bundle.json): not a MIRAGE bundle") from None
    present = {str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()} - {"bundle.json"}
    if present != set(files):
        extra, missing = sorted(present - set(files)), sorted(set(files) - present)
        raise BundleError(f"the bundle's files do not match its manifest (missing {missing[:3]}, unlisted "
                          f"{extra[:3]}): refused")
    for name, expected in files.items():
        path = staging / name
        if path.stat().st_size != expected.get("bytes") or sha256_of(path) != expected.get("sha256"):
            raise BundleError(f"{name} in the bundle fails its checksum: download the bundle again")
