"""Opening images safely: files from a corpus and bytes a user uploaded are never trusted.

`open_image` decodes fully (so a truncated JPEG fails here, not later), refuses decompression bombs and
formats other than PNG/JPEG (and DICOM, through pydicom, with the stored window or a percentile window),
and returns an RGB or L PIL image. Every failure is an `ImageError` that says what was wrong.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError

MAX_PIXELS = 40_000_000
MAX_BYTES = 50 * 1024 * 1024
MAX_ASPECT = 30  # longer side / shorter side: beyond this an image cannot be shown (nor is it a radiograph)
MAX_INFLATED = 4 * MAX_PIXELS  # bytes a deflated DICOM may expand to: 16-bit pixels, two samples' worth
ALLOWED_FORMATS = {"JPEG", "PNG", "MPO"}
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
_PYTHON_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>")


def open_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Decode an image file or uploaded bytes into a PIL image, or raise `ImageError`."""
    label = name or (Path(source).name if not isinstance(source, bytes) else "upload")
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{label}: file not found") from None
        except OSError as error:
            raise ImageError(f"{label}: cannot be read ({error.strerror})") from None
    if len(data) > MAX_BYTES:
        raise ImageError(f"{label}: {len(data) / 1e6:.0f} MB is larger than the {MAX_BYTES // 2**20} MB limit")
    if not data:
        raise ImageError(f"{label}: the file is empty")
    if data[128:132] == b"DICM" or _looks_like_bare_dicom(data, label):
        return _checked_shape(_open_dicom(data, label), label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise ImageError(f"{label}: {image.format} images are not supported; use PNG, JPEG or DICOM")
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{label}: {image.width}×{image.height} pixels is too large")
            _checked_shape(image, label)
            image.load()
            image = ImageOps.exif_transpose(image)  # phones and some viewers store the rotation as a tag
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label}: refused as a decompression bomb (too many pixels)") from None
    except Exception as error:  # PIL signals garbage with many exception types
        kind = "truncated or corrupt" if "truncated" in str(error).lower() else "not a readable image"
        raise ImageError(f"{label}: {kind} ({_describe(error)})") from None
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _window_to_8bit(np.asarray(image, dtype=np.float32))
    return image.convert("L") if image.mode in ("L", "1") else image.convert("RGB")


def _describe(error: Exception) -> str:
    """An error's text without Python object reprs such as `<_io.BytesIO object at 0x…>`."""
    return _PYTHON_REPR.sub("the file", str(error)).strip() or type(error).__name__


def _checked_shape(image: Image.Image, label: str) -> Image.Image:
    width, height = image.size
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(f"{label}: {width}×{height} pixels is too elongated to show (at most {MAX_ASPECT}:1)")
    return image


def _looks_like_bare_dicom(data: bytes, label: str) -> bool:
    """A DICOM file without its 128-byte preamble: a .dcm name or a first tag of group 0002 or 0008."""
    if data[:8].startswith((b"\x89PNG", b"\xff\xd8")):
        return False
    return label.lower().endswith((".dcm", ".dicom")) or data[:2] in (b"\x02\x00", b"\x08\x00")


def _window_to_8bit(pixels: np.ndarray) -> Image.Image:
    """High-bit-depth pixels (16-bit PNG, float) → 8-bit grey through their 1st–99th percentile window."""
    pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = np.percentile(pixels, [1, 99]) if pixels.size else (0.0, 1.0)
    if high <= low:
        low, high = float(pixels.min(initial=0)), float(pixels.max(initial=1))
    scaled = np.clip((pixels - low) / max(high - low, 1e-6), 0, 1) * 255
    return Image.fromarray(scaled.astype(np.uint8), "L")


def _read_dicom_dataset(data: bytes, label: str):
    """pydicom's dataset, with a deflated data set inflated under a cap first (zlib bombs inflate ×1000)."""
    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    stream = io.BytesIO(data)
    read_preamble(stream, True)
    meta = _read_file_meta_info(stream)
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        inflater.decompress(data[stream.tell():], MAX_INFLATED)
        if inflater.unconsumed_tail:
            raise ImageError(f"{label}: refused as a decompression bomb (the deflated DICOM expands past "
                             f"{MAX_INFLATED // 2**20} MB)")
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _number(value, default: float) -> float:
    """A DICOM numeric attribute (maybe multi-valued or malformed) as a finite float, else `default`."""
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if np.isfinite(number) else default


def _open_dicom(data: bytes, label: str) -> Image.Image:
    try:
        dataset = _read_dicom_dataset(data, label)
        if "PixelData" not in dataset:
            raise ImageError(f"{label}: this DICOM file has no pixel data")
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
        frames = max(int(_number(dataset.get("NumberOfFrames", 1), 1)), 1)
        samples = max(int(dataset.get("SamplesPerPixel", 1) or 1), 1)
        if rows * columns * frames * samples > 3 * MAX_PIXELS or rows * columns > MAX_PIXELS:
            raise ImageError(f"{label}: {columns}×{rows} pixels × {frames} frame(s) is too large")
        pixels = dataset.pixel_array.astype(np.float32)
    except ImageError:
        raise
    except Exception as error:
        raise ImageError(f"{label}: DICOM file cannot be decoded ({_describe(error)})") from None
    colour = samples > 1
    if pixels.ndim == (4 if colour else 3):
        pixels = pixels[pixels.shape[0] // 2]  # a multi-frame series: show the middle frame
    if colour:
        pixels = pixels[..., :3]
    slope = _number(dataset.get("RescaleSlope", 1), 1.0) or 1.0
    intercept = _number(dataset.get("RescaleIntercept", 0), 0.0)
    pixels = np.nan_to_num(pixels * slope + intercept, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = _dicom_window(dataset, pixels)
    scaled = np.clip((pixels - low) / max(high - low, 1e-6), 0, 1) * 255
    if str(dataset.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        scaled = 255 - scaled
    mode = "RGB" if scaled.ndim == 3 and scaled.shape[-1] == 3 else "L"
    if mode == "L" and scaled.ndim == 3:
        scaled = scaled[..., 0]
    return Image.fromarray(scaled.astype(np.uint8), mode)


def _dicom_window(dataset, pixels: np.ndarray) -> tuple[float, float]:
    """The stored window centre/width when present and numeric, else the 1st–99th percentile of the pixels."""
    centre = _number(dataset.get("WindowCenter"), float("nan"))
    width = _number(dataset.get("WindowWidth"), float("nan"))
    if np.isfinite(centre) and np.isfinite(width) and width > 0:
        return centre - width / 2, centre + width / 2
    low, high = np.percentile(pixels, [1, 99])
    return float(low), float(high)


def square(image: Image.Image, size: int = 384, background: int = 0) -> Image.Image:
    """The image shrunk to fit a `size`-pixel square and letterboxed on black, so a grid of results has cards of
    one height whatever each figure's shape (nothing is cropped: a finding may sit at the edge)."""
    fitted = ImageOps.contain(image.convert("RGB"), (size, size))
    canvas = Image.new("RGB", (size, size), (background,) * 3)
    canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return canvas
