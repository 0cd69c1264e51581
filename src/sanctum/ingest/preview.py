"""Pixels of a quarantined (already de-identified) DICOM image: a masked PNG preview, and the
masked file an owner releases.

Pure functions over bytes, like ``sanctum.deid``: the caller decrypts the held output and stores
what comes back. Why masks are burned into the pixel data rather than kept as an overlay: a
released file leaves the review and is read by any DICOM tool, which would show the text under an
overlay. Every frame is masked (burned-in text sits at the same place on every frame of a cine);
the preview shows the first frame only.

Rectangles are in pixel coordinates of the stored image (x to the right, y down, from the top-left
corner), checked against Rows and Columns. Masked pixels take the image's smallest stored value,
which keeps them inside the value range every viewer windows over.

Compressed transfer syntaxes that pydicom cannot decode in this environment are refused with a
clear reason (``Undecodable``); the owner can then only discard the file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from sanctum.errors import InvalidInput

#: Attributes a release may change: the Image Pixel module that ``set_pixel_data`` rewrites, and
#: BurnedInAnnotation. Everything else must come out byte-for-value identical to the scanned output.
RELEASE_CHANGES = frozenset(
    {
        "PixelData",
        "BurnedInAnnotation",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "SamplesPerPixel",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "NumberOfFrames",
        "LossyImageCompression",
    }
)
MAX_MASKS = 64
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int8, np.int16)


class Undecodable(InvalidInput):
    """The pixel data cannot be decoded (or re-encoded) here; nothing is shown or changed."""

    code = "undecodable"


@dataclass(frozen=True)
class Mask:
    """A rectangle in pixel coordinates: left ``x``, top ``y``, ``width`` and ``height`` in pixels."""

    x: int
    y: int
    width: int
    height: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.width, self.height]

    @classmethod
    def of(cls, values: Sequence[int]) -> Mask:
        x, y, width, height = (int(v) for v in values)
        return cls(x, y, width, height)


@dataclass(frozen=True)
class ImageInfo:
    rows: int
    columns: int
    frames: int
    transfer_syntax: str


def _read(data: bytes, *, pixels: bool = True) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=not pixels)
    except Exception as exc:  # the held output was written by us; this is damage, not input
        raise Undecodable(f"the held file cannot be read ({type(exc).__name__})") from None


def info(data: bytes) -> ImageInfo:
    """Rows, Columns, frames and transfer syntax of a DICOM image (its header only)."""
    ds = _read(data, pixels=False)
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows <= 0 or columns <= 0:
        raise Undecodable("the file has no image (no Rows/Columns): there is nothing to preview or mask")
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return ImageInfo(rows, columns, int(ds.get("NumberOfFrames") or 1), syntax)


def decoder_problem(image: ImageInfo) -> str | None:
    """Why this image's pixel data cannot be decoded here (no plugin for its compression), if so."""
    from pydicom.pixels import get_decoder

    uid = pydicom.uid.UID(image.transfer_syntax)
    if not uid.is_valid or not uid.is_compressed:
        return None
    try:
        available = get_decoder(uid).is_available
    except NotImplementedError:
        available = False
    if available:
        return None
    return f"the pixel data ({uid.name}) cannot be decoded here; it can only be discarded"


def check_mask(mask: Mask, image: ImageInfo) -> None:
    """A rectangle inside the image with a positive size, else a 422 naming the rule it breaks."""
    if mask.x < 0 or mask.y < 0:
        raise InvalidInput("x and y must be 0 or more (pixels from the top-left corner)", code="invalid_mask")
    if mask.width <= 0 or mask.height <= 0:
        raise InvalidInput("width and height must be at least 1 pixel", code="invalid_mask")
    if mask.x + mask.width > image.columns or mask.y + mask.height > image.rows:
        raise InvalidInput(
            f"the rectangle must lie inside the image ({image.columns} columns × {image.rows} rows)",
            code="invalid_mask",
        )


