"""Frame-level evaluation of the presence decision over polyp images and polyp-free frames.

Each image goes through the live path's own :class:`~polyp_live.core.segmenter.Segmenter` preparation (field
of view, shared preprocessing) and backend, as a still: a new picture with no history. Its
probability map (model resolution, as the live decision sees it) gives a single-frame candidate score
(:func:`core.decision.candidate_score`). Sweeping the score threshold gives the detection rate on
polyp images against the false-alarm rate on polyp-free frames; the operating point is the lowest
threshold whose false-alarm rate on the validation frames stays within a target, which keeps as many
polyps as that target allows.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.backend import Backend
from polyp_live.core.config import PipelineConfig
from polyp_live.core.decision import DecisionConfig, PresenceDecision, region_scores, score_text
from polyp_live.core.roi import Roi
from polyp_live.core.segmenter import Segmenter
from polyp_live.core.datasets import read_pair, scan, split_stems

# Finer towards 1, where fine-tuned models' peaks on polyp-free frames crowd. Above 0.999 the steps are
# about equal in the logit (7.6 to 11.5): the sigmoid runs in FP32 in every precision flavour
# (engines/precision.py), so an FP16 or INT8 engine still tells these thresholds apart.
SCORE_SWEEP = tuple(round(float(t), 5) for t in np.concatenate([np.arange(0.50, 0.90, 0.02), np.arange(0.90, 0.99, 0.005),
                                                                 np.arange(0.99, 0.9995, 0.001),
                                                                 [0.9995, 0.9998, 0.9999, 0.99995, 0.99998, 0.99999]]))


@dataclass
class FrameScores:
    """Per-image single-frame scores on one split of a polyp set and one of a polyp-free set."""

    positive_stems: list[str]
    positive_scores: np.ndarray        # best passing-area region's peak probability per polyp image
    positive_localised: np.ndarray     # bool per (image, threshold in SCORE_SWEEP): a passing region touches the polyp
    negative_stems: list[str]
    negative_scores: np.ndarray        # the same score per polyp-free frame
    pixel_threshold: float
    min_area_fraction: float


@dataclass
class OperatingPoint:
    """The chosen decision settings and what they gave on the split they were chosen on."""

    score_threshold: float
    min_area_fraction: float
    detection_rate: float
    localised_detection_rate: float
    false_alarm_rate: float
    false_alarm_target: float
    chosen_on: str = ""


def still_segmenter(backend: Backend) -> Segmenter:
    """The live path's Segmenter with its defaults (automatic field of view), for scoring stills."""
    return Segmenter(backend, PipelineConfig())


def infer_still(segmenter: Segmenter, image: np.ndarray) -> tuple[np.ndarray, Roi]:
    """The probability map (model resolution) of one still as ``polyp-live`` computes it, and its ROI.

    The still is a new picture: the segmenter forgets the previous one, detects the field of view
    afresh and preprocesses the crop with the shared function.
    """
    segmenter.reset()
    prepared = segmenter.prepare(image)
    return segmenter.backend.infer(prepared.batch), prepared.roi


