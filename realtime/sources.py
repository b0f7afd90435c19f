"""Frame sources: cameras, V4L2 devices, video files, image folders or globs, RTSP/HTTP streams.

:func:`open_source` turns a ``--source`` value into the right :class:`FrameSource`. A source is a
context manager with ``read()``, which returns the next frame, ``None`` at the end of a file, or
raises :class:`SignalLost` when a live feed stops delivering. Sources never invent frames: a failed
read is reported, not papered over with a black image. Video files live in ``video_file``, live
devices and streams in ``live_source``; the shared base is in ``frame_source``.
"""

from __future__ import annotations

import glob
import time
from pathlib import Path

import cv2
import numpy as np

from polyp_live.realtime.errors import SourceError
from polyp_live.realtime.frame_source import Frame, FrameSource, SignalLost
from polyp_live.realtime.live_source import STREAM_PREFIXES, CameraSource
from polyp_live.realtime.video_file import VideoFileSource

__all__ = ["Frame", "FrameSource", "SignalLost", "VideoFileSource", "ImageSequenceSource", "CameraSource",
           "open_source", "reconnect", "STREAM_PREFIXES", "VIDEO_SUFFIXES", "IMAGE_SUFFIXES"]

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


class ImageSequenceSource(FrameSource):
    """A folder, a glob or a single file of images in name order, delivered at ``fps``.

    An existing path is taken literally (``scan [1].png`` is a file, not a pattern); only a
    pattern that names no existing path is expanded as a glob.
    """

    def __init__(self, pattern: str, fps: float = 0.0):
        super().__init__()
        path = Path(pattern)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files = [path]
        else:
            files = sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"image source {pattern} matches no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                              "check the folder or glob")
        self.files = files
        self.fps = fps or 30.0
        self.description = f"image sequence {pattern} ({len(files)} images)"
        self._next = 0
        self._delivered = 0

    def input_paths(self) -> list[Path]:
        return [*self.files, *sorted({file.parent for file in self.files})]

    def open(self) -> None:
        first = read_whole_image(self.files[0])
        if first is not None:
            self.size = (first.shape[1], first.shape[0])

    def read(self) -> np.ndarray | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            image = read_whole_image(path)
            if image is not None:
                self._delivered += 1
                self.last_index, self.last_name = self._next - 1, path.stem
                return image
            self.corrupt_frames += 1
        if self._delivered == 0:
            raise SourceError(f"image source {self.description} has no decodable images")
        return None

    def rewind(self) -> bool:
        self._next = 0
        return True


def open_source(spec: str, fps: float = 0.0, max_consecutive_corrupt: int = 50) -> FrameSource:
    """Build the right source for a ``--source`` value (not yet opened)."""
    if spec.isdigit():
        return CameraSource(int(spec))
    if spec.startswith(STREAM_PREFIXES) or spec.startswith("/dev/video"):
        return CameraSource(spec)
    path = Path(spec)
    suffix = path.suffix.lower()
    # An existing path is what it is, whatever characters its name holds ("proc [final].mp4").
    if path.is_file():
        return ImageSequenceSource(spec, fps) if suffix in IMAGE_SUFFIXES else VideoFileSource(spec, max_consecutive_corrupt)
    if path.is_dir():
        return ImageSequenceSource(spec, fps)
    if suffix in VIDEO_SUFFIXES:
        return VideoFileSource(spec, max_consecutive_corrupt)  # open() says it is not found
    if any(ch in spec for ch in "*?[") or suffix in IMAGE_SUFFIXES:
        return ImageSequenceSource(spec, fps)
    # /dev/null, a FIFO or a socket exists but is none of the kinds of source.
    problem = "is not a file, folder or device polyp-live reads" if path.exists() else "not found"
    raise SourceError(f"source {spec!r} {problem}: pass a camera index (0), a device (/dev/video0), a video file "
                      f"({', '.join(sorted(VIDEO_SUFFIXES))}), an image folder or glob, or an rtsp:// or http:// URL")


def reconnect(source: FrameSource, timeout: float, stop, on_attempt=None) -> bool:
    """Try to reopen a lost live source with exponential backoff until ``timeout`` seconds pass.

    Returns True once a frame-capable device is open again, False when the time is up or ``stop``
    is set. ``on_attempt(n, elapsed)`` is called before each try.
    """
    start, delay, attempt = time.monotonic(), 0.25, 0
    while not stop.is_set():
        elapsed = time.monotonic() - start
        if elapsed >= timeout:
            return False
        attempt += 1
        if on_attempt:
            on_attempt(attempt, elapsed)
        if hasattr(source, "open_deadline"):
            source.open_deadline = start + timeout  # an open that hangs must not outlast the timeout
        try:
            source.open()
            return True
        except SourceError:
            pass
        finally:
            if hasattr(source, "open_deadline"):
                source.open_deadline = None
        stop.wait(min(delay, max(0.0, timeout - (time.monotonic() - start))))
        delay = min(delay * 2, 2.0)
    return False
