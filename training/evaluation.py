"""Evaluate a checkpoint or an exported model on a dataset split through the live path's backend.

Every image goes through the live path's :class:`~polyp_live.core.segmenter.Segmenter` preparation (field of
view, the shared :func:`core.preprocess.preprocess`) and a :class:`core.backend.Backend`, exactly
as in ``polyp-live`` on a still; the probability map is resized back over the field of view at the
image's own size and scored there with :mod:`training.metrics`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.backend import Backend
from polyp_live.core.decision import DecisionConfig
from polyp_live.core.segmenter import Segmenter
from polyp_live.core.datasets import read_pair, scan, split_stems
from polyp_live.training.frame_evaluation import decided_mask, infer_still, still_segmenter, to_image
from polyp_live.core.metrics import METRICS, MetricAccumulator, image_metrics

SWEEP = tuple(round(t, 2) for t in np.arange(0.20, 0.81, 0.05))


@dataclass
class Evaluation:
    """Per-image rows, mean and pooled metrics, and the probability maps kept for a sweep."""

    split: str
    threshold: float
    rows: list[dict]
    mean: dict[str, float]
    pooled: dict[str, float]
    sweep: dict[float, float]


def decision_gate(prob_small: np.ndarray, threshold: float, decision: DecisionConfig) -> np.ndarray:
    """Where the single-frame decision lets an outline be drawn, as a bool mask at model resolution.

    The decision runs at model resolution, as in the live path; its kept regions are slightly
    dilated, so that upsampling does not shave their edges, before they gate the full-resolution
    thresholded probability.
    """
    kept = decided_mask(prob_small, threshold, decision).astype(np.uint8)
    return cv2.dilate(kept, np.ones((3, 3), np.uint8)).astype(bool)


def still_probability(segmenter: Segmenter, image: np.ndarray, threshold: float,
                      decision: DecisionConfig | None = None) -> np.ndarray:
    """The probability map over ``image`` at its own size as ``polyp-live`` computes it on a still.

    With ``decision``, it is zero outside the regions the single-frame presence decision lets the
    live path draw (everywhere when the decision fails), so ``>= threshold`` is the drawn mask.
    """
    prob_small, roi = infer_still(segmenter, image)
    prob = to_image(prob_small, roi, image.shape)
    if decision is not None:
        gate = decision_gate(prob_small, threshold, decision).astype(np.uint8)
        prob *= to_image(gate, roi, image.shape, cv2.INTER_NEAREST)
    return prob


def evaluate(backend: Backend, data: str | Path, split: str, threshold: float | None = None,
             sweep: bool = False, progress=None,
             decision: DecisionConfig | None = None) -> tuple[Evaluation, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]:
    """Score ``backend`` on one split. Returns the evaluation and (stem, image, truth, prob) per image.

    With ``decision``, an image's predicted mask is what the live path would draw on it as a still:
    only regions that pass the single-frame presence decision (nothing when it fails).
    """
    threshold = backend.spec.threshold if threshold is None else threshold
    samples = scan(data)
    stems = split_stems(data, split, samples)
    acc = MetricAccumulator()
    sweep_dice = {t: [] for t in SWEEP} if sweep else {}
    rows, kept = [], []
    segmenter = still_segmenter(backend)
    task = progress.add_task(f"evaluating {split}", total=len(stems)) if progress else None
    for stem in stems:
        image, truth = read_pair(samples[stem])
        prob = still_probability(segmenter, image, threshold, decision)
        row = acc.add(prob >= threshold, truth)
        rows.append({"image": stem, **row})
        for t in sweep_dice:
            sweep_dice[t].append(image_metrics(prob >= t, truth)["dice"])
        # Keep small copies only: the overlay grid needs them, memory should not grow with image size.
        scale = 256 / max(image.shape[:2])
        size = (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale)))
        kept.append((stem, cv2.resize(image, size), cv2.resize(truth.astype(np.uint8), size) > 0,
                     cv2.resize(prob, size)))
        if progress:
            progress.advance(task)
    result = Evaluation(split, threshold, rows, acc.mean(), acc.pooled(),
                        {t: float(np.mean(v)) for t, v in sweep_dice.items()})
    return result, kept


def best_threshold(sweep: dict[float, float]) -> float:
    """The threshold with the highest mean Dice (ties go to the one closest to 0.5)."""
    return max(sweep, key=lambda t: (round(sweep[t], 6), -abs(t - 0.5)))


def write_reports(result: Evaluation, kept, out: str | Path, model: str) -> dict:
    """Per-image CSV, JSON summary and best/worst overlay grid into ``out``; returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{result.split}_per_image.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", *METRICS])
        writer.writeheader()
        writer.writerows(result.rows)
    summary = {"model": model, "split": result.split, "images": len(result.rows), "threshold": result.threshold,
               "mean": result.mean, "pooled": result.pooled,
               "sweep_mean_dice": {f"{t:.2f}": d for t, d in result.sweep.items()}}
    if result.sweep:
        summary["best_threshold"] = best_threshold(result.sweep)
    (out / f"{result.split}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    overlay_grid(result, kept, out / f"{result.split}_best_worst.png")
    return summary


def overlay_grid(result: Evaluation, kept, path: Path, per_row: int = 4) -> None:
    """Top row: the best-scoring images; bottom row: the worst. Green truth, red prediction, with a legend."""
    order = np.argsort([r["dice"] for r in result.rows])
    picks = list(order[::-1][:per_row]) + list(order[:per_row])
    tiles = []
    for i in picks:
        stem, image, truth, prob = kept[i]
        tile = cv2.resize(image, (256, 256))
        t = cv2.resize(truth.astype(np.uint8), (256, 256)) > 0
        p = cv2.resize(prob, (256, 256)) >= result.threshold
        for mask, colour in ((t, (0, 255, 0)), (p, (0, 0, 255))):
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(tile, contours, -1, colour, 2)
        cv2.putText(tile, f"Dice {result.rows[i]['dice']:.3f}", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (255, 255, 255), 2)
        tiles.append(tile)
    while len(tiles) < 2 * per_row:
        tiles.append(np.zeros((256, 256, 3), np.uint8))
    grid = np.vstack([np.hstack(tiles[:per_row]), np.hstack(tiles[per_row:])])
    legend = np.full((34, grid.shape[1], 3), 255, np.uint8)
    cv2.line(legend, (10, 17), (40, 17), (0, 255, 0), 3)
    cv2.putText(legend, "ground truth", (48, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(legend, (200, 17), (230, 17), (0, 0, 255), 3)
    cv2.putText(legend, f"prediction (threshold {result.threshold:.2f})", (238, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(legend, "top: best Dice   bottom: worst Dice", (grid.shape[1] - 360, 23), cv2.FONT_HERSHEY_SIMPLEX,
                0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), np.vstack([grid, legend]))
