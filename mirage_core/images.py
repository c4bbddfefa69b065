"""Opening images safely: files from a corpus and bytes a user uploaded are never trusted.

`open_image` decodes fully (so a truncated JPEG fails here, not later), refuses decompression bombs and
formats other than PNG/JPEG (and DICOM, through pydicom, with the stored window or a percentile window),
and returns an RGB or L PIL image. Every failure is an `ImageError` that says what was wrong.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageError

MAX_PIXELS = 40_000_000
MAX_BYTES = 50 * 1024 * 1024
ALLOWED_FORMATS = {"JPEG", "PNG", "MPO"}
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def open_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Decode an image file or uploaded bytes into a PIL image, or raise `ImageError`."""
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
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
    if data[128:132] == b"DICM":
        return _open_dicom(data, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise ImageError(f"{label}: {image.format} images are not supported; use PNG, JPEG or DICOM")
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{label}: {image.width}×{image.height} pixels is too large")
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label}: refused as a decompression bomb (too many pixels)") from None
    except Exception as error:  # PIL signals garbage with many exception types
        kind = "truncated or corrupt" if "truncated" in str(error).lower() else "not a readable image"
        raise ImageError(f"{label}: {kind} ({error})") from None
    return image.convert("L") if image.mode in ("L", "I", "I;16", "F", "1") else image.convert("RGB")


def _open_dicom(data: bytes, label: str) -> Image.Image:
    try:
        import pydicom

        dataset = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" not in dataset:
            raise ImageError(f"{label}: this DICOM file has no pixel data")
        pixels = dataset.pixel_array.astype(np.float32)
    except ImageError:
        raise
    except Exception as error:
        raise ImageError(f"{label}: DICOM file cannot be decoded ({error})") from None
    if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        pixels = pixels[pixels.shape[0] // 2]  # a multi-frame series: show the middle frame
    slope, intercept = float(getattr(dataset, "RescaleSlope", 1)), float(getattr(dataset, "RescaleIntercept", 0))
    pixels = pixels * slope + intercept
    low, high = _dicom_window(dataset, pixels)
    scaled = np.clip((pixels - low) / max(high - low, 1e-6), 0, 1) * 255
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
        scaled = 255 - scaled
    mode = "RGB" if scaled.ndim == 3 else "L"
    return Image.fromarray(scaled.astype(np.uint8)[..., :3] if mode == "RGB" else scaled.astype(np.uint8), mode)


def _dicom_window(dataset, pixels: np.ndarray) -> tuple[float, float]:
    """The stored window centre/width when present, else the 1st–99th percentile of the pixels."""
    from pydicom.multival import MultiValue

    centre, width = getattr(dataset, "WindowCenter", None), getattr(dataset, "WindowWidth", None)
    if centre is not None and width is not None:
        centre = float(centre[0] if isinstance(centre, MultiValue) else centre)  # several windows: the first
        width = float(width[0] if isinstance(width, MultiValue) else width)
        if width > 0:
            return centre - width / 2, centre + width / 2
    low, high = np.percentile(pixels, [1, 99])
    return float(low), float(high)

