"""Temporal smoothing of probability maps, hysteresis thresholds and scene-cut detection.

``ema`` averages probabilities over frames. ``confidence`` follows MediaPipe's segmentation
smoothing: each pixel's mixing weight grows with its uncertainty (binary entropy), so confident pixels
follow the new frame at once while uncertain pixels near the boundary keep their previous value. It
lags less behind camera motion than a plain EMA.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from polyp_live.core.errors import InvalidValue

SMOOTHING_MODES = ("none", "ema", "confidence")


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli(p), 0 for certain pixels, 1 at p = 0.5."""
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


class TemporalSmoother:
    """Stateful smoother; ``reset()`` forgets the past (scene cut, signal loss, ROI change)."""

    def __init__(self, mode: str = "confidence", strength: float = 0.6):
        if mode not in SMOOTHING_MODES:
            raise InvalidValue(f"unknown smoothing {mode!r}; choose one of: {', '.join(SMOOTHING_MODES)}")
        if not 0.0 <= strength < 1.0:
            raise InvalidValue(f"--smoothing-strength must lie in [0, 1), got {strength}")
        self.mode, self.strength = mode, strength
        self.previous: np.ndarray | None = None

    def reset(self) -> None:
        self.previous = None

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        if self.mode == "none" or self.previous is None or self.previous.shape != prob.shape:
            out = prob
        elif self.mode == "ema":
            out = (1 - self.strength) * prob + self.strength * self.previous
        else:
            uncertainty = 1.0 - (1.0 - binary_entropy(prob)) ** 2
            mix = self.strength * uncertainty
            out = prob + (self.previous - prob) * mix
        self.previous = out.astype(np.float32, copy=False)
        return self.previous


class Hysteresis:
    """A pixel switches on at ``high`` and off only below ``low``, so outlines do not blink."""

    def __init__(self, high: float, low: float):
        if not 0.0 < low <= high < 1.0:
            raise InvalidValue(f"thresholds need 0 < --threshold-low ({low}) <= --threshold ({high}) < 1")
        self.high, self.low = high, low
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        self.state = None

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        on = prob >= self.high
        if self.state is not None and self.state.shape == prob.shape:
            on |= self.state & (prob >= self.low)
        self.state = on
        return on


class SceneCutDetector:
    """Flags a cut when a 32x32 grey thumbnail changes by more than ``threshold`` on average, or by more
    than ``relative`` times the median change of the recent frames (and at least ``floor``).

    The relative test finds a cut between two pictures of similar brightness (two polyp stills in a
    row changed the thumbnail by 20, under the absolute 40) while fast camera motion, which raises
    the recent median, does not count as one.
    """

    def __init__(self, threshold: float = 40.0, relative: float = 8.0, floor: float = 15.0, window: int = 30):
        self.threshold, self.relative, self.floor = threshold, relative, floor
        self.previous: np.ndarray | None = None
        self.recent: deque[float] = deque(maxlen=window)

    def reset(self) -> None:
        self.previous = None
        self.recent.clear()

    def __call__(self, frame: np.ndarray) -> bool:
        thumb = cv2.cvtColor(cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        thumb = thumb.astype(np.float32)
        cut = False
        if self.previous is not None:
            change = float(np.mean(np.abs(thumb - self.previous)))
            typical = float(np.median(self.recent)) if len(self.recent) >= 5 else None
            cut = change > self.threshold or (typical is not None and change > self.floor
                                              and change > self.relative * max(typical, 0.5))
            self.recent.append(change)
            if cut:
                self.recent.clear()
        self.previous = thumb
        return cut
