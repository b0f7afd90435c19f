"""Evaluate the live path's own segmentation over a video or a folder of frames, per smoothing mode.

Every frame goes through :class:`polyp_live.realtime.segmenter.Segmenter`, the object ``polyp-live``
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

from polyp_live.engines.base import Backend
from polyp_live.realtime.appearances import AppearanceTracker, regions_of
from polyp_live.realtime.config import PipelineConfig
from polyp_live.realtime.decision import DecisionConfig
from polyp_live.realtime.segmenter import Segmenter
from polyp_live.realtime.sources import open_source
from polyp_live.training.metrics import image_metrics

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
                raise ValueError(f"cannot decode mask {path}; replace or remove it")
            if mask.shape != shape:
                raise ValueError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its frame is "
                                 f"{shape[1]}x{shape[0]}; masks must match their frames")
            return mask >= 128
    raise ValueError(f"no ground-truth mask for frame {stem} in {masks}; name masks like the frames "
                     "(or by 6-digit frame index for a video)")


def evaluate_variant(backend: Backend, source: str, variant: Variant, base: PipelineConfig,
                     masks: str | Path | None = None, max_frames: int = 0, progress=None) -> dict:
    """Run one configuration over the whole source and return its metrics."""
    decision = DecisionConfig.from_spec(backend.spec) if base.decision is None else base.decision
    if variant.persistence is not None:
        decision = replace(decision, k=variant.persistence[0], n=variant.persistence[1])
    config = replace(base, smoothing=replace(base.smoothing, mode=variant.smoothing), decision=decision)
    segmenter = Segmenter(backend, config)
    masks = Path(masks) if masks else None
    dices, detections, alarms, toggles, flicker, truth_flicker, present_count = [], [], [], 0, [], [], 0
    prev_pred = prev_truth = prev_present = None
    frames = 0
    src = open_source(source)
    tracker = AppearanceTracker(base.appearance_gap_s, thumbnails=False)
    touched: dict[int, bool] = {}      # appearance id -> it overlapped a true polyp on some frame
    runs: list[dict] = []              # true polyps: runs of frames with a polyp in the truth
    run = None
    task = progress.add_task(f"{variant.name}", total=max_frames or None) if progress else None
    with src:
        while not max_frames or frames < max_frames:
            image = src.read()
            if image is None:
                break
            result = segmenter.process(image)
            pred = result.mask > 0
            present = result.present
            truth = _truth(masks, src.last_index if src.last_index >= 0 else frames, src.last_name, pred.shape)
            now = frames / (src.fps or 30.0)
            shown_ids = tracker.update(frames, now, regions_of(result), result.decision.candidate,
                                       result.decision.score, None, result.reset)
            if truth is not None:
                hit = bool((pred & truth).any())
                for ident in shown_ids:
                    touched[ident] = touched.get(ident, False) or hit
                if truth.any() and (run is None or result.reset in ("scene cut", "size")):
                    run = {"start": now, "found_at": None}
                    runs.append(run)
                elif not truth.any():
                    run = None
                if run is not None and hit and run["found_at"] is None:
                    run["found_at"] = now
            if truth is not None:
                if truth.any():
                    dices.append(_dice(pred, truth))
                    detections.append(present)
                else:
                    alarms.append(present)
            if prev_pred is not None and prev_pred.shape == pred.shape:
                flicker.append(1.0 - _dice(pred, prev_pred))
                if truth is not None and prev_truth is not None:
                    truth_flicker.append(1.0 - _dice(truth, prev_truth))
            toggles += prev_present is not None and present != prev_present
            present_count += present
            prev_pred, prev_truth, prev_present = pred, truth, present
            frames += 1
            if progress:
                progress.advance(task)
    if frames == 0:
        raise ValueError(f"{source} gave no frames")
    row = {"variant": variant.name, "smoothing": variant.smoothing,
           "persistence": f"{decision.k}/{decision.n}", "score_threshold": decision.score_threshold,
           "frames": frames, "present_rate": present_count / frames,
           # Frames the source could not decode are skipped, as polyp-live skips them, and said so.
           "damaged_frames_skipped": int(src.corrupt_frames),
           "ended_early": getattr(src, "ended_early", None) or "",
           "toggles_per_100_frames": 100.0 * toggles / frames,
           "flicker_raw": float(np.mean(flicker)) if flicker else 0.0}
    appearances = tracker.finish()
    figures = tracker.figures()
    row.update({"appearances": len(appearances), "appearances_per_minute": figures["appearances_per_minute"],
                "share_appearances_shorter_than_0_5_s": figures["share_shorter_than_0_5_s"],
                "median_time_to_alert_s": figures["median_time_to_alert_s"]})
    if masks is not None:
        minutes = frames / (src.fps or 30.0) / 60.0
        false = sum(not touched.get(a.id, False) for a in appearances)
        delays = [r["found_at"] - r["start"] for r in runs if r["found_at"] is not None]
        row.update({
            "true_polyps": len(runs), "true_polyps_found": len(delays),
            "false_appearances": false, "false_appearances_per_minute": false / minutes if minutes else float("nan"),
            "median_time_to_first_detection_s": float(np.median(delays)) if delays else float("nan"),
        })
        row.update({
            "polyp_frames": len(dices), "polyp_free_frames": len(alarms),
            "dice": float(np.mean(dices)) if dices else float("nan"),
            "detection_rate": float(np.mean(detections)) if detections else float("nan"),
            "false_alarm_rate": float(np.mean(alarms)) if alarms else float("nan"),
            "flicker": (float(np.mean(flicker)) - float(np.mean(truth_flicker))) if truth_flicker else float("nan"),
        })
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
    from polyp_live.realtime.roi import parse_roi
    return PipelineConfig(roi=parse_roi(roi))
