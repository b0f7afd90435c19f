"""Annotated-video recording and per-frame mask export.

A recording is finalised on every exit path (end of file, error, Ctrl+C, SIGTERM) because the
writer is a context manager the pipeline closes in ``finally``. The output goes to a temporary name
and is renamed when finalised, so a crashed process never leaves a half-written file under the
name the user asked for.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from polyp_live.realtime.errors import OutputError

CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def exact_fps(fps: float) -> float:
    """Snap NTSC-style rates to their exact rational (29.97 -> 30000/1001) so they survive the container."""
    for base in (24, 30, 60, 120):
        ntsc = base * 1000 / 1001
        if abs(fps - ntsc) < 0.01:
            return ntsc
    return float(Fraction(fps).limit_denominator(1001))


def check_writable_dir(path: Path, what: str) -> None:
    """Create ``path`` if needed and prove it is writable, or raise OutputError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".polyp-live-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{what} folder {path} is not writable ({exc.strerror}); choose another location") from None


class VideoRecorder:
    """Writes BGR frames at a fixed size and frame rate; the file is complete after ``close``."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in CODECS:
            raise OutputError(f"cannot record to {self.path}: use one of {', '.join(sorted(CODECS))}")
        check_writable_dir(self.path.parent if str(self.path.parent) else Path("."), "recording")
        self.fps, self.size = exact_fps(fps), size
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{suffix}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*CODECS[suffix]), self.fps, size)
        if not self.writer.isOpened():
            raise OutputError(f"cannot open a video writer for {self.path}; check the folder and the codec for {suffix}")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            # A camera that reconnects at another resolution must not corrupt the file.
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        if self.frames:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)  # no frame was ever produced: nothing to keep

    def __enter__(self) -> "VideoRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MaskWriter:
    """One PNG per frame (0 = background, 255 = polyp), named by frame index."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        check_writable_dir(self.folder, "--save-masks")
        self.count = 0

    def write(self, index: int, mask: np.ndarray) -> None:
        path = self.folder / f"{index:06d}.png"
        if not cv2.imwrite(str(path), mask):
            raise OutputError(f"cannot write mask {path}; check free space and permissions")
        self.count += 1
