"""Hostile input: files, corpora and packs made to hurt. Each gives a clear message (or the right image),
never a traceback, a write outside its folder, or unbounded memory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from helpers import write_roco_split
from PIL import Image

from mirage_core.cli import main
from mirage_core.corpus import load_corpus
from mirage_core.display import inert
from mirage_core.errors import ImageError
from mirage_core.images import open_image
from mirage_core.quiz.packs import PackError, parse_pack

# --- images -------------------------------------------------------------------------------------------------


def _png(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **save)
    return buffer.getvalue()


def _dicom(pixels: np.ndarray, preamble: bool = True, deflate: bool = False, rows: int | None = None,
           columns: int | None = None, **attributes) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian if deflate else ExplicitVRLittleEndian
    dataset = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    colour = pixels.ndim == 4 or (pixels.ndim == 3 and pixels.shape[-1] == 3 and "NumberOfFrames" not in attributes)
    frame = pixels.shape[1:3] if pixels.ndim == 4 or (pixels.ndim == 3 and not colour) else pixels.shape[:2]
    dataset.Rows, dataset.Columns = rows or frame[0], columns or frame[1]
    dataset.SamplesPerPixel = 3 if colour else 1
    dataset.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        dataset.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = bits, bits, bits - 1, 0
    for key, value in attributes.items():
        setattr(dataset, key, value)
    dataset.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data if preamble else data[132:]


def _deflated_dicom_bomb(side: int = 12000) -> bytes:
    """A deflated DICOM whose pixel data inflates to side² 16-bit pixels, written without allocating them."""
    header = _dicom(np.zeros((2, 2), np.uint16), deflate=True)
    small = _dicom(np.zeros((2, 2), np.uint16))
    # Rebuild the data set by hand: the header of `small` up to its pixel data, then a huge zero run.
    from pydicom import dcmread
    from pydicom.filereader import _read_file_meta_info, read_preamble

    stream = io.BytesIO(header)
    read_preamble(stream, False)
    _read_file_meta_info(stream)
    meta_part = header[: stream.tell()]
    dataset = dcmread(io.BytesIO(small))
    dataset.Rows = dataset.Columns = side
    body = io.BytesIO()
    dataset.PixelData = b""
    dataset.save_as(body, enforce_file_format=True)
    plain = body.getvalue()
    stream = io.BytesIO(plain)
    read_preamble(stream, False)
    _read_file_meta_info(stream)
    elements = plain[stream.tell():]
    pixel_tag = b"\xe0\x7f\x10\x00OW\x00\x00"
    start = elements.index(pixel_tag)
    elements = elements[:start] + pixel_tag + (side * side * 2).to_bytes(4, "little")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    deflated = compressor.compress(elements)
    for _ in range(side * side * 2 // len(chunk)):
        deflated += compressor.compress(chunk)
    deflated += compressor.flush()
    return meta_part + deflated


def _exif_rotated() -> bytes:
    image = Image.new("L", (40, 20), 0)
    image.paste(255, (0, 0, 10, 20))  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def _gradient_16bit() -> bytes:
    ramp = np.tile(np.linspace(1000, 3000, 64, dtype=np.uint16), (32, 1))
    return _png(Image.fromarray(ramp))


BAD_IMAGES = {
    "empty.png": (b"", "empty"),
    "garbage.jpg": (b"\x00\x01garbage" * 50, "not a readable image"),
    "truncated.png": (_png(Image.new("RGB", (64, 64), 9))[:60], "truncated or corrupt|not a readable image"),
    "bomb.png": (_png(Image.new("1", (12000, 12000))), "decompression bomb|too large"),
    "sliver.png": (_png(Image.new("L", (20000, 10))), "too elongated"),
    "gif.gif": (b"GIF89a" + bytes(20), "not supported|not a readable image"),
    "pdf.png": (b"%PDF-1.4\n" + bytes(100), "not a readable image"),
    "nopixels.dcm": (_dicom(np.zeros((2, 2), np.uint16))[:-16], "DICOM|no pixel data"),
    "huge-rows.dcm": (_dicom(np.zeros((4, 4), np.uint16), rows=30000, columns=30000), "too large"),
    "deflate-bomb.dcm": (_deflated_dicom_bomb(), "decompression bomb"),
    "fake.dcm": (b"\x08\x00" + bytes(300), "DICOM file cannot be decoded|no pixel data"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_images_are_clear_errors(name):
    data, message = BAD_IMAGES[name]
    with pytest.raises(ImageError, match=message) as caught:
        open_image(data, name)
    assert "object at 0x" not in str(caught.value) and str(caught.value).startswith(name)


def test_hostile_uploads_stay_within_memory(tmp_path):
    """Every bad image above, decoded in one fresh process: its peak resident memory stays under 1.5 GB."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    for name, (data, _) in BAD_IMAGES.items():
        (folder / name).write_bytes(data)
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from mirage_core.images import open_image
        from mirage_core.errors import ImageError
        for path in sorted(Path({str(folder)!r}).iterdir()):
            try:
                open_image(path.read_bytes(), path.name)
                print("decoded", path.name)
            except ImageError:
                pass
        # VmHWM, not ru_maxrss: the latter keeps the forking parent's size across exec
        status = Path("/proc/self/status").read_text()
        print(int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) // 1024)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert "decoded" not in lines
    assert int(lines[-1]) < 1500, f"peak {lines[-1]} MB"


