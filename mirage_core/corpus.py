"""Radiology corpora as lists of `Record`s: ROCO's own layout, ROCOv2's CSVs, or a folder with a CSV.

`load_corpus(path, split=None, licences=None)` recognises the format from what is in `path`:

* a ROCO split folder (`…/data/test/radiology` with `captions.txt`, `keywords.txt`, `cuis.txt`,
  `semtypes.txt`, `licences.txt`, `dlinks.txt` and `images/ROCO_xxxxx.jpg`), or a ROCO root together
  with `split` (`root/data/<split>/radiology`);
* a ROCOv2 folder (`<split>_captions.csv` with ID,Caption; optional `<split>_concepts.csv` with ID,CUIs
  separated by `;`; images in `<split>/`, `<split>_images/` or `images/`);
* a CSV file (or a folder holding exactly one) with an image path column and a caption column;
  paths are relative to the CSV's folder. Optional columns: licence, pmc_id.

Lines that are malformed and images that are missing or unreadable are skipped and counted in
`Corpus.skipped`, never a crash; a missing captions file is a `CorpusError` that names it.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .errors import CorpusError
from .labels import label_record

PMC_ARTICLE_URL = "https://www.ncbi.nlm.nih.gov/pmc/articles/{pmc_id}/"
LICENCE_URLS = {
    "CC BY": "https://creativecommons.org/licenses/by/4.0/",
    "CC0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC BY-SA": "https://creativecommons.org/licenses/by-sa/4.0/",
    "CC BY-NC": "https://creativecommons.org/licenses/by-nc/4.0/",
    "CC BY-NC-SA": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "CC BY-NC-ND": "https://creativecommons.org/licenses/by-nc-nd/4.0/",
    "CC BY-ND": "https://creativecommons.org/licenses/by-nd/4.0/",
}
_PMC_RE = re.compile(r"PMC\d+")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Record:
    """One image with its caption and everything ROCO says about it."""

    id: str
    image_path: str
    caption: str
    keywords: tuple[str, ...] = ()
    cuis: tuple[str, ...] = ()
    semtypes: tuple[str, ...] = ()
    licence: str = "unknown"
    pmc_id: str = ""
    figure_file: str = ""
    modality: str = "unknown"
    region: str = "unknown"

    @property
    def article_url(self) -> str:
        return PMC_ARTICLE_URL.format(pmc_id=self.pmc_id) if self.pmc_id else ""

    @property
    def licence_url(self) -> str:
        return LICENCE_URLS.get(self.licence, "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("keywords", "cuis", "semtypes"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)

    def labelled(self) -> Record:
        """This record with its modality and region derived afresh (see `labels`)."""
        labels = label_record(self)
        return dataclasses.replace(self, modality=labels.modality, region=labels.region)


@dataclass
class Corpus:
    """The records of one corpus plus what was skipped while reading it, and why."""

    name: str
    records: list[Record]
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.records)

    def summary(self) -> dict:
        return {"name": self.name, "records": len(self.records), "skipped": dict(self.skipped)}


def normalise_licence(text: str) -> str:
    """'cc-by' / 'CC BY 4.0' / 'CC BY' -> 'CC BY'; 'cc0' -> 'CC0'."""
    cleaned = re.sub(r"[\s_\-]+", " ", text.strip().upper())
    cleaned = re.sub(r"\s+\d+(\.\d+)?$", "", cleaned)
    return "CC0" if cleaned.replace(" ", "") == "CC0" else cleaned or "unknown"


def parse_licence_filter(spec: str | None) -> set[str] | None:
    """'CC BY,CC0' -> {'CC BY', 'CC0'}; empty or None -> no filter."""
    if not spec:
        return None
    wanted = {normalise_licence(part) for part in spec.split(",") if part.strip()}
    return wanted or None


def corpus_paths(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """The folders or files of a corpus setting: one path, a list, or paths joined by ':' (os.pathsep)."""
    items = [spec] if isinstance(spec, str | Path) else list(spec)
    return [Path(part).expanduser() for item in items for part in str(item).split(os.pathsep) if part.strip()]


def load_corpora(
    spec: str | Path | Sequence[str | Path],
    split: str | None = None,
    licences: set[str] | str | None = None,
    check_images: bool = True,
) -> Corpus:
    """Several corpora read as one (see `corpus_paths`); the licence filter applies to all, and an id seen in
    an earlier corpus is skipped in a later one (counted as a duplicate)."""
    paths = corpus_paths(spec)
    if not paths:
        raise CorpusError("no corpus given")
    if len(paths) == 1:
        return load_corpus(paths[0], split, licences, check_images)
    parts = [load_corpus(path, split, licences, check_images) for path in paths]
    records, seen, skipped = [], set(), Counter()
    for part in parts:
        skipped.update(part.skipped)
        for record in part.records:
            if record.id in seen:
                skipped["duplicate id"] += 1
                continue
            seen.add(record.id)
            records.append(record)
    return Corpus(name=os.pathsep.join(part.name for part in parts), records=records, skipped=skipped)


def load_corpus(
    path: str | Path,
    split: str | None = None,
    licences: set[str] | str | None = None,
    check_images: bool = True,
) -> Corpus:
    """Read any supported corpus format at `path` (see the module docstring)."""
    path = Path(path).expanduser()
    if isinstance(licences, str):
        licences = parse_licence_filter(licences)
    if not path.exists():
        raise CorpusError(f"corpus not found: {path}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise CorpusError(f"{path} is a file but not a .csv: give a ROCO folder or a CSV of image,caption")
        corpus = _read_csv_corpus(path)
    elif _looks_like_roco_split(path):
        corpus = _read_roco_split(path)
    elif split_dir := _roco_split_dir(path, split):
        corpus = _read_roco_split(split_dir)
    elif v2_split := _rocov2_split(path, split):
        corpus = _read_rocov2(path, v2_split)
    else:
        csvs = sorted(path.glob("*.csv"))
        if len(csvs) == 1:
            corpus = _read_csv_corpus(csvs[0])
        else:
            raise CorpusError(
                f"{path} is not a corpus folder: expected ROCO's captions.txt (a split folder such as "
                "…/data/test/radiology), a ROCO root with --split, ROCOv2's <split>_captions.csv, "
                "or a CSV of image,caption"
            )
    return _finish(corpus, licences, check_images)


def _looks_like_roco_split(folder: Path) -> bool:
    roco_files = ("captions.txt", "keywords.txt", "cuis.txt", "semtypes.txt", "licences.txt", "dlinks.txt")
    return any((folder / name).exists() for name in roco_files)


def _roco_split_dir(root: Path, split: str | None) -> Path | None:
    candidates = {}
    for base in (root / "data", root):
        if base.is_dir():
            for child in sorted(base.iterdir()):
                if (child / "radiology" / "captions.txt").exists():
                    candidates.setdefault(child.name, child / "radiology")
    if not candidates:
        return None
    if split is None:
        if len(candidates) == 1:
            return next(iter(candidates.values()))
        raise CorpusError(f"{root} holds several ROCO splits ({', '.join(candidates)}): choose one with --split")
    if split not in candidates:
        raise CorpusError(f"split '{split}' not found in {root}; it has: {', '.join(candidates)}")
    return candidates[split]


def _rocov2_split(root: Path, split: str | None) -> str | None:
    splits = sorted(p.name[: -len("_captions.csv")] for p in root.glob("*_captions.csv"))
    if not splits:
        return None
    if split is None:
        if len(splits) == 1:
            return splits[0]
        raise CorpusError(f"{root} holds several ROCOv2 splits ({', '.join(splits)}): choose one with --split")
    if split not in splits:
        raise CorpusError(f"split '{split}' not found in {root}; it has: {', '.join(splits)}")
    return split


def _read_tab_lists(path: Path, skipped: Counter, pairs: bool = False) -> dict[str, tuple[str, ...]]:
    """ROCO's `ID<TAB><TAB>a<TAB>b ...` files; for semtypes, keep the names of the code/name pairs."""
    if not path.exists():
        return {}
    result: dict[str, tuple[str, ...]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = [p.strip() for p in line.split("\t")]
        if not parts[0]:
            if line.strip():
                skipped[f"malformed line in {path.name}"] += 1
            continue
        values = [p for p in parts[1:] if p]
        if pairs:
            values = [f"{code} {name}" for code, name in zip(values[::2], values[1::2])]
        result[parts[0]] = tuple(values)
    return result


def _read_roco_split(folder: Path) -> Corpus:
    captions_file = folder / "captions.txt"
    if not captions_file.exists():
        raise CorpusError(f"missing caption file: {captions_file}")
    skipped: Counter = Counter()
    keywords = _read_tab_lists(folder / "keywords.txt", skipped)
    cuis = _read_tab_lists(folder / "cuis.txt", skipped)
    semtypes = _read_tab_lists(folder / "semtypes.txt", skipped, pairs=True)
    licences, figures = _read_roco_licences(folder / "licences.txt", skipped)
    dlink_pmc = _read_roco_dlinks(folder / "dlinks.txt", figures)

    records = []
    for line in captions_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        record_id, sep, caption = line.partition("\t")
        record_id, caption = record_id.strip(), caption.strip()
        if not sep or not record_id or not caption:
            skipped["malformed line in captions.txt"] += 1
            continue
        pmc_id, licence = licences.get(record_id, ("", "unknown"))
        records.append(
            Record(
                id=record_id,
                image_path=str(folder / "images" / f"{record_id}.jpg"),
                caption=caption,
                keywords=keywords.get(record_id, ()),
                cuis=cuis.get(record_id, ()),
                semtypes=semtypes.get(record_id, ()),
                licence=licence,
                pmc_id=pmc_id or dlink_pmc.get(record_id, ""),
                figure_file=figures.get(record_id, ""),
            )
        )
    return Corpus(name=str(folder), records=records, skipped=skipped)


def _read_roco_licences(path: Path, skipped: Counter) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """licences.txt: CSV `ROCO_ID,PMC_ID,CC` where PMC_ID is `PMCnnn_<figure file>`."""
    licences: dict[str, tuple[str, str]] = {}
    figures: dict[str, str] = {}
    if not path.exists():
        return licences, figures
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.reader(handle):
            if not row or row[0].strip() in ("", "ROCO_ID"):
                continue
            if len(row) < 3:
                skipped["malformed line in licences.txt"] += 1
                continue
            record_id, original, licence = (cell.strip() for cell in row[:3])
            match = _PMC_RE.match(original)
            pmc_id = match.group(0) if match else ""
            licences[record_id] = (pmc_id, normalise_licence(licence))
            figures[record_id] = original[len(pmc_id) + 1 :] if pmc_id else original
    return licences, figures


def _read_roco_dlinks(path: Path, figures: dict[str, str]) -> dict[str, str]:
    """dlinks.txt: `ROCO_ID<TAB>wget …/PMCnnn.tar.gz …<TAB>figure file`; fills PMC ids and figure names."""
    pmc_ids: dict[str, str] = {}
    if not path.exists():
        return pmc_ids
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        match = _PMC_RE.search(parts[1])
        if match:
            pmc_ids[parts[0].strip()] = match.group(0)
        if len(parts) >= 3 and parts[0].strip() not in figures:
            figures[parts[0].strip()] = parts[2].strip()
    return pmc_ids


def _read_rocov2(root: Path, split: str) -> Corpus:
    skipped: Counter = Counter()
    candidates = (root / split, root / f"{split}_images" / split, root / f"{split}_images", root / "images")
    image_dir = next((d for d in candidates if d.is_dir()), root / split)
    concepts: dict[str, tuple[str, ...]] = {}
    concepts_file = root / f"{split}_concepts.csv"
    if concepts_file.exists():
        for row in _csv_rows(concepts_file, skipped):
            if len(row) >= 2:
                concepts[row[0].strip()] = tuple(c.strip() for c in row[1].split(";") if c.strip())
    records = []
    for row in _csv_rows(root / f"{split}_captions.csv", skipped):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            skipped[f"malformed line in {split}_captions.csv"] += 1
            continue
        record_id = row[0].strip()
        image = _find_image(image_dir, record_id)
        records.append(
            Record(id=record_id, image_path=str(image), caption=row[1].strip(), cuis=concepts.get(record_id, ()))
        )
    return Corpus(name=f"{root}:{split}", records=records, skipped=skipped)


def _find_image(folder: Path, stem: str) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return folder / f"{stem}.jpg"


def _csv_rows(path: Path, skipped: Counter) -> list[list[str]]:
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        rows = list(csv.reader(handle))
    if rows and rows[0] and rows[0][0].strip().lower() in ("id", "image_id"):
        rows = rows[1:]
    return [row for row in rows if any(cell.strip() for cell in row)]


def _pmc_id(text: str) -> str:
    """'PMC123' from a cell, or '' when the cell is not a PMC id (it becomes part of a link)."""
    return text.strip() if _PMC_RE.fullmatch(text.strip()) else ""


def _read_csv_corpus(path: Path) -> Corpus:
    skipped: Counter = Counter()
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        raise CorpusError(f"{path} has no rows: expected image,caption")
    header = [cell.strip().lower() for cell in rows[0]]
    image_names = ("image", "image_path", "path", "file", "filename")
    image_col = next((i for i, h in enumerate(header) if h in image_names), None)
    caption_col = next((i for i, h in enumerate(header) if h in ("caption", "text")), None)
    if image_col is not None and caption_col is not None:
        rows = rows[1:]
    else:
        image_col, caption_col, header = 0, 1, []
    extra = {name: header.index(name) for name in ("id", "licence", "license", "pmc_id") if name in header}
    records = []
    for number, row in enumerate(rows, start=1):
        if len(row) <= max(image_col, caption_col) or not row[image_col].strip() or not row[caption_col].strip():
            skipped[f"malformed line in {path.name}"] += 1
            continue
        # Lexically, not through links: a link placed in the folder by its owner is theirs to trust,
        # while '../x' or '/etc/x' in a cell would read any file on the server.
        image = Path(os.path.normpath(path.parent.absolute() / row[image_col].strip()))
        if not image.is_relative_to(path.parent.absolute()):
            skipped["image path outside the corpus folder"] += 1
            continue
        licence_col = extra.get("licence", extra.get("license"))
        records.append(
            Record(
                id=row[extra["id"]].strip() if "id" in extra else image.stem or f"row{number}",
                image_path=str(image),
                caption=row[caption_col].strip(),
                licence=normalise_licence(row[licence_col]) if licence_col is not None else "unknown",
                pmc_id=_pmc_id(row[extra["pmc_id"]]) if "pmc_id" in extra else "",
            )
        )
    return Corpus(name=str(path), records=records, skipped=skipped)


def _image_readable(path: str) -> str | None:
    """None if the file's header decodes as an image; otherwise why not."""
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 - reading the header is the check
    except FileNotFoundError:
        return "missing image"
    except Exception:  # PIL raises many types for garbage files
        return "corrupt image"
    return None


def safe_id(record_id: str) -> bool:
    """True for an id that can name a file: letters, digits, '.', '_', '-', no '..', at most 128 characters.
    Ids come from untrusted files and become file names (`images/<id>.jpg`), so '../x' or '/etc/x' never may."""
    return bool(_SAFE_ID.fullmatch(record_id)) and ".." not in record_id


def _finish(corpus: Corpus, licences: set[str] | None, check_images: bool) -> Corpus:
    kept = []
    seen: set[str] = set()
    for record in corpus.records:
        if not safe_id(record.id):
            corpus.skipped["unsafe id"] += 1
            continue
        if record.id in seen:
            corpus.skipped["duplicate id"] += 1
            continue
        seen.add(record.id)
        if licences is not None and record.licence not in licences:
            corpus.skipped["licence filtered"] += 1
            continue
        if check_images and (problem := _image_readable(record.image_path)):
            corpus.skipped[problem] += 1
            continue
        kept.append(record.labelled())
    corpus.records = kept
    return corpus
