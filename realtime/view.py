"""The narrow interface between the running pipeline and whoever watches it (the window, tests).

The window gets a :class:`LiveView`, never the pipeline: it reads the newest rendered picture, the
signal state and transient messages, and changes only what a user may change (pause, overlay on/off,
stop). The signal state ("signal lost, reconnecting") and transient messages ("saved snap.png") are
separate fields: a message expires and is never burnt into the recording.
"""

from __future__ import annotations

import threading
import time

import numpy as np


class LiveView:
    """Shared between the pipeline's threads and the main thread; every method is thread-safe.

    Args:
        live: the source is a live feed (a paused live view holds its picture; a file pauses reading).
        stop: the pipeline's stop event, set by :meth:`request_stop`.
    """

    def __init__(self, live: bool = False, stop: threading.Event | None = None):
        self.live = live
        self.paused = threading.Event()
        self.overlay = True
        self._stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._signal = ""
        self._message = ""
        self._message_until = 0.0

    # ---- written by the pipeline ---------------------------------------------------------------

    def publish(self, image: np.ndarray) -> None:
        """Offer the newest rendered picture (the view keeps only the newest)."""
        with self._lock:
            self._frame = image
            self._seq += 1

    def set_signal(self, text: str) -> None:
        """The source's state, e.g. "signal lost: reconnecting (2, 1/10 s)"; "" while all is well."""
        with self._lock:
            self._signal = text

    # ---- read and changed by the window --------------------------------------------------------

    def newest(self) -> tuple[int, np.ndarray | None]:
        """(sequence number, picture): the number changes whenever a new picture was published."""
        with self._lock:
            return self._seq, self._frame

    @property
    def signal(self) -> str:
        with self._lock:
            return self._signal

    def notify(self, text: str, seconds: float = 3.0) -> None:
        """Show a transient message (on the display only) for ``seconds``."""
        with self._lock:
            self._message, self._message_until = text, time.monotonic() + seconds

    @property
    def message(self) -> str:
        """The transient message while it lasts, else ""."""
        with self._lock:
            return self._message if time.monotonic() < self._message_until else ""

    def toggle_pause(self) -> None:
        if self.paused.is_set():
            self.paused.clear()
        else:
            self.paused.set()

    def toggle_overlay(self) -> None:
        self.overlay = not self.overlay

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()
