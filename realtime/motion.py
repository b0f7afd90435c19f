"""Global motion between two frames, to move a mask computed on an earlier frame onto a later one.

In live mode a mask is drawn on frames captured after the one it was computed on (the annotation
delay). When the camera moves meanwhile, the outline trails the polyp. Phase correlation of small
grey images of the field of view measures the global translation between the two frames in well
under a millisecond; shifting the mask by it compensates camera motion (not the polyp's own, nor
rotation or zoom). Off by default (``--motion-shift``) until measured on moving sequences
(``tools/motion_shift_eval.py``).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from polyp_live.core.postprocess import Detection

THUMB_WIDTH = 192
MIN_RESPONSE = 0.05  # phase-correlation peak below this: no trustworthy shift (flat or changed picture)


class Thumb:
    """A small grey float32 image of a frame's field of view, and its scale to frame pixels."""

    __slots__ = ("image", "scale", "roi")

    def __init__(self, frame: np.ndarray, roi: tuple[int, int, int, int], width: int = THUMB_WIDTH):
        x, y, w, h = roi
        self.roi = roi
        self.scale = w / float(width)
        height = max(8, int(round(h / self.scale)))
        small = cv2.resize(frame[y:y + h, x:x + w], (width, height), interpolation=cv2.INTER_LINEAR)
        self.image = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)


_windows: dict[tuple[int, int], np.ndarray] = {}


def estimate_shift(earlier: Thumb, later: Thumb) -> tuple[float, float]:
    """(dx, dy) in frame pixels that move content of ``earlier`` onto ``later``; (0, 0) when unsure."""
    if earlier.image.shape != later.image.shape or earlier.roi != later.roi:
        return 0.0, 0.0
    size = earlier.image.shape[::-1]
    window = _windows.get(size)
    if window is None:
        window = _windows[size] = cv2.createHanningWindow(size, cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(earlier.image, later.image, window)
    if response < MIN_RESPONSE:
        return 0.0, 0.0
    return dx * earlier.scale, dy * earlier.scale


def shift_detection(detection: Detection, dx: float, dy: float) -> Detection:
    """The detection translated by (dx, dy) pixels (rounded), clipped to the frame."""
    ix, iy = int(round(dx)), int(round(dy))
    if ix == 0 and iy == 0:
        return detection
    h, w = detection.mask.shape
    moved = np.zeros_like(detection.mask)
    src = detection.mask[max(0, -iy):h - max(0, iy), max(0, -ix):w - max(0, ix)]
    moved[max(0, iy):max(0, iy) + src.shape[0], max(0, ix):max(0, ix) + src.shape[1]] = src
    offset = np.array([ix, iy], np.int32)
    contours = [(c + offset).astype(np.int32) for c in detection.contours]
    boxes = []
    for bx, by, bw, bh in detection.boxes:
        x0, y0 = max(0, bx + ix), max(0, by + iy)
        x1, y1 = min(w, bx + ix + bw), min(h, by + iy + bh)
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1 - x0, y1 - y0))
    return replace(detection, mask=moved, contours=contours, boxes=boxes)
