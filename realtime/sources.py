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

import numpy as np

from polyp_live.core.errors import SourceError
from polyp_live.core.readers import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_whole_image
from polyp_live.realtime.frame_source import Frame, FrameSource, SignalLost
from polyp_live.realtime.live_source import STREAM_PREFIXES, CameraSource
from polyp_live.realtime.video_file import VideoFileSource

__all__ = ["Frame", "FrameSource", "SignalLost", "VideoFileSource", "ImageSequenceSource", "CameraSource",
           "open_source", "reconnect", "STREAM_PREFIXES"]

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
