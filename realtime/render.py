"""Overlays and the heads-up display, drawn at the source resolution."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from polyp_live.realtime.config import RenderConfig
from polyp_live.realtime.postprocess import Detection

STYLES = ("fill", "contour", "both", "heatmap")


@dataclass
class HudInfo:
    fps: float
    latency_ms: float
    inference_ms: float
    backend: str
    message: str = ""


def overlay(frame: np.ndarray, detection: Detection, prob: np.ndarray | None, roi, config: RenderConfig) -> np.ndarray:
    """Draw the segmentation in ``config.style`` onto ``frame`` in place and return it.

    The captured frame is not needed after rendering, so no full-frame copy is made per frame.
    """
    out = frame
    style = config.style
    if style == "heatmap" and prob is not None:
        x, y, w, h = roi
        heat = cv2.applyColorMap((cv2.resize(prob, (w, h)) * 255).astype(np.uint8), cv2.COLORMAP_JET)
        region = out[y:y + h, x:x + w]
        cv2.addWeighted(heat, config.alpha + 0.1, region, 1 - config.alpha - 0.1, 0, dst=region)
    if style in ("fill", "both") and detection.present:
        # Blend only inside the detections' bounding boxes: cheap at 1080p when polyps are small.
        for x, y, w, h in detection.boxes:
            region, mask = out[y:y + h, x:x + w], detection.mask[y:y + h, x:x + w]
            tinted = cv2.addWeighted(region, 1 - config.alpha, np.full_like(region, config.color), config.alpha, 0)
            cv2.copyTo(tinted, mask, region)
    if style in ("contour", "both", "heatmap") and detection.contours:
        thickness = max(2, frame.shape[0] // 360)
        cv2.drawContours(out, detection.contours, -1, config.color, thickness, cv2.LINE_AA)
    return out


def draw_hud(image: np.ndarray, hud: HudInfo, present: bool) -> None:
    """Draw FPS, latency, inference time and the polyp-present indicator in place."""
    h = image.shape[0]
    scale = max(0.45, h / 1440)
    thick = max(1, int(round(scale * 2)))
    lines = [f"FPS {hud.fps:5.1f}", f"latency {hud.latency_ms:5.1f} ms", f"inference {hud.inference_ms:5.1f} ms", hud.backend]
    line_h = int(28 * scale * 1.4)
    box_w = int(300 * scale * 1.4)
    panel = image[0:line_h * (len(lines) + 1) + 8, 0:box_w]
    panel[:] = (panel * 0.4).astype(np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(image, text, (8, line_h * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    colour = (0, 0, 255) if present else (160, 160, 160)
    label = "POLYP" if present else "no polyp"
    y = line_h * (len(lines) + 1)
    cv2.circle(image, (16, y - line_h // 3), max(5, line_h // 3), colour, -1, cv2.LINE_AA)
    cv2.putText(image, label, (16 + line_h // 2 + 8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)
    if hud.message:
        cv2.putText(image, hud.message, (8, h - 12), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 200, 255), thick, cv2.LINE_AA)


def signal_lost_screen(last: np.ndarray | None, size: tuple[int, int], text: str) -> np.ndarray:
    """The display while a live source is lost: the last frame dimmed under a banner (never recorded)."""
    w, h = size
    base = (last * 0.3).astype(np.uint8) if last is not None else np.zeros((max(h, 240), max(w, 320), 3), np.uint8)
    scale = max(0.8, base.shape[0] / 720)
    cv2.putText(base, "SIGNAL LOST", (20, base.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.6 * scale, (0, 0, 255),
                max(2, int(3 * scale)), cv2.LINE_AA)
    cv2.putText(base, text, (20, base.shape[0] // 2 + int(50 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale,
                (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
    return base