def _syntax_name(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = pydicom.uid.UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else None
    return uid.name if uid is not None and uid.is_valid else "unknown"


def _decode(ds: Dataset, index: int | None) -> np.ndarray:
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(ds, index=index)
    except Exception as exc:  # no decoder for this syntax here, or damaged pixel data
        raise Undecodable(
            f"the pixel data ({_syntax_name(ds)}) cannot be decoded here ({type(exc).__name__}); "
            "it can only be discarded"
        ) from None


def _to_8bit(frame: np.ndarray, photometric: str) -> np.ndarray:
    """Scale a frame to 0–255 over its own range (MONOCHROME1 inverted: low values are white)."""
    values = frame.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if high <= low else (values - low) * (255.0 / (high - low))
    if photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def preview_png(data: bytes, masks: Sequence[Mask]) -> bytes:
    """The first frame as a PNG, scaled to 8 bits, with ``masks`` drawn as black rectangles."""
    from PIL import Image

    ds = _read(data)
    image = info(data)
    frame = _decode(ds, 0 if image.frames > 1 else None)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if frame.ndim == 3 and frame.shape[-1] == 3:  # colour (pydicom converts YBR to RGB)
        if frame.dtype != np.uint8:
            frame = np.stack([_to_8bit(frame[..., c], "RGB") for c in range(3)], axis=-1)
        pixels = frame.copy()
    elif frame.ndim == 2:
        pixels = _to_8bit(frame, photometric)
    else:
        raise Undecodable("this pixel layout cannot be previewed here; it can only be discarded")
    for mask in masks:
        pixels[mask.y : mask.y + mask.height, mask.x : mask.x + mask.width] = 0
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def burn_masks(data: bytes, masks: Sequence[Mask]) -> bytes:
    """The file with every rectangle set to the image's smallest stored value on every frame, and
    BurnedInAnnotation = NO. Compressed pixel data is written back uncompressed (Explicit VR Little
    Endian); colour is written as RGB. The SOP Instance UID stays: the file was never stored before.
    """
    ds = _read(data)
    image = info(data)
    for mask in masks:
        check_mask(mask, image)
    arr = _decode(ds, None)
    if arr.dtype.type not in SUPPORTED_DTYPES:
        raise Undecodable(
            f"pixel data of type {arr.dtype} cannot be re-encoded here; it can only be discarded"
        )
    arr = arr.copy()
    low = arr.min()
    frames = arr if image.frames > 1 else arr[np.newaxis]
    for mask in masks:
        frames[:, mask.y : mask.y + mask.height, mask.x : mask.x + mask.width] = low
    samples = int(ds.get("SamplesPerPixel") or 1)
    photometric = "RGB" if samples == 3 else str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    try:
        ds.set_pixel_data(arr, photometric, int(ds.BitsStored), generate_instance_uid=False)
    except (NotImplementedError, ValueError) as exc:  # big-endian, odd bit depths
        raise Undecodable(
            f"the masked pixel data cannot be written in this file's encoding ({type(exc).__name__}); "
            "it can only be discarded"
        ) from None
    ds.BurnedInAnnotation = "NO"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    released = out.getvalue()
    unchanged_outside_pixels(data, released)
    return released


def unchanged_outside_pixels(held: bytes, released: bytes) -> None:
    """The release check standing in for the pipeline's byte scan, whose original values are not
    kept: the released file must equal the scanned output in every attribute but the pixel data,
    the Image Pixel attributes and BurnedInAnnotation (so masking added no text anywhere)."""
    before, after = _read(held, pixels=False), _read(released, pixels=False)
    for ds in (before, after):
        for keyword in RELEASE_CHANGES:
            if keyword in ds:
                del ds[keyword]
    if before != after or before.file_meta.get("MediaStorageSOPInstanceUID") != after.file_meta.get(
        "MediaStorageSOPInstanceUID"
    ):
        raise Undecodable("masking changed attributes other than the pixel data; nothing was released")
