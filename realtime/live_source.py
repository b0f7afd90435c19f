"""Cameras, V4L2 devices and network streams, read by a thread so a stalled feed can be abandoned.

OpenCV blocks inside ``VideoCapture(url)`` and ``read()`` for as long as FFmpeg's own timeouts
(about 30 s) when a stream's connection stays open but sends nothing, and a blocked C call cannot
be interrupted. So each opened device is a :class:`_Feed`: a thread that opens the capture, then
reads frames into a one-frame slot. :meth:`CameraSource.read` waits on that slot with a watchdog
(no new frame for a few frame periods, at least a second: :class:`SignalLost`); ``open`` waits for
the thread with a deadline and a cancel event. A feed that is given up on releases its capture
itself once the blocked call returns, so the capture is never released under a running read.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

import cv2
import numpy as np

from polyp_live.core.errors import SourceError
from polyp_live.realtime.frame_source import FrameSource, SignalLost, ensure_bgr
from polyp_live.realtime.mjpeg_stream import open_mjpeg

STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://")
OPEN_TIMEOUT_S = 10.0      # the longest one open() waits (a reconnect deadline may shorten it)
FIRST_FRAME_S = 3.0        # a device just opened may take this long for its first frame
MIN_STALL_S = 1.0          # never call a feed stalled sooner than this
STALL_PERIODS = 4          # ... or sooner than this many frame periods
READ_TIMEOUT_MS = 5000     # FFmpeg's own limit on one read: a given-up reader thread ends by then


def default_capture(target: str | int, timeout_s: float = OPEN_TIMEOUT_S) -> cv2.VideoCapture:
    """Open ``target`` with OpenCV; network streams get FFmpeg open/read timeouts so given-up
    threads end on their own instead of lingering for FFmpeg's default 30 s."""
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        # An MJPEG stream is read part by part, so a JPEG cut short is a damaged frame (FFmpeg
        # would patch it with the previous frame's rows); any other HTTP stream goes to FFmpeg.
        mjpeg = open_mjpeg(target, max(1.0, timeout_s))
        if mjpeg is not None:
            return mjpeg
    if isinstance(target, str) and target.startswith(STREAM_PREFIXES):
        open_ms = int(max(1.0, timeout_s) * 1000)
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms,
                                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS])
    return cv2.VideoCapture(target)


_ABANDONED: set = set()  # feeds given up on whose thread may still be blocked in OpenCV
_ABANDONED_LOCK = threading.Lock()


def wait_for_native_calls(timeout: float) -> bool:
    """Wait up to ``timeout`` s for abandoned capture threads to leave OpenCV; True when none is left.

    A thread still blocked in a native call when the interpreter shuts down can abort the process
    (it is unwound through C++ frames), so the command asks this before a normal exit.
    """
    deadline = time.monotonic() + timeout
    with _ABANDONED_LOCK:
        feeds = list(_ABANDONED)
    for feed in feeds:
        feed.thread.join(max(0.0, deadline - time.monotonic()))
    with _ABANDONED_LOCK:
        _ABANDONED.difference_update({feed for feed in feeds if not feed.thread.is_alive()})
        return not _ABANDONED


