"""Field of view: the endoscope image inside black margins and on-screen text."""

from __future__ import annotations

import cv2
import numpy as np

from polyp_live.core.errors import InvalidValue
from polyp_live.core.config import RoiConfig

Roi = tuple[int, int, int, int]  # x, y, w, h in frame pixels


def detect_fov(frame: np.ndarray, brightness: int = 20, min_fraction: float = 0.2) -> Roi:
    """Bounding box of the largest bright region; the full frame when none is convincing.

    Works on a quarter-size grey image, so it costs well under a millisecond at 1080p. The largest
    connected component (not every bright pixel) is used so overlay text in the margins is ignored.
    """
    h, w = frame.shape[:2]
    scale = 4
    small = cv2.resize(frame, (max(1, w // scale), max(1, h // scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    bright = (grey > brightness).astype(np.uint8)
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    if count <= 1:
        return (0, 0, w, h)
    label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh, area = stats[label]
    if area < min_fraction * grey.size:
        return (0, 0, w, h)
    x0, y0 = max(0, x * scale), max(0, y * scale)
    x1, y1 = min(w, (x + bw) * scale), min(h, (y + bh) * scale)
    return (int(x0), int(y0), int(x1 - x0), int(y1 - y0))


def parse_roi(text: str) -> RoiConfig:
    """``auto``, ``full`` or ``x,y,w,h`` -> RoiConfig; raises ValueError naming the accepted forms."""
    if text in ("auto", "full"):
        return RoiConfig(mode=text)
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise InvalidValue(f"--roi {text!r} is not valid; use auto, full or x,y,w,h in pixels") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise InvalidValue(f"--roi {text!r} needs x,y >= 0 and w,h > 0")
    return RoiConfig(mode="fixed", fixed=(x, y, w, h))


class RoiTracker:
    """Gives the ROI for each frame, re-detecting every ``refresh_frames`` frames in auto mode."""

    def __init__(self, config: RoiConfig):
        self.config = config
        self._roi: Roi | None = None
        self._age = 0

    def reset(self) -> None:
        self._roi = None

    def __call__(self, frame: np.ndarray) -> Roi:
        h, w = frame.shape[:2]
        if self.config.mode == "full":
            return (0, 0, w, h)
        if self.config.mode == "fixed":
            x, y, rw, rh = self.config.fixed
            if x + rw > w or y + rh > h:
                raise InvalidValue(f"--roi {x},{y},{rw},{rh} lies outside the {w}x{h} frame; pass a box inside it")
            return self.config.fixed
        if self._roi is None or self._age >= self.config.refresh_frames:
            self._roi, self._age = detect_fov(frame, self.config.brightness), 0
        self._age += 1
        return self._roi
