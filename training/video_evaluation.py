"""Evaluate the live path's own segmentation over a video or a folder of frames, per smoothing mode.

Every frame goes through :class:`polyp_live.core.segmenter.Segmenter`, the object ``polyp-live``
runs, read through the same sources. With a folder of ground-truth masks (named like the frames, or
by frame index for a video) it reports, per configuration: mean Dice over frames that hold a polyp
(the reported mask, what the endoscopist sees), the detection rate on those frames, the false-alarm
rate on frames without one, presence toggles per 100 frames, and flicker: 1 - Dice between
consecutive predicted masks, minus the same for the ground truth (motion alone is not flicker).
Without masks only the presence rate, toggles and raw flicker are given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.errors import InvalidValue
from polyp_live.core.backend import Backend
from polyp_live.realtime.appearances import AppearanceTracker, regions_of
from polyp_live.core.config import PipelineConfig
from polyp_live.core.decision import DecisionConfig
from polyp_live.core.segmenter import Segmenter
from polyp_live.realtime.sources import open_source
from polyp_live.core.metrics import image_metrics
from polyp_live.core.roi import parse_roi

MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Variant:
    """One configuration to compare: a name, the smoothing mode and the decision's persistence."""

    name: str
    smoothing: str
    persistence: tuple[int, int] | None = None  # (k, n); None = the model's


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return image_metrics(a, b)["dice"]  # both empty: 1, the project's convention


def _truth(masks: Path | None, index: int, name: str | None, shape: tuple[int, int]) -> np.ndarray | None:
    if masks is None:
        return None
    stem = name if name is not None else f"{index:06d}"
    for suffix in MASK_SUFFIXES:
        path = masks / f"{stem}{suffix}"
        if path.is_file():
            mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise InvalidValue(f"cannot decode mask {path}; replace or remove it")
            if mask.shape != shape:
                raise InvalidValue(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its frame is "
                                 f"{shape[1]}x{shape[0]}; masks must match their frames")
            return mask >= 128
    raise InvalidValue(f"no ground-truth mask for frame {stem} in {masks}; name masks like the frames "
                     "(or by 6-digit frame index for a video)")


class VideoTally:
    """What one configuration did over a source, frame by frame; its metrics at the end (:meth:`row`)."""

    def __init__(self):
        self.dices, self.detections, self.alarms, self.flicker, self.truth_flicker = [], [], [], [], []
        self.toggles = self.present_count = self.frames = 0
        self.prev_pred = self.prev_truth = self.prev_present = None
        self.touched: dict[int, bool] = {}   # appearance id -> it overlapped a true polyp on some frame
        self.runs: list[dict] = []           # true polyps: runs of frames with a polyp in the truth
        self._run = None

    def add(self, pred: np.ndarray, present: bool, truth: np.ndarray | None, now: float, shown_ids, reset: str) -> None:
        """One frame: the drawn mask, the alert, the true mask (None: unannotated), the appearances shown."""
        if truth is not None:
            hit = bool((pred & truth).any())
            for ident in shown_ids:
                self.touched[ident] = self.touched.get(ident, False) or hit
            if truth.any() and (self._run is None or reset in ("scene cut", "size")):
                self._run = {"start": now, "found_at": None}
                self.runs.append(self._run)
            elif not truth.any():
                self._run = None
            if self._run is not None and hit and self._run["found_at"] is None:
                self._run["found_at"] = now
            if truth.any():
                self.dices.append(_dice(pred, truth))
                self.detections.append(present)
            else:
                self.alarms.append(present)
        if self.prev_pred is not None and self.prev_pred.shape == pred.shape:
            self.flicker.append(1.0 - _dice(pred, self.prev_pred))
            if truth is not None and self.prev_truth is not None:
                self.truth_flicker.append(1.0 - _dice(truth, self.prev_truth))
        self.toggles += self.prev_present is not None and present != self.prev_present
        self.present_count += present
        self.prev_pred, self.prev_truth, self.prev_present = pred, truth, present
        self.frames += 1

    def truth_figures(self, appearances, minutes: float) -> dict:
        """The figures that need the true masks."""
        mean = lambda values: float(np.mean(values)) if values else float("nan")  # noqa: E731
        false = sum(not self.touched.get(a.id, False) for a in appearances)
        delays = [r["found_at"] - r["start"] for r in self.runs if r["found_at"] is not None]
        return {"true_polyps": len(self.runs), "true_polyps_found": len(delays), "false_appearances": false,
                "false_appearances_per_minute": false / minutes if minutes else float("nan"),
                "median_time_to_first_detection_s": float(np.median(delays)) if delays else float("nan"),
                "polyp_frames": len(self.dices), "polyp_free_frames": len(self.alarms), "dice": mean(self.dices),
                "detection_rate": mean(self.detections), "false_alarm_rate": mean(self.alarms),
                "flicker": (mean(self.flicker) - mean(self.truth_flicker)) if self.truth_flicker else float("nan")}


