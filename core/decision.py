"""The frame-level "polyp present" decision: a calibrated per-region score and persistence over frames.

A region (a connected component of the hysteresis mask at model resolution) is a *candidate* when its
peak probability reaches ``score_threshold`` and it covers at least ``min_area_fraction`` of the model
input. The alert is raised only when candidates were seen on at least ``k`` of the last ``n`` frames,
as commercial detectors do to avoid one-frame flashes on folds, bubbles and specular highlights. While
the alert is down nothing is drawn; while it is up, only candidate regions are drawn. The HUD, the
outlines, ``polyp_frames`` and the saved masks all follow this one decision.

The operating point (``score_threshold``, ``min_area_fraction``, ``k``, ``n``) is chosen on the
validation splits by ``tools/evaluate.py`` and stored under ``info["decision"]`` in the model sidecar.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from polyp_live.core.errors import InvalidValue
from polyp_live.core.spec import ModelSpec


def score_text(threshold: float) -> str:
    """A score threshold as people read it: three decimals, more where the threshold has them
    (0.996, 0.9995, 0.99998), so that a point above 0.999 is not printed as 1.000."""
    threshold = float(threshold)
    return f"{threshold:.3f}" if abs(threshold - round(threshold, 3)) < 1e-9 else f"{threshold:.6g}"


@dataclass(frozen=True)
class DecisionConfig:
    """Operating point of the presence decision.

    Attributes:
        score_threshold: a region's peak probability must reach this to count.
        min_area_fraction: a region must cover at least this fraction of the model input.
        k: frames with a candidate needed among the last ``n`` to raise the alert.
        n: length of the persistence window in frames.
    """

    score_threshold: float = 0.5
    min_area_fraction: float = 0.0
    k: int = 1
    n: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise InvalidValue(f"score threshold must lie in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.min_area_fraction < 1.0:
            raise InvalidValue(f"minimum region area must lie in [0, 1), got {self.min_area_fraction}")
        if not 1 <= self.k <= self.n:
            raise InvalidValue(f"persistence {self.k}/{self.n} is invalid; use K/N with 1 <= K <= N")

    @classmethod
    def from_spec(cls, spec: ModelSpec, **overrides) -> "DecisionConfig":
        """The sidecar's operating point (``info["decision"]``), with ``None``-valued overrides ignored.

        A sidecar without one (models exported before the decision existed) gets a single-frame
        decision at the model's own threshold, which is what those models were evaluated with.
        """
        stored = dict(spec.info.get("decision", {})) if isinstance(spec.info, dict) else {}
        base = cls(score_threshold=float(stored.get("score_threshold", spec.threshold)),
                   min_area_fraction=float(stored.get("min_area_fraction", 0.0)),
                   k=int(stored.get("k", 1)), n=int(stored.get("n", 1)))
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Decision:
    """The decision on one frame.

    Attributes:
        mask: bool HxW at model resolution: the candidate regions while the alert is up, else empty.
        present: the alert (persisted) state: a polyp is reported on this frame.
        candidate: this frame alone holds a region that passes the score and area tests.
        score: the best region's peak probability on this frame (0 when there is no region).
    """

    mask: np.ndarray
    present: bool
    candidate: bool
    score: float
    region_scores: list[float] = field(default_factory=list)


def region_scores(prob: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label the regions of ``mask``; return (labels, peak probability per label, area fraction per label).

    Index 0 of both arrays is the background.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    peaks = np.zeros(count, np.float32)
    if count > 1:
        # Per-label maximum in one pass; the background row stays 0.
        np.maximum.at(peaks, labels.ravel(), prob.ravel().astype(np.float32))
        peaks[0] = 0.0
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.float64) / float(mask.size)
    return labels, peaks, areas


def candidate_score(prob: np.ndarray, mask: np.ndarray, min_area_fraction: float = 0.0) -> float:
    """The single-frame score: the highest peak probability among regions large enough to count.

    This is what ``tools/evaluate.py`` sweeps to choose the score threshold.
    """
    _, peaks, areas = region_scores(prob, mask)
    ok = areas[1:] >= min_area_fraction
    return float(peaks[1:][ok].max()) if ok.any() else 0.0


class PresenceDecision:
    """Stateful presence decision over a stream of frames; call :meth:`reset` on scene changes.

    Args:
        config: the operating point.
    """

    def __init__(self, config: DecisionConfig):
        self.config = config
        self._history: deque[bool] = deque(maxlen=config.n)

    def reset(self) -> None:
        """Forget the persistence history (signal loss, new field of view, frame size change)."""
        self._history.clear()

    def __call__(self, prob: np.ndarray, mask: np.ndarray) -> Decision:
        """Decide on one frame: regions of ``mask`` (hysteresis of the smoothed map) scored on ``prob``.

        The live path passes the model's own probability map of this frame as ``prob``, so that
        temporal smoothing shapes the outlines but never decides presence; both are model size.
        """
        if prob.shape != mask.shape:
            raise ValueError(f"probability map {prob.shape} and mask {mask.shape} differ in shape")
        cfg = self.config
        labels, peaks, areas = region_scores(prob, mask)
        passing = (peaks >= cfg.score_threshold) & (areas >= cfg.min_area_fraction)
        passing[0] = False
        candidate = bool(passing.any())
        self._history.append(candidate)
        present = candidate and sum(self._history) >= cfg.k
        out = passing[labels] if present else np.zeros(mask.shape, bool)
        score = float(peaks[1:].max()) if len(peaks) > 1 else 0.0
        return Decision(out, present, candidate, score, [float(p) for p in peaks[1:][passing[1:]]])