def to_image(small: np.ndarray, roi: Roi, shape: tuple[int, ...], interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """A model-resolution map placed back over its ROI in an image of ``shape`` (zero outside)."""
    x, y, w, h = roi
    full = np.zeros(shape[:2], small.dtype)
    full[y:y + h, x:x + w] = cv2.resize(small, (w, h), interpolation=interpolation)
    return full


def _region_stats(prob: np.ndarray, truth_small: np.ndarray | None, pixel_threshold: float,
                  min_area_fraction: float) -> tuple[float, np.ndarray]:
    """Best score among large-enough regions, and per sweep threshold whether a passing region hits the truth."""
    labels, peaks, areas = region_scores(prob, prob >= pixel_threshold)
    ok = areas >= min_area_fraction
    ok[0] = False
    best = float(peaks[ok].max()) if ok.any() else 0.0
    hits = np.zeros(len(SCORE_SWEEP), bool)
    if truth_small is not None and ok.any():
        touching = np.zeros(len(peaks), bool)
        touching[np.unique(labels[truth_small])] = True
        touching[0] = False
        good = peaks[ok & touching]
        if good.size:
            hits = good.max() >= np.asarray(SCORE_SWEEP)
    return best, hits


def score_frames(backend: Backend, data: str | Path, negatives: str | Path | None, split: str,
                 pixel_threshold: float | None = None, min_area_fraction: float = 0.002,
                 progress=None) -> FrameScores:
    """Single-frame scores for every image of ``split`` in the polyp set and the polyp-free set."""
    pixel_threshold = backend.spec.threshold if pixel_threshold is None else pixel_threshold
    segmenter = still_segmenter(backend)
    out: dict[str, tuple[list[str], list[float], list[np.ndarray]]] = {}
    for kind, root in (("pos", data), ("neg", negatives)):
        stems, scores, hits = [], [], []
        if root:
            samples = scan(root, negatives=kind == "neg")
            stems = split_stems(root, split, samples)
            task = progress.add_task(f"scoring {Path(root).name} {split}", total=len(stems)) if progress else None
            for stem in stems:
                image, truth = read_pair(samples[stem])
                prob, (x, y, w, h) = infer_still(segmenter, image)
                small = None
                if kind == "pos":
                    small = cv2.resize(truth[y:y + h, x:x + w].astype(np.uint8), (prob.shape[1], prob.shape[0]),
                                       interpolation=cv2.INTER_NEAREST).astype(bool)
                best, hit = _region_stats(prob, small, pixel_threshold, min_area_fraction)
                scores.append(best)
                hits.append(hit)
                if progress:
                    progress.advance(task)
        out[kind] = (stems, scores, hits)
    return FrameScores(out["pos"][0], np.asarray(out["pos"][1], np.float64),
                       np.asarray(out["pos"][2], bool).reshape(-1, len(SCORE_SWEEP)),
                       out["neg"][0], np.asarray(out["neg"][1], np.float64), pixel_threshold, min_area_fraction)


def sweep(scores: FrameScores) -> list[dict]:
    """Detection, localised detection and false-alarm rates at every threshold of :data:`SCORE_SWEEP`."""
    rows = []
    for j, t in enumerate(SCORE_SWEEP):
        rows.append({
            "score_threshold": t,
            "detection_rate": float(np.mean(scores.positive_scores >= t)) if len(scores.positive_scores) else float("nan"),
            "localised_detection_rate": float(np.mean(scores.positive_localised[:, j])) if len(scores.positive_scores) else float("nan"),
            "false_alarm_rate": float(np.mean(scores.negative_scores >= t)) if len(scores.negative_scores) else float("nan"),
        })
    return rows


def choose_operating_point(scores: FrameScores, false_alarm_target: float, split: str,
                           other_negatives: dict[str, np.ndarray] | None = None,
                           other_target: float | None = None) -> OperatingPoint:
    """The lowest swept threshold whose false-alarm rate is within ``false_alarm_target`` (most polyps kept).

    With ``other_negatives`` (name -> single-frame scores of polyp-free frames from other hospitals),
    the threshold must also keep each of those sets' false-alarm rates within ``other_target``
    (default ``false_alarm_target``): a point that is quiet only in the training hospital is not chosen.
    """
    rows = sweep(scores)
    others = other_negatives or {}
    limit = false_alarm_target if other_target is None else other_target

    def quiet(row: dict) -> bool:
        t = row["score_threshold"]
        return row["false_alarm_rate"] <= false_alarm_target and all(
            float(np.mean(np.asarray(v) >= t)) <= limit for v in others.values() if len(v))

    within = [r for r in rows if quiet(r)]
    pick = within[0] if within else rows[-1]
    chosen_on = split if not others else f"{split} + {', '.join(others)}"
    return OperatingPoint(pick["score_threshold"], scores.min_area_fraction, pick["detection_rate"],
                          pick["localised_detection_rate"], pick["false_alarm_rate"], false_alarm_target, chosen_on)


def at_threshold(scores: FrameScores, threshold: float) -> dict[str, float]:
    """Rates at one score threshold (need not be on the sweep grid), with the images that failed."""
    det = scores.positive_scores >= threshold
    fa = scores.negative_scores >= threshold
    return {"score_threshold": threshold,
            "polyp_images": int(len(det)), "detected": int(det.sum()),
            "detection_rate": float(det.mean()) if len(det) else float("nan"),
            "polyp_free_frames": int(len(fa)), "false_alarms": int(fa.sum()),
            "false_alarm_rate": float(fa.mean()) if len(fa) else float("nan"),
            "missed": [s for s, d in zip(scores.positive_stems, det) if not d],
            "false_alarm_frames": [s for s, f in zip(scores.negative_stems, fa) if f]}


def decided_mask(prob: np.ndarray, pixel_threshold: float, point: DecisionConfig) -> np.ndarray:
    """The single-frame decision's mask at model resolution (what is drawn on a still image)."""
    return PresenceDecision(DecisionConfig(point.score_threshold, point.min_area_fraction, 1, 1))(
        prob, prob >= pixel_threshold).mask


def plot_sweep(rows: list[dict], point: OperatingPoint | None, path: str | Path, title: str) -> None:
    """PNG: detection rate on polyp images against false-alarm rate on polyp-free frames, point marked."""
    plot = detection_plot(path)
    if plot is None:
        return
    plt, fig, ax = plot
    fa = [100 * r["false_alarm_rate"] for r in rows]
    det = [100 * r["detection_rate"] for r in rows]
    loc = [100 * r["localised_detection_rate"] for r in rows]
    ax.plot(fa, det, "-o", ms=3, label="polyp image flagged")
    ax.plot(fa, loc, "-s", ms=3, alpha=0.7, label="flagged region touches the polyp")
    if point is not None:
        ax.plot([100 * point.false_alarm_rate], [100 * point.detection_rate], "r*", ms=14,
                label=f"operating point: score {score_text(point.score_threshold)}")
    labelled = set()
    for r, x, y in zip(rows, fa, det):
        # Label round thresholds, once per point: several thresholds often give the same rates.
        if abs(r["score_threshold"] * 10 - round(r["score_threshold"] * 10)) < 1e-6 and (x, y) not in labelled:
            labelled.add((x, y))
            ax.annotate(f"{r['score_threshold']:.1f}", (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
    save_detection_plot(plt, fig, ax, path, title, "polyp images detected (%)")


def detection_plot(path: str | Path):
    """(pyplot, figure, axes) for a detection-vs-false-alarm PNG, or None (with a note) without matplotlib."""
    try:
        import matplotlib
    except ImportError:  # a plain install evaluates ONNX models; only the picture needs the [train] extra
        print(f"note: {Path(path).name} not drawn (matplotlib is missing: pip install 'polyp-live[train]'); "
              "the JSON holds the same figures")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    return plt, fig, ax


def save_detection_plot(plt, fig, ax, path: str | Path, title: str, ylabel: str) -> None:
    """Label, title and legend the axes the way every detection-vs-false-alarm plot is drawn; write the PNG."""
    ax.set_xlabel("false alarms on polyp-free frames (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 64), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_frame_report(scores: FrameScores, point: OperatingPoint | None, out: str | Path, split: str,
                       model: str, threshold: float) -> dict:
    """JSON summary (sweep, operating point, rates at ``threshold``) and the PNG plot into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = sweep(scores)
    summary = {"model": model, "split": split, "pixel_threshold": scores.pixel_threshold,
               "min_area_fraction": scores.min_area_fraction, "at_operating_point": at_threshold(scores, threshold),
               "sweep": rows}
    if point is not None:
        summary["chosen_operating_point"] = asdict(point)
    (out / f"{split}_frames.json").write_text(json.dumps(summary, indent=2) + "\n")
    shown = point or OperatingPoint(threshold, scores.min_area_fraction,
                                    summary["at_operating_point"]["detection_rate"], float("nan"),
                                    summary["at_operating_point"]["false_alarm_rate"], float("nan"), split)
    plot_sweep(rows, shown, out / f"{split}_detection_vs_false_alarms.png",
               f"{Path(model).name} on {split}: {len(scores.positive_stems)} polyp images, "
               f"{len(scores.negative_stems)} polyp-free frames")
    return summary