def test_dicom_with_non_numeric_window_uses_the_pixels():
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    data = _dicom(pixels, WindowCenter="40", WindowWidth="400")
    centre = b"\x28\x00\x50\x10DS\x02\x0040"  # (0028,1050) DS "40": made non-numeric in the file itself
    assert centre in data
    image = open_image(data.replace(centre, centre[:-2] + b"ab"), "w.dcm")
    values = np.asarray(image)
    assert image.mode == "L" and values.min() == 0 and values.max() == 255


def test_dicom_with_nan_rescale_slope_is_not_black():
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    data = _dicom(pixels, RescaleSlope="1", RescaleIntercept="0")
    slope = b"\x28\x00\x53\x10DS\x02\x001 "
    assert slope in data
    image = open_image(data.replace(slope, slope[:-4] + b"\x04\x00NaN "), "nan.dcm")
    assert np.asarray(image).std() > 50


def test_multiframe_rgb_dicom_shows_the_middle_frame():
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    frames[1, ..., 0] = 200  # the middle frame is red
    frames[1, 0, 0, 0] = 0
    image = open_image(_dicom(frames, NumberOfFrames=3), "rgb.dcm")
    assert image.mode == "RGB" and image.size == (16, 16)
    red, green, _ = np.asarray(image).mean((0, 1))
    assert red > 150 and green < 10


def test_dicom_without_preamble_is_read():
    pixels = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    image = open_image(_dicom(pixels, preamble=False), "bare.dcm")
    assert image.size == (32, 32) and np.asarray(image).std() > 50


def test_16_bit_png_is_windowed_not_white():
    values = np.asarray(open_image(_gradient_16bit(), "16bit.png"))
    assert (values == 255).mean() < 0.05 and values.std() > 50


def test_exif_orientation_is_applied():
    image = open_image(_exif_rotated(), "phone.jpg")
    assert image.size == (20, 40)
    values = np.asarray(image.convert("L"))
    assert values[:10].mean() > 200 and values[-10:].mean() < 50  # the band is now on top


