"""Decode, validate and canonicalise images with OpenCV.

Validation runs cheapest first: the format is sniffed from magic bytes, the
dimensions read from the header and checked against the pixel limit *before* the
full decode (so a decompression bomb costs a few bytes of parsing), then a full
decode proves the data is a whole, readable image.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.errors import ImageRejected, ImageTooLarge

FORMATS = ("jpeg", "png", "bmp", "tiff")
EXTENSIONS = {"jpeg": "jpg", "png": "png", "bmp": "bmp", "tiff": "tif"}
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "tiff": "image/tiff"}

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageLimits:
    """What an upload may be."""

    max_pixels: int = 50_000_000
    max_side: int = 20_000


@dataclass(frozen=True)
class ImageInfo:
    """What validation learned about an accepted image."""

    image_id: str
    format: str
    width: int
    height: int
    channels: int
    size_bytes: int


def content_id(data: bytes) -> str:
    """The image id: SHA-256 of the exact bytes, so a re-sent upload gets the same id."""
    return hashlib.sha256(data).hexdigest()


def sniff_format(data: bytes) -> str:
    """The image format from its magic bytes, or :class:`ImageRejected`."""
    if not data:
        raise ImageRejected("the request body is empty; send the image bytes", code="empty_body")
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    raise ImageRejected(
        "not a JPEG, PNG, BMP or TIFF image (checked by content, not file name)",
        code="unsupported_format",
    )


def _corrupt(what: str) -> ImageRejected:
    return ImageRejected(f"the image data is corrupt or truncated: {what}", code="corrupt_image")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise _corrupt("bad JPEG marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker in (0xDA, 0xD9):
            raise _corrupt("JPEG has no frame header before its scan")
        i += 2 + length
    raise _corrupt("JPEG header ends early")


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _corrupt("PNG has no IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise _corrupt("BMP header ends early")
    (declared_size,) = struct.unpack("<I", data[2:6])
    if declared_size > len(data):
        raise _corrupt(f"BMP declares {declared_size} bytes but has {len(data)}")
    (dib_size,) = struct.unpack("<I", data[14:18])
    if dib_size == 12:
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _tiff_size(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
        dims: dict[int, int] = {}
        for k in range(count):
            entry = data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
            tag, typ = struct.unpack(order + "HH", entry[:4])
            if tag in (256, 257):
                fmt = "H" if typ == 3 else "I"
                (dims[tag],) = struct.unpack(order + fmt, entry[8 : 8 + struct.calcsize(fmt)])
    except struct.error as exc:
        raise _corrupt("TIFF directory ends early") from exc
    if 256 not in dims or 257 not in dims:
        raise _corrupt("TIFF has no width or height tag")
    return dims[256], dims[257]


_HEADER_READERS = {"jpeg": _jpeg_size, "png": _png_size, "bmp": _bmp_size, "tiff": _tiff_size}


def header_size(data: bytes, fmt: str) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels."""
    width, height = _HEADER_READERS[fmt](data)
    if width <= 0 or height <= 0:
        raise _corrupt(f"header says {width}×{height}")
    return width, height


def check_limits(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse images larger than the limits, before any pixel is decoded."""
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}×{height} ({width * height:,} pixels); the limit is "
            f"{limits.max_pixels:,} pixels and {limits.max_side} per side",
        )


def _looks_complete(data: bytes, fmt: str) -> bool:
    # OpenCV decodes a truncated JPEG or PNG "successfully", filling the rest with grey;
    # a camera that lost the tail of an image must hear about it instead.
    if fmt == "jpeg":
        scan = data.find(b"\xff\xda")
        return scan != -1 and data.rfind(b"\xff\xd9") > scan
    if fmt == "png":
        return data.rfind(b"IEND") > 8
    return True


def decode(data: bytes, fmt: str | None = None) -> np.ndarray:
    """Fully decode the image (any bit depth and channel count), or :class:`ImageRejected`."""
    fmt = fmt or sniff_format(data)
    if not _looks_complete(data, fmt):
        raise _corrupt(f"the {fmt.upper()} data ends before its end marker")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise _corrupt(f"OpenCV could not decode the {fmt.upper()} data")
    return image


def inspect_upload(data: bytes, limits: ImageLimits) -> ImageInfo:
    """Validate an upload cheapest-check first; return what we learned about it."""
    fmt = sniff_format(data)
    width, height = header_size(data, fmt)
    check_limits(width, height, limits)
    image = decode(data, fmt)
    if image.shape[1] != width or image.shape[0] != height:
        raise _corrupt(
            f"header says {width}×{height}, pixels are {image.shape[1]}×{image.shape[0]}"
        )
    channels = 1 if image.ndim == 2 else int(image.shape[2])
    return ImageInfo(content_id(data), fmt, width, height, channels, len(data))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float images to 8 bits per channel."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    # Anything else (float, 32-bit): stretch its own range onto 0-255.
    low, high = float(image.min()), float(image.max())
    scaled = (image.astype(np.float64) - low) * (255.0 / (high - low) if high > low else 0.0)
    return scaled.astype(np.uint8)


def canonicalise(image: np.ndarray, size: int, color: str) -> np.ndarray:
    """The training copy: 8-bit, gray or RGB, longest side ``size``, aspect ratio kept."""
    image = to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if color == "gray":
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale != 1:
        new = (max(1, round(width * scale)), max(1, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, new, interpolation=interpolation)
    return image


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an OpenCV image (BGR order in, RGB order on disk)."""
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return buf.tobytes()


def image_stats(image: np.ndarray) -> dict[str, float]:
    """Brightness (mean), contrast (standard deviation) and sharpness (variance of the
    Laplacian) of the gray image, on a 0-255 scale, for drift monitoring."""
    gray = to_uint8(image)
    if gray.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if gray.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        gray = cv2.cvtColor(gray, code)
    mean, std = cv2.meanStdDev(gray)
    sharpness = cv2.Laplacian(gray, cv2.CV_64F).var()
    return {
        "brightness": round(float(mean[0][0]), 3),
        "contrast": round(float(std[0][0]), 3),
        "sharpness": round(float(sharpness), 3),
    }