def evaluate_variant(backend: Backend, source: str, variant: Variant, base: PipelineConfig,
                     masks: str | Path | None = None, max_frames: int = 0, progress=None) -> dict:
    """Run one configuration over the whole source and return its metrics."""
    decision = DecisionConfig.from_spec(backend.spec) if base.decision is None else base.decision
    if variant.persistence is not None:
        decision = replace(decision, k=variant.persistence[0], n=variant.persistence[1])
    config = replace(base, smoothing=replace(base.smoothing, mode=variant.smoothing), decision=decision)
    segmenter = Segmenter(backend, config)
    masks = Path(masks) if masks else None
    tally = VideoTally()
    src = open_source(source)
    tracker = AppearanceTracker(base.appearance_gap_s, thumbnails=False)
    task = progress.add_task(f"{variant.name}", total=max_frames or None) if progress else None
    with src:
        while not max_frames or tally.frames < max_frames:
            image = src.read()
            if image is None:
                break
            result = segmenter.process(image)
            pred = result.mask > 0
            truth = _truth(masks, src.last_index if src.last_index >= 0 else tally.frames, src.last_name, pred.shape)
            now = tally.frames / (src.fps or 30.0)
            shown_ids = tracker.update(tally.frames, now, regions_of(result), result.decision.candidate,
                                       result.decision.score, None, result.reset)
            tally.add(pred, result.present, truth, now, shown_ids, result.reset)
            if progress:
                progress.advance(task)
    frames = tally.frames
    if frames == 0:
        raise InvalidValue(f"{source} gave no frames")
    appearances, figures = tracker.finish(), tracker.figures()
    row = {"variant": variant.name, "smoothing": variant.smoothing,
           "persistence": f"{decision.k}/{decision.n}", "score_threshold": decision.score_threshold,
           "frames": frames, "present_rate": tally.present_count / frames,
           # Frames the source could not decode are skipped, as polyp-live skips them, and said so.
           "damaged_frames_skipped": int(src.corrupt_frames), "ended_early": getattr(src, "ended_early", None) or "",
           "toggles_per_100_frames": 100.0 * tally.toggles / frames,
           "flicker_raw": float(np.mean(tally.flicker)) if tally.flicker else 0.0,
           "appearances": len(appearances), "appearances_per_minute": figures["appearances_per_minute"],
           "share_appearances_shorter_than_0_5_s": figures["share_shorter_than_0_5_s"],
           "median_time_to_alert_s": figures["median_time_to_alert_s"]}
    if masks is not None:
        row.update(tally.truth_figures(appearances, frames / (src.fps or 30.0) / 60.0))
    return row


def default_variants(smoothing_modes: list[str]) -> list[Variant]:
    """Single-frame reference (no smoothing, no persistence), then each mode with the model's persistence."""
    return [Variant("single frame", "none", (1, 1))] + [Variant(mode, mode) for mode in smoothing_modes]


def write_report(rows: list[dict], out: str | Path, meta: dict) -> Path:
    """``out/video_eval.json`` with the rows and how they were made."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "video_eval.json"
    path.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    return path


def base_config(roi: str = "auto") -> PipelineConfig:
    """The live defaults (as ``polyp-live`` runs them), with the field-of-view mode given."""
    return PipelineConfig(roi=parse_roi(roi))
