"""Binary segmentation metrics in plain NumPy, shared by every evaluation in the project.

Per-image metrics follow the polyp-segmentation convention: an image where prediction and ground
truth are both empty scores 1 on Dice, IoU, precision, recall and F2 (nothing to find, nothing found).
"""

from __future__ import annotations

import numpy as np

METRICS = ("dice", "iou", "precision", "recall", "specificity", "accuracy", "f2")


def confusion(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of two boolean masks of the same shape."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {truth.shape} differ in shape")
    pred, truth = pred.astype(bool), truth.astype(bool)
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return tp, fp, fn, pred.size - tp - fp - fn


def from_confusion(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """All metrics from confusion counts."""
    def ratio(num: float, den: float, empty: float = 1.0) -> float:
        return float(num / den) if den else empty
    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "precision": precision,
        "recall": recall,
        "specificity": ratio(tn, tn + fp),
        "accuracy": ratio(tp + tn, tp + fp + fn + tn),
        "f2": ratio(5 * precision * recall, 4 * precision + recall, empty=0.0) if (tp + fp + fn) else 1.0,
    }


def image_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Metrics of one image."""
    return from_confusion(*confusion(pred, truth))


class MetricAccumulator:
    """Collects per-image metrics and pooled confusion counts over a dataset."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.counts = np.zeros(4, np.int64)

    def add(self, pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        counts = confusion(pred, truth)
        self.counts += counts
        row = from_confusion(*counts)
        self.rows.append(row)
        return row

    def mean(self) -> dict[str, float]:
        """Mean of per-image metrics (the figure papers report as mDice, mIoU, ...)."""
        return {m: float(np.mean([r[m] for r in self.rows])) if self.rows else float("nan") for m in METRICS}

    def pooled(self) -> dict[str, float]:
        """Metrics of the whole dataset's pooled confusion counts."""
        return from_confusion(*(int(c) for c in self.counts))