class _Feed:
    """One opened device: a thread that opens it, then keeps the newest frame in a slot."""

    def __init__(self, factory, target, timeout_s: float):
        self.cond = threading.Condition()
        self.image: np.ndarray | None = None
        self.seq = -1                      # number of the newest frame (0-based) read from the device
        self.last_time = 0.0               # time.monotonic() of the newest frame
        self.opened_at = 0.0               # time.monotonic() when the device opened
        self.intervals: deque = deque(maxlen=30)
        self.opened = threading.Event()    # set when the open finished, successfully or not
        self.failed = False
        self.ended = False                 # the device reported a failed read
        self.corrupt = 0                   # damaged frames the capture skipped (an MJPEG part cut short)
        self.abandoned = threading.Event()
        self.fps, self.size = 30.0, (0, 0)
        self._factory, self._target, self._timeout_s = factory, target, timeout_s
        self.thread = threading.Thread(target=self._run, name="polyp-live-camera", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        cap = None
        try:
            try:
                cap = self._factory(self._target, self._timeout_s)
            except TypeError:  # a factory that takes only the target (tests, custom devices)
                cap = self._factory(self._target)
            if not cap.isOpened():
                self.failed = True
                return
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # drivers that honour it hand over the newest image
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and 0 < fps < 1000 else 30.0
            self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            self.opened_at = time.monotonic()
            self.opened.set()
            while not self.abandoned.is_set():
                ok, image = cap.read()
                corrupt = int(getattr(cap, "corrupt_frames", 0))
                if corrupt != self.corrupt:
                    with self.cond:
                        self.corrupt = corrupt
                if not ok or image is None:
                    break
                now = time.monotonic()
                with self.cond:
                    if self.seq >= 0:
                        self.intervals.append(now - self.last_time)
                    self.image, self.seq, self.last_time = image, self.seq + 1, now
                    self.cond.notify_all()
        except Exception:  # noqa: BLE001 - a driver failure is a lost signal, reported by read()
            self.failed = not self.opened.is_set()
        finally:
            with self.cond:
                self.ended = True
                self.cond.notify_all()
            self.opened.set()
            if cap is not None:
                cap.release()  # here, on this thread: never under a read that is still running

    def stall_limit(self, fps: float) -> float:
        """Seconds without a new frame after which the feed counts as stalled."""
        with self.cond:
            slowest = max(self.intervals, default=0.0)
        return max(MIN_STALL_S, STALL_PERIODS / fps, 3 * slowest)

    def abandon(self) -> None:
        self.abandoned.set()
        with self.cond:
            self.cond.notify_all()
        if self.thread.is_alive():
            with _ABANDONED_LOCK:
                _ABANDONED.add(self)


class CameraSource(FrameSource):
    """A camera index, a V4L2 device or a network stream. Always live: newest frame only.

    Args:
        target: camera index, device path or URL.
        capture_factory: ``factory(target[, timeout_s])`` returning a ``cv2.VideoCapture``-like object.
    """

    live = True

    def __init__(self, target: str | int, capture_factory=None):
        super().__init__()
        self.target = target
        self._factory = capture_factory or default_capture
        self._feed: _Feed | None = None
        self._taken = -1        # seq of the last frame handed out by the current feed
        self._corrupt_before = 0
        self._offset = 0        # source index of the current feed's frame 0 (indices keep rising across reconnects)
        self.open_deadline: float | None = None  # time.monotonic() limit for open(), set by reconnect()
        kind = "stream" if isinstance(target, str) and target.startswith(STREAM_PREFIXES) else "camera"
        self.description = f"{kind} {target}"

    def open(self) -> None:
        if isinstance(self.target, str) and self.target.startswith("/dev/") and not os.path.exists(self.target):
            raise SourceError(f"camera device {self.target} does not exist; check the cable and `ls /dev/video*`")
        self.close()
        timeout = OPEN_TIMEOUT_S
        if self.open_deadline is not None:
            timeout = max(0.1, min(timeout, self.open_deadline - time.monotonic()))
        feed = _Feed(self._factory, self.target, timeout)
        deadline = time.monotonic() + timeout
        while not feed.opened.wait(0.05):
            if self.cancel.is_set():
                feed.abandon()
                raise SourceError(f"opening {self.description} was interrupted")
            if time.monotonic() >= deadline:
                feed.abandon()
                raise SourceError(f"{self.description} did not answer within {timeout:.0f} s; check the address "
                                  "and the network, or pick another --source")
        if feed.failed:
            feed.abandon()
            raise SourceError(f"cannot open {self.description}: not present or busy; check the connection, "
                              "close other programs using it, or pick another --source")
        self._feed, self._taken = feed, -1
        self._offset = self.last_index + 1
        self._corrupt_before = self.corrupt_frames  # damaged frames of earlier feeds (reconnects)
        self.fps, self.size = feed.fps, feed.size

    def read(self) -> np.ndarray | None:
        """The newest frame not yet handed out; :class:`SignalLost` when the device failed or no new
        frame came within the stall limit; ``None`` once :meth:`interrupt` was called."""
        feed = self._feed
        if self.cancel.is_set():
            return None  # the run is stopping: no more frames, which is not a lost signal
        if feed is None:
            raise SignalLost(self.description)
        with feed.cond:
            while feed.seq == self._taken:
                self.corrupt_frames = self._corrupt_before + feed.corrupt
                if self.cancel.is_set():
                    return None
                if feed.ended:
                    raise SignalLost(self.description)
                since = feed.last_time if feed.seq >= 0 else feed.opened_at
                limit = feed.stall_limit(self.fps) if feed.seq >= 0 else max(FIRST_FRAME_S, feed.stall_limit(self.fps))
                remaining = since + limit - time.monotonic()
                if remaining <= 0:
                    raise SignalLost(f"{self.description}: no frame for {limit:.1f} s")
                feed.cond.wait(min(0.05, remaining))
            image, seq = feed.image, feed.seq
            self.corrupt_frames = self._corrupt_before + feed.corrupt
        # Frames the device delivered since the last read that the slot's newer frame replaced.
        self.replaced_frames += seq - self._taken - 1
        self._taken = seq
        self.last_index = self._offset + seq
        return ensure_bgr(image)

    def close(self) -> None:
        if self._feed is not None:
            self._feed.abandon()
            self._feed.thread.join(0.2)  # usually ends at once; a blocked one releases on its own
            self._feed = None

