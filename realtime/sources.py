"""Frame sources: cameras, V4L2 devices, video files, image folders or globs, RTSP/HTTP streams.

A source is a context manager with :meth:`read`, which returns the next frame, ``None`` at the end
of a file, or raises :class:`SignalLost` when a live feed stops delivering. Sources never invent
frames: a failed read is reported, not papered over with a black image.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp_live.realtime.errors import SourceError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://")


class SignalLost(Exception):
    """A live source stopped delivering frames (cable pulled, stream dropped)."""


@dataclass
class Frame:
    """One captured frame.

    Attributes:
        index: position among the frames delivered by this run (0, 1, 2, ...).
        image: the BGR image.
        arrival: ``time.perf_counter()`` when it left the source.
        capture_s: seconds the read took.
        source_index: position of the frame in the source itself, counting frames that were skipped
            (damaged) or dropped before it; -1 means "same as ``index``". Name outputs after this.
        name: the image file's stem for image folders and globs, else ``None``.
    """

    index: int
    image: np.ndarray
    arrival: float
    capture_s: float = 0.0
    source_index: int = -1
    name: str | None = None

    def __post_init__(self) -> None:
        if self.source_index < 0:
            self.source_index = self.index


class FrameSource:
    """Base class. Subclasses set ``live``, ``fps``, ``size`` and implement ``_read``."""

    live = False
    description = "source"

    def __init__(self) -> None:
        self.fps = 30.0
        self.size = (0, 0)  # width, height
        self.corrupt_frames = 0
        # Where the frame most recently returned by read() sits in the source (see Frame).
        self.last_index = -1
        self.last_name: str | None = None

    def open(self) -> None:
        """Open (or reopen) the underlying device; raises :class:`SourceError`."""

    def read(self) -> np.ndarray | None:
        """Next BGR frame, ``None`` at the end, :class:`SignalLost` on a live failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device."""

    def rewind(self) -> bool:
        """Restart a file from its first frame (``--loop``); returns False where not possible."""
        return False

    def __enter__(self) -> "FrameSource":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ensure_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class VideoFileSource(FrameSource):
    """A video file, every frame in order. Corrupt frames in the middle are skipped and counted."""

    def __init__(self, path: str, max_consecutive_corrupt: int = 50, capture_factory=None):
        super().__init__()
        self.path = path
        self.description = f"video file {path}"
        self.max_consecutive_corrupt = max_consecutive_corrupt
        self._factory = capture_factory or (lambda target: cv2.VideoCapture(target))
        self.cap = None
        self.frame_count = 0
        self._delivered = 0

    def open(self) -> None:
        if not os.path.isfile(self.path):
            raise SourceError(f"video file {self.path} not found; check the path given to --source")
        if not os.access(self.path, os.R_OK):
            raise SourceError(f"video file {self.path} is not readable; check its permissions")
        self.cap = self._factory(self.path)
        if not self.cap.isOpened():
            raise SourceError(f"video file {self.path} cannot be opened as video; convert it to mp4 (H.264) or pass another file")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else 30.0
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def read(self) -> np.ndarray | None:
        misses = 0
        while True:
            before = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES) or 0)
            ok, image = self.cap.read()
            if ok and image is not None:
                self._delivered += 1
                self.last_index = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES) or before + 1) - 1
                return _ensure_bgr(image)
            position = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES) or 0)
            # A failed read before the container's last frame is a corrupt frame, not the end.
            if self.frame_count and position < self.frame_count and misses < self.max_consecutive_corrupt:
                misses += 1
                self.corrupt_frames += 1
                if position <= before:  # the decoder did not move on by itself: step over the frame
                    self.cap.set(cv2.CAP_PROP_POS_FRAMES, before + 1)
                continue
            if self._delivered == 0:
                raise SourceError(f"video file {self.path} contains no decodable video frames; re-export or re-encode it")
            return None

    def rewind(self) -> bool:
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return True

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImageSequenceSource(FrameSource):
    """A folder or glob of images in name order, delivered at ``fps``."""

    def __init__(self, pattern: str, fps: float = 0.0):
        super().__init__()
        path = Path(pattern)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
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

    def open(self) -> None:
        first = cv2.imread(str(self.files[0]), cv2.IMREAD_COLOR)
        if first is not None:
            self.size = (first.shape[1], first.shape[0])

    def read(self) -> np.ndarray | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
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


class CameraSource(FrameSource):
    """A camera index, a V4L2 device or a network stream. Always live."""

    live = True

    def __init__(self, target: str | int, capture_factory=None):
        super().__init__()
        self.target = target
        self._factory = capture_factory or (lambda target: cv2.VideoCapture(target))
        self.cap = None
        kind = "stream" if isinstance(target, str) and target.startswith(STREAM_PREFIXES) else "camera"
        self.description = f"{kind} {target}"

    def open(self) -> None:
        if isinstance(self.target, str) and self.target.startswith("/dev/") and not os.path.exists(self.target):
            raise SourceError(f"camera device {self.target} does not exist; check the cable and `ls /dev/video*`")
        self.close()
        self.cap = self._factory(self.target)
        if not self.cap.isOpened():
            self.cap.release()
            self.cap = None
            raise SourceError(f"cannot open {self.description}: not present or busy; check the connection, "
                              "close other programs using it, or pick another --source")
        # Drivers that honour it keep one frame buffered, so reads return the newest image.
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else 30.0
        self.size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def read(self) -> np.ndarray | None:
        if self.cap is None:
            raise SignalLost(self.description)
        ok, image = self.cap.read()
        if not ok or image is None:
            raise SignalLost(self.description)
        self.last_index += 1
        return _ensure_bgr(image)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def open_source(spec: str, fps: float = 0.0, max_consecutive_corrupt: int = 50) -> FrameSource:
    """Build the right source for a ``--source`` value (not yet opened)."""
    if spec.isdigit():
        return CameraSource(int(spec))
    if spec.startswith(STREAM_PREFIXES) or spec.startswith("/dev/video"):
        return CameraSource(spec)
    path = Path(spec)
    if path.is_dir() or any(ch in spec for ch in "*?["):
        return ImageSequenceSource(spec, fps)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSequenceSource(spec, fps)
    if path.suffix.lower() in VIDEO_SUFFIXES or path.exists():
        return VideoFileSource(spec, max_consecutive_corrupt)
    raise SourceError(f"source {spec!r} not found: pass a camera index (0), a device (/dev/video0), a video file "
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
        try:
            source.open()
            return True
        except SourceError:
            pass
        stop.wait(min(delay, max(0.0, timeout - (time.monotonic() - start))))
        delay = min(delay * 2, 2.0)
    return False
