"""Overlays and the heads-up display, drawn at the source resolution."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from polyp_live.core.config import RenderConfig
from polyp_live.core.postprocess import Detection

STYLES = ("fill", "contour", "both", "heatmap")


@dataclass
class HudInfo:
    """What the heads-up display shows on one frame.

    Attributes:
        fps: output frames per second (rolling).
        video_delay_ms: capture to display of the frames (rolling mean).
        annotation_delay_ms: capture of the drawn masks' frames to their display (rolling mean, like
            the video delay, so the two compare; in file mode they are the same frames'); None when
            no mask is drawn.
        inference_ms: the model's time on its latest frame.
        model: the model's name (file stem).
        precision: fp32, fp16 or int8.
        backend: the runtime, e.g. ``onnxruntime:CPU``.
        annotation: "" (a current mask is drawn), "stale" (the newest mask is too old to draw),
            "waiting" (no mask yet) or "lost" (the inference server is unreachable).
        message: a state line (signal lost, server reconnecting); shown while it lasts.
    """

    fps: float
    video_delay_ms: float
    annotation_delay_ms: float | None
    inference_ms: float
    model: str = ""
    precision: str = ""
    backend: str = ""
    annotation: str = ""
    message: str = ""
    stale_ms: float | None = None   # age of the newest mask when it is too old to draw
    appearance: str = ""            # the current polyp appearance, e.g. "#3 2.4 s"


_local = threading.local()


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 work buffer of ``shape`` from a per-thread buffer that only grows."""
    need = int(np.prod(shape))
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < need:
        buf = _local.buf = np.empty(max(need, 1), np.uint8)
    return buf[:need].reshape(shape)


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
        tint = tuple(float(c) * config.alpha for c in config.color) + (0.0,)
        for x, y, w, h in detection.boxes:
            region, mask = out[y:y + h, x:x + w], detection.mask[y:y + h, x:x + w]
            # region * (1 - alpha) + colour * alpha, in a reused buffer: no allocation per frame.
            tinted = _scratch(region.shape)
            cv2.convertScaleAbs(region, dst=tinted, alpha=1 - config.alpha)
            cv2.add(tinted, tint, dst=tinted)
            cv2.copyTo(tinted, mask, region)
    if style in ("contour", "both", "heatmap") and detection.contours:
        thickness = max(2, frame.shape[0] // 360)
        cv2.drawContours(out, detection.contours, -1, config.color, thickness, cv2.LINE_AA)
    return out


def hud_panel(frame_size: tuple[int, int], roi: tuple[int, int, int, int] | None) -> tuple[int, int, int, bool]:
    """Where the HUD goes: (x, y, width, outside) for a frame (w, h) whose field of view is ``roi``.

    When the frame has side margins wide enough (they usually do: the endoscope's round or octagonal
    image sits inside a black frame), the panel goes into one of them, at the top, so it covers
    nothing of the image: the right one whenever it is wide enough, the left one only when the right
    one is not. Preferring one side keeps the panel still when the field of view shifts by a few
    pixels between scenes, and keeps it off the left margin where processors and clips put their
    captions and patient data. Otherwise it sits in the top-left corner over the image.
    """
    w, h = frame_size
    pad = max(4, w // 160)
    if roi is not None:
        x, _, rw, _ = roi
        left, right = x, w - (x + rw)
        wide_enough = max(96, w // 10)
        if right >= wide_enough:
            return x + rw + pad, pad, right - 2 * pad, True
        if left >= wide_enough:
            return pad, pad, left - 2 * pad, True
    return pad, pad, max(160, w // 5), False


def draw_hud(image: np.ndarray, hud: HudInfo, present: bool, roi: tuple[int, int, int, int] | None = None) -> None:
    """Draw the HUD panel in place: polyp indicator, FPS, the two delays, inference time, model."""
    h, w = image.shape[:2]
    x0, y0, width, _ = hud_panel((w, h), roi)
    if hud.annotation == "stale":
        age = f" {hud.stale_ms:.0f} ms" if hud.stale_ms is not None else ""
        label, colour = f"annotation stale{age}", (0, 200, 255)
    elif hud.annotation == "lost":
        label, colour = "no annotation", (0, 200, 255)
    elif hud.annotation == "waiting":
        label, colour = "waiting for model", (160, 160, 160)
    elif present:
        label, colour = f"POLYP {hud.appearance}".strip(), (0, 0, 255)
    else:
        label, colour = "no polyp", (160, 160, 160)
    annot = f"{hud.annotation_delay_ms:.0f} ms" if hud.annotation_delay_ms is not None else "-"
    lines = [f"{hud.fps:.1f} FPS", f"video {hud.video_delay_ms:.0f} ms", f"annot. {annot}",
             f"model {hud.inference_ms:.0f} ms", hud.model, f"{hud.backend} {hud.precision}".strip()]
    lines = [line for line in lines if line]
    font = cv2.FONT_HERSHEY_SIMPLEX
    # One scale for the panel: the widest line fits, and never larger than ~1/40 of the frame height.
    widest = max(cv2.getTextSize(text, font, 1.0, 1)[0][0] for text in lines + ["  " + label])
    scale = max(0.3, min(h / 900, (width - 8) / max(1, widest)))
    thick = 1 if scale < 0.7 else 2
    line_h = int(30 * scale) + 4
    message = _wrap(hud.message, font, scale, thick, width - 8) if hud.message else []
    rows = len(lines) + 1 + len(message)
    panel_h = min(h - y0, line_h * rows + line_h // 2)
    panel = image[y0:y0 + panel_h, x0:x0 + width]
    np.right_shift(panel, 2, out=panel)  # darken to a quarter in place: legible, and no allocation
    tx, ty = x0 + 4, y0 + line_h
    radius = max(4, line_h // 3)
    cv2.circle(image, (tx + radius, ty - line_h // 3), radius, colour, -1, cv2.LINE_AA)
    cv2.putText(image, label, (tx + 2 * radius + 6, ty), font, scale, colour, thick, cv2.LINE_AA)
    for i, text in enumerate(lines, start=1):
        cv2.putText(image, text, (tx, ty + i * line_h), font, scale, (235, 235, 235), thick, cv2.LINE_AA)
    for i, text in enumerate(message, start=len(lines) + 1):
        cv2.putText(image, text, (tx, ty + i * line_h), font, scale, (0, 200, 255), thick, cv2.LINE_AA)


def _wrap(text: str, font: int, scale: float, thick: int, width: int) -> list[str]:
    """Break ``text`` into lines no wider than ``width`` pixels (a word longer than that stays whole)."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and cv2.getTextSize(candidate, font, scale, thick)[0][0] > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])


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
