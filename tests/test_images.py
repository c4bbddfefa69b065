import io

import numpy as np
import pytest
from PIL import Image

from mirage_core.errors import ImageError
from mirage_core.images import open_image


def _jpeg(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_reads_jpeg_and_png():
    assert open_image(_jpeg(), "x.jpg").size == (64, 48)
    buffer = io.BytesIO()
    Image.new("L", (10, 12), 200).save(buffer, "PNG")
    image = open_image(buffer.getvalue())
    assert image.mode == "L" and image.size == (10, 12)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"%PDF-1.4 definitely not an image", "not a readable image"),
        (_jpeg()[:400], "truncated or corrupt|not a readable image"),
    ],
)
def test_bad_uploads_are_clear_errors(data, message):
    with pytest.raises(ImageError, match=message):
        open_image(data, "upload.jpg")


def test_unsupported_format():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "BMP")
    with pytest.raises(ImageError, match="BMP images are not supported"):
        open_image(buffer.getvalue())


def test_decompression_bomb_is_refused():
    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, "PNG")  # 144 Mpx that compress to a few kB
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(ImageError, match="decompression bomb|too large"):
        open_image(buffer.getvalue())


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        open_image(tmp_path / "nope.jpg")


def _dicom(with_pixels: bool) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.Modality = "CT"
    if with_pixels:
        pixels = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 3)
        dataset.Rows, dataset.Columns = pixels.shape
        dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
        dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
        dataset.WindowCenter, dataset.WindowWidth = 40 - 1024 + 1024, 400
        dataset.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_dicom_with_window():
    image = open_image(_dicom(with_pixels=True), "scan.dcm")
    values = np.asarray(image)
    assert image.mode == "L" and image.size == (32, 32)
    assert values.min() == 0 and values.max() == 255  # the window clips both ends


def test_dicom_without_pixels():
    with pytest.raises(ImageError, match="no pixel data"):
        open_image(_dicom(with_pixels=False), "empty.dcm")
