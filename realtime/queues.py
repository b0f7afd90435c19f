"""Queues between the pipeline's threads, and the control markers that travel through them.

Frames may be dropped where freshness matters more than completeness (the newest frame for
inference, a live video path that cannot keep up); control markers (END, RESET) never are: they
change what every later frame means.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Callable

WAIT = 0.1  # seconds: the longest any stage blocks before looking at the stop event


class Marker:
    """A control message; compared by identity."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


END = Marker("END")        # the source is exhausted (or the run stops): finish and pass it on
RESET = Marker("RESET")    # forget temporal state (after a signal loss)


def put_blocking(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put with back-pressure, giving up only when the pipeline stops; True when put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=WAIT)
            return True
        except queue.Full:
            continue
    return False


class NewestQueue:
    """Holds at most ``max_frames`` frames, dropping the oldest frame when a new one arrives.

    Markers are kept in order with the frames and never dropped, however full the queue is. With
    ``max_frames=1`` this is the "newest frame" slot inference takes from.

    Args:
        max_frames: frames kept at most.
        on_drop: called with each dropped frame (to count it).
    """

    def __init__(self, max_frames: int = 1, on_drop: Callable[[object], None] | None = None):
        if max_frames < 1:
            raise ValueError("NewestQueue needs room for at least one frame")
        self.max_frames = max_frames
        self.on_drop = on_drop
        self._items: deque = deque()
        self._frames = 0
        self._cond = threading.Condition()

    def put(self, item) -> None:
        """Add a frame (dropping the oldest frame when full) or a marker (always kept)."""
        dropped = None
        with self._cond:
            if not isinstance(item, Marker):
                if self._frames >= self.max_frames:
                    for i, old in enumerate(self._items):
                        if not isinstance(old, Marker):
                            dropped = old
                            del self._items[i]
                            self._frames -= 1
                            break
                self._frames += 1
            self._items.append(item)
            self._cond.notify()
        if dropped is not None and self.on_drop:
            self.on_drop(dropped)

    def get(self, timeout: float = WAIT):
        """The oldest item; raises :class:`queue.Empty` after ``timeout`` seconds without one."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            item = self._items.popleft()
            if not isinstance(item, Marker):
                self._frames -= 1
            return item

    def get_nowait(self):
        """The oldest item, or :class:`queue.Empty`."""
        return self.get(timeout=0.0)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
