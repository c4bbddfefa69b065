"""Builders for small corpora on disk, in each supported layout."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image


def write_csv_slice(path: Path, records) -> Path:
    """A plain CSV corpus (id, image, caption, licence, pmc_id) of existing records' images."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "caption", "licence", "pmc_id"])
        for record in records:
            writer.writerow([record.id, record.image_path, record.caption, record.licence, record.pmc_id])
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
