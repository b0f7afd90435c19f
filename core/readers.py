"""Reading stills, the one way every layer does it, and the one list of image and video suffixes.

:func:`read_whole_image` refuses what the live path refuses (a JPEG cut short, whose missing rows
libjpeg would fill with grey; an image bomb): training, evaluation, calibration, the files page and
``polyp-live --source`` all see the same pixels or the same refusal.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


# Larger images are refused before decoding: a 60000x60000 PNG of a few hundred kB would otherwise
# ask for 10 GB (an "image bomb"); 64 megapixels is eight times a 4K frame.
MAX_IMAGE_PIXELS = 64_000_000


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP or WebP header without decoding; None when not found."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"BM" and len(data) >= 26:
        return abs(int.from_bytes(data[18:22], "little", signed=True)), abs(int.from_bytes(data[22:26], "little", signed=True))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8 ":
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + length
    return None


def read_whole_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """The image in ``path`` (BGR, or as ``flags`` asks), or None when it cannot be decoded, is cut
    short or is larger than :data:`MAX_IMAGE_PIXELS`.

    libjpeg decodes a truncated JPEG with a warning and fills the missing rows with grey: a frame
    part invented. A JPEG whose end-of-image marker is missing from its last bytes is taken as
    damaged instead (every one of the 2635 JPEGs of the project's datasets has it there). The size
    is read from the header before decoding, so an image bomb is skipped, not decoded.
    """
    data = np.fromfile(str(path), np.uint8)
    if not data.size:
        return None
    if path.suffix.lower() in (".jpg", ".jpeg") and b"\xff\xd9" not in data[-64:].tobytes():
        return None
    size = image_dimensions(data[:65536].tobytes())
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        return None
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:  # OpenCV refuses some images outright (its own pixel limit, broken headers)
        return None