def test_cli_image_search_with_a_bomb_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bomb.dcm"
    path.write_bytes(BAD_IMAGES["deflate-bomb.dcm"][0])
    assert main(["search", "--image", str(path), "--index", str(tmp_path / "no-index")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err


# --- corpora ---------------------------------------------------------------------------------------------------


def test_roco_ids_that_leave_the_folder_are_skipped(tmp_path):
    split = write_roco_split(tmp_path / "split", n=3)
    with (split / "captions.txt").open("a") as handle:
        handle.write("../../pwned\tcaption that climbs out\n/etc/passwd\tabsolute id\n")
    corpus = load_corpus(split, check_images=False)
    assert all("/" not in r.id and ".." not in r.id for r in corpus.records)
    assert corpus.skipped["unsafe id"] == 2


def test_rocov2_absolute_ids_and_duplicates_are_skipped(tmp_path):
    (tmp_path / "test").mkdir()
    for name in ("a", "b"):
        Image.new("L", (8, 8)).save(tmp_path / "test" / f"{name}.jpg")
    (tmp_path / "test_captions.csv").write_text(
        "ID,Caption\na,first\na,first again\n/etc/hostname,absolute\n../test/b,climbing\nb,second\n")
    corpus = load_corpus(tmp_path)
    assert [r.id for r in corpus.records] == ["a", "b"]
    assert corpus.skipped["unsafe id"] == 2 and corpus.skipped["duplicate id"] == 1


def test_csv_paths_outside_the_corpus_folder_are_skipped(tmp_path):
    outside = tmp_path / "secret.png"
    Image.new("L", (8, 8)).save(outside)
    folder = tmp_path / "corpus"
    folder.mkdir()
    Image.new("L", (8, 8)).save(folder / "ok.png")
    (folder / "corpus.csv").write_text(
        f"image,caption,pmc_id\nok.png,fine,PMC1\n../secret.png,escapes,PMC2\n{outside},absolute,PMC3\n"
        "ok.png,bad pmc,x) ![a](http://evil\n")
    corpus = load_corpus(folder / "corpus.csv")
    assert [r.image_path for r in corpus.records] == [str((folder / "ok.png").resolve())]
    assert corpus.skipped["image path outside the corpus folder"] == 2


def test_a_records_line_that_is_a_list_is_a_clear_error(tmp_path, lite_index_dir, capsys):
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(lite_index_dir, copy)
    with (copy / "records.jsonl").open("a") as handle:
        handle.write("[1, 2, 3]\n")
    assert main(["search", "chest", "--index", str(copy)]) == 2
    assert "records.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["images.npy", "bias.npy"])
def test_zero_byte_index_arrays_are_clear_errors(tmp_path, lite_index_dir, capsys, name):
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(lite_index_dir, copy)
    if not (copy / name).exists():
        pytest.skip(f"this index has no {name}")
    (copy / name).write_bytes(b"")
    assert main(["search", "chest", "--index", str(copy)]) == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err


def test_a_nan_row_in_the_index_is_refused(tmp_path, lite_index_dir, capsys):
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(lite_index_dir, copy)
    images = np.load(copy / "images.npy")
    images[0] = np.nan
    np.save(copy / "images.npy", images)
    assert main(["search", "chest", "--index", str(copy)]) == 2
    assert "not finite" in capsys.readouterr().err


# --- packs -----------------------------------------------------------------------------------------------------

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9)
) + "mirage_pack: 1\ntitle: *j\n"

BAD_PACKS = {
    "alias-bomb.yaml": (ALIAS_BOMB, "aliases"),
    "million-aliases.yaml": ("mirage_pack: 1\nx: &x y\nq: [" + "*x, " * 300_000 + "*x]\n", "aliases"),
    "deep.json": ('{"mirage_pack": 1, "questions": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper"),
    "deep.yaml": ("mirage_pack: 1\nquestions: " + "[" * 50 + "]" * 50 + "\n", "nested deeper"),
    "big-int.json": ('{"mirage_pack": ' + "9" * 100_000 + "}", "too large"),
    "big-int.yaml": ("mirage_pack: " + "9" * 100_000 + "\n", "too large|pack format"),
    "bool-format.yaml": ("mirage_pack: true\nquestions: [1]\n", "pack format"),
    "title-mapping.json": (json.dumps({"mirage_pack": 1, "title": {"a": 1}, "questions": [{}]}), "title"),
}


@pytest.mark.parametrize("name", sorted(BAD_PACKS))
def test_hostile_packs_are_refused_quickly(name):
    import time

    text, message = BAD_PACKS[name]
    started = time.monotonic()
    with pytest.raises(PackError, match=message):
        parse_pack(text.encode(), name)
    assert time.monotonic() - started < 10


def test_a_pack_whose_topic_is_a_mapping_is_refused():
    options = [{"text": name, "modality": name} for name in ("CT", "MRI", "X-ray", "ultrasound")]
    question = {"kind": "modality", "prompt": "Which modality?", "options": options, "answer": 0,
                "subject_id": "ROCO_00001", "topic": {"nested": "mapping"}}
    with pytest.raises(PackError, match="topic must be text"):
        parse_pack(json.dumps({"mirage_pack": 1, "questions": [question]}).encode(), "p.json")


# --- text shown in the app --------------------------------------------------------------------------------------

HOSTILE_TEXTS = [
    '<iframe srcdoc="<script>parent.alert(parent.document.cookie)</script>">',
    "<form><input type=password name=p></form><style>body{display:none}</style>",
    "![x](https://example.invalid/track.png)",
    "costs $5 and $10",
    "# Heading\n- list",
    ":red[restyled] :material/warning:",
    "[click](javascript:alert(1))",
    "`code` *bold* _it_ ~~strike~~ | table |",
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_inert_text_has_no_markdown_left(text):
    import markdown_it

    html = markdown_it.MarkdownIt("commonmark").enable("table").enable("strikethrough").render(inert(text))
    body = html.removeprefix("<p>").removesuffix("</p>\n")
    assert "<" not in body.replace("&lt;", "").replace("&gt;", "")  # no element survives, only escaped text
    assert "\\" not in body.replace("\\\\", "")  # every escape was consumed: the text reads as written
    assert " ".join(text.split()) in body.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace(
        "&amp;", "&")
