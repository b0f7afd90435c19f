"""From a binary mask at model resolution to a clean full-frame mask, outlines and boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from polyp_live.core.roi import Roi


@dataclass
class Detection:
    """What one frame's segmentation found, in full-frame pixel coordinates."""

    mask: np.ndarray                      # uint8 0/255, frame size
    contours: list[np.ndarray] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)
    present: bool = False                 # the frame-level alert (the presence decision's, when it ran)


def clean_mask(mask: np.ndarray, min_area: int, fill_holes: bool = True) -> np.ndarray:
    """Drop components smaller than ``min_area`` pixels and fill holes; bool in, bool out."""
    mask_u8 = mask.astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask_u8, connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= max(1, min_area)
    out = keep[labels]
    if fill_holes and out.any():
        # Holes are background components that do not touch the border.
        inverse = (~out).astype(np.uint8)
        n, lab, st, _ = cv2.connectedComponentsWithStats(inverse, connectivity=4)
        h, w = out.shape
        x, y, bw, bh = (st[:, k] for k in range(4))
        hole = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
        hole[0] = False  # label 0 is the foreground itself
        out |= hole[lab]
    return out


def to_frame(mask: np.ndarray, roi: Roi, frame_shape: tuple[int, int], min_area: int,
             fill_holes: bool = True, present: bool | None = None) -> Detection:
    """Clean a model-resolution mask, scale it into the ROI and describe it in frame coordinates.

    ``min_area`` is in frame pixels; it is converted to model pixels so cleaning runs on the small mask.
    ``present`` is the frame-level alert; by default, whether any region survived cleaning.
    """
    x, y, w, h = roi
    scale = (mask.shape[0] * mask.shape[1]) / float(max(1, w * h))
    small = clean_mask(mask, int(round(min_area * scale)), fill_holes)
    full = np.zeros(frame_shape[:2], np.uint8)
    if small.any():
        # Linear interpolation of the 0/1 mask then 0.5 gives smooth outlines instead of blocky ones.
        up = cv2.resize(small.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR)
        full[y:y + h, x:x + w] = np.where(up >= 128, 255, 0).astype(np.uint8)
    contours, _ = cv2.findContours(full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = [c for c in contours if cv2.contourArea(c) >= min_area * 0.5]
    boxes = [tuple(int(v) for v in cv2.boundingRect(c)) for c in contours]
    areas = [int(cv2.contourArea(c)) for c in contours]
    return Detection(full, list(contours), boxes, areas, bool(boxes) if present is None else bool(present))
