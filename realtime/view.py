"""The narrow interface between the running pipeline and whoever watches it (the window, tests).

The window and the web view get a :class:`LiveView`, never the pipeline: they read the newest
rendered picture (with what the HUD knew about it), the signal state and transient messages, and
change only what a user may change, through one method, :meth:`LiveView.control` (pause, overlay
on/off and style, smoothing mode, stop): a window key and a button on the web page are the same
call, applied at once under a lock, so a control is never queued behind frames or dropped. The
signal state ("signal lost, reconnecting") and transient messages ("saved snap.png") are
separate fields: a message expires and is never burnt into the recording.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from polyp_live.core.errors import InvalidValue
from polyp_live.realtime.render import STYLES
from polyp_live.core.smoothing import SMOOTHING_MODES


@dataclass(frozen=True)
class Picture:
    """One rendered picture and what the HUD knew when it was drawn."""

    seq: int
    image: np.ndarray
    published: float        # perf_counter when it was handed to the viewers
    wall: float             # the same moment on the wall clock (time.time), which a browser's Date.now() shares
    polyp: bool = False     # the polyp indicator was on
    appearance: str = ""    # the HUD's appearance label ("#3 2.4 s") while a polyp is shown
    frame_index: int = -1   # the source frame it shows (its place in the file, or the live frame's number)


class LiveView:
    """Shared between the pipeline's threads and the main thread; every method is thread-safe.

    Args:
        live_source: the source is a camera or stream, not a file (a paused view of a live source
            holds its picture while capture goes on; a file, paced or not, pauses reading). Not the
            pipeline's *live mode*, which a ``--realtime`` file shares with live sources.
        stop: the pipeline's stop event, set by :meth:`request_stop`.
    """

    def __init__(self, live_source: bool = False, stop: threading.Event | None = None, style: str = "both",
                 smoothing: str = "confidence"):
        self.live_source = live_source
        self.paused = threading.Event()
        self.overlay = True
        self.style = style
        self.smoothing = smoothing
        self._stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self._picture: Picture | None = None
        self._seq = 0
        self._history: deque = deque(maxlen=900)  # (frame index, wall time): when each recent frame was shown
        self._signal = ""
        self._message = ""
        self._message_until = 0.0
        # Set by a web view that sends the recording's own H.264 packets to its WebRTC viewers, before
        # the first frame; the recorder hands its packets to it (realtime/web/encoders.RecordingTap).
        self.recording_tap = None

    # ---- written by the pipeline ---------------------------------------------------------------

    def publish(self, image: np.ndarray, polyp: bool = False, appearance: str = "", frame_index: int = -1) -> None:
        """Offer the newest rendered picture (the view keeps only the newest) and wake who waits for it."""
        with self._lock:
            self._seq += 1
            self._picture = Picture(self._seq, image, time.perf_counter(), time.time(), polyp, appearance,
                                    frame_index)
            self._history.append((frame_index, self._picture.wall))
            self._published.notify_all()

    def set_signal(self, text: str) -> None:
        """The source's state, e.g. "signal lost: reconnecting (2, 1/10 s)"; "" while all is well."""
        with self._lock:
            self._signal = text

    # ---- read and changed by the window --------------------------------------------------------

    def newest(self) -> tuple[int, np.ndarray | None]:
        """(sequence number, picture): the number changes whenever a new picture was published."""
        with self._lock:
            return self._seq, (self._picture.image if self._picture is not None else None)

    def picture(self) -> Picture | None:
        """The newest picture with its indicator state (None before the first)."""
        with self._lock:
            return self._picture

    def shown_at(self) -> dict[int, float]:
        """Frame index -> wall time it was published, for the last ~30 s of pictures (the newest wins)."""
        with self._lock:
            return dict(self._history)

    def wait_newer(self, seq: int, timeout: float) -> Picture | None:
        """The newest picture once its number differs from ``seq``; None after ``timeout`` seconds."""
        with self._published:
            self._published.wait_for(lambda: self._seq != seq or self._stop.is_set(), timeout)
            return self._picture if self._seq != seq else None

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

    def control(self, action: str, value: str | None = None) -> dict:
        """Apply one user control and return :meth:`controls`; the window's keys and the web page call this.

        Actions: ``pause`` / ``overlay`` (toggle, or set with value "on"/"off"), ``style`` (one of
        :data:`~polyp_live.realtime.render.STYLES`), ``smoothing`` (one of
        :data:`~polyp_live.core.smoothing.SMOOTHING_MODES`), ``stop``.

        Raises:
            ValueError: an unknown action or value (the message names the allowed ones).
        """
        if action in ("pause", "overlay"):
            if value not in (None, "on", "off"):
                raise InvalidValue(f"{action} takes on or off, not {value!r}")
            current = self.paused.is_set() if action == "pause" else self.overlay
            wanted = (not current) if value is None else value == "on"
            if action == "pause":
                self.paused.set() if wanted else self.paused.clear()
            else:
                self.overlay = wanted
        elif action == "style":
            if value not in STYLES:
                raise InvalidValue(f"style must be one of {', '.join(STYLES)}, not {value!r}")
            self.style = value
        elif action == "smoothing":
            if value not in SMOOTHING_MODES:
                raise InvalidValue(f"smoothing must be one of {', '.join(SMOOTHING_MODES)}, not {value!r}")
            self.smoothing = value
        elif action == "stop":
            self.request_stop()
        else:
            raise InvalidValue(f"unknown control {action!r}: pause, overlay, style, smoothing or stop")
        return self.controls()

    def controls(self) -> dict:
        """What the user has set: paused, overlay, style, smoothing."""
        return {"paused": self.paused.is_set(), "overlay": self.overlay, "style": self.style,
                "smoothing": self.smoothing}

    def toggle_pause(self) -> None:
        self.control("pause")

    def toggle_overlay(self) -> None:
        self.control("overlay")

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()
