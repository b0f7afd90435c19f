"""What every frame source shares: the :class:`Frame` record, the :class:`FrameSource` base, signal loss.

A source is a context manager with :meth:`FrameSource.read`, which returns the next frame, ``None``
at the end of a file, or raises :class:`SignalLost` when a live feed stops delivering. Sources never
invent frames: a failed read is reported, not papered over with a black image.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


class SignalLost(Exception):
    """A live source stopped delivering frames (cable pulled, stream dropped or stalled)."""


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
    """Base class. Subclasses set ``live``, ``fps``, ``size`` and implement :meth:`read`.

    Attributes:
        corrupt_frames: damaged frames skipped so far (exact: counted from the source's own
            frame numbering, not from failed reads).
        last_index, last_name: where the frame most recently returned by :meth:`read` sits in the
            source (see :class:`Frame`).
        ended_early: for a file that stops before the length its header gives, a sentence saying so.
        replaced_frames: live sources: frames the device delivered that a newer one replaced in the
            one-frame slot before they were read (captured, never shown: the pipeline counts them
            as captured and dropped).
    """

    live = False
    description = "source"

    def __init__(self) -> None:
        self.fps = 30.0
        self.size = (0, 0)  # width, height
        self.corrupt_frames = 0
        self.replaced_frames = 0
        self.last_index = -1
        self.last_name: str | None = None
        self.ended_early: str | None = None
        # Set by interrupt() (a signal, the user quitting): a blocked open() or read() gives up.
        self.cancel = threading.Event()

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

    def interrupt(self) -> None:
        """Make a blocked :meth:`open` or :meth:`read` return promptly (safe from a signal handler)."""
        self.cancel.set()

    def input_paths(self) -> list[Path]:
        """Files and folders this source reads from; outputs must never be written over them."""
        return []

    def __enter__(self) -> "FrameSource":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ensure_bgr(image: np.ndarray) -> np.ndarray:
    """Grey or BGRA images become 3-channel BGR; BGR passes through untouched."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
