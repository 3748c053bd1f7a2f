"""Images from files and commands, decoded only after their header shows a sane size.

A 1.2 MB PNG can declare 20000 x 20000 pixels, 1.2 GB once decoded: one such MQTT message used to take a
door past its memory limit. Here the header (JPEG, PNG, BMP, WebP) is read first and an image above
`limits.max_image_pixels` is refused before a pixel is decoded. What passes is decoded at most
WORKING_SIDE px on its long side (JPEG through libjpeg's own reduced decoding), which keeps faces far
above what the detector (a 128 or 192 px input) and FaceNet (160 px crops) use.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from edge.errors import InputError

WORKING_SIDE = 1920
DEFAULT_MAX_PIXELS = 25_000_000  # a 6000 x 4000 camera photo; a 4K frame is 8.3 million


class ImageError(InputError):
    """An image that cannot or must not be decoded; the message names it and why."""


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone; ImageError for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:2] == b"\xff\xd8":
        return ("jpeg", *_jpeg_size(data))
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return "bmp", abs(width), abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", data[26:30])
            return "webp", width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return "webp", int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ImageError("not a JPEG, PNG, BMP or WebP image")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from the first start-of-frame segment."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise ImageError("a corrupt JPEG (bad segment marker)")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # segments without a length
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if at + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / scan data before any frame header
            break
        at += 2 + length
    raise ImageError("a JPEG without a frame header (truncated or corrupt)")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """BGR uint8, at most WORKING_SIDE px on its long side; ImageError before decoding anything too large."""
    if not data:
        raise ImageError("an empty file")
    kind, width, height = image_size(data)
    if width <= 0 or height <= 0:
        raise ImageError(f"a {kind.upper()} that declares {width} x {height} pixels")
    if width * height > max_pixels:
        raise ImageError(f"{width} x {height} pixels ({width * height / 1e6:.0f} million) exceeds "
                         f"limits.max_image_pixels ({max_pixels / 1e6:.0f} million); scale the photo down")
    flags = cv2.IMREAD_COLOR
    if kind == "jpeg":  # libjpeg decodes at 1/2, 1/4 or 1/8 scale without building the full image
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if max(width, height) / factor >= WORKING_SIDE:
                flags = reduced
                break
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise ImageError(f"a {kind.upper()} that OpenCV cannot decode (truncated or corrupt)")
    scale = WORKING_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


MAX_FILE_BYTES = 128 * 1024 * 1024


def read_image(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image file at path, bounded as decode_image; ImageError naming the path otherwise."""
    import os

    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES:
                raise ImageError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MB; not a photo this reads")
            data = handle.read()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not an image") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        return decode_image(data, max_pixels)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
