"""The thread-free segmentation of one frame: the single object the live path, the video evaluation
and the inference server share.

``Segmenter.process(image_bgr)`` runs, in order: scene-cut check, field of view (ROI), the one shared
preprocessing, the backend, temporal smoothing, hysteresis, the presence decision and the mapping
back to frame coordinates. It keeps the temporal state (smoothing, hysteresis, decision history,
ROI) between calls and forgets it on a scene cut, when the field of view moves, when the frame size
changes, and on :meth:`Segmenter.reset` (signal loss, a new video).

Example:
    >>> seg = Segmenter(backend, PipelineConfig(roi=RoiConfig(mode="full")))
    >>> for image in frames:
    ...     result = seg.process(image)
    ...     result.detection.mask      # uint8 0/255, frame size: only the regions the decision reports
    ...     result.present             # the frame-level alert
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from polyp_live.engines.base import Backend
from polyp_live.engines.preprocess import preprocess, resize_for_model
from polyp_live.realtime.config import PipelineConfig
from polyp_live.realtime.decision import Decision, DecisionConfig, PresenceDecision
from polyp_live.realtime.postprocess import Detection, to_frame
from polyp_live.realtime.roi import Roi, RoiTracker
from polyp_live.realtime.smoothing import Hysteresis, SceneCutDetector, TemporalSmoother


@dataclass
class SegmentationResult:
    """What :meth:`Segmenter.process` found on one frame.

    Attributes:
        prob: smoothed probability map, float32 HxW at model resolution (inside the ROI).
        raw_prob: the backend's probability map before smoothing.
        decision: the presence decision (model resolution, only the regions it reports).
        detection: the reported regions in frame coordinates: ``mask`` uint8 0/255 of the frame's
            size, contours, boxes, areas and ``present``.
        roi: the field of view (x, y, w, h) the model saw, in frame pixels.
        reset: why the temporal state was reset before this frame ("", "size", "scene cut", "roi").
        timings: seconds per step: ``preprocess``, ``inference``, ``postprocess`` (smoothing,
            hysteresis, decision, mapping to the frame) and ``total``.
    """

    prob: np.ndarray
    raw_prob: np.ndarray
    decision: Decision
    detection: Detection
    roi: Roi
    reset: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def present(self) -> bool:
        """The frame-level "polyp present" alert (follows the presence decision)."""
        return self.detection.present

    @property
    def mask(self) -> np.ndarray:
        """The frame-size uint8 0/255 mask of the reported regions."""
        return self.detection.mask


def hysteresis_thresholds(config: PipelineConfig, model_threshold: float) -> tuple[float, float]:
    """(high, low) from the config, defaulting to the model's threshold and ``high - 0.15``."""
    s = config.smoothing
    high = s.threshold if s.threshold is not None else model_threshold
    low = s.threshold_low if s.threshold_low is not None else max(0.05, high - 0.15)
    return high, low


class Segmenter:
    """Segments a stream of BGR frames with one backend; not thread-safe (one caller at a time).

    Args:
        backend: a loaded :class:`~polyp_live.engines.base.Backend`; the caller owns and closes it.
        config: the ``roi``, ``smoothing``, ``postprocess`` and ``decision`` sections are used; the
            decision defaults to the operating point stored in the model's sidecar.
    """

    def __init__(self, backend: Backend, config: PipelineConfig | None = None):
        self.backend = backend
        self.config = config or PipelineConfig()
        cfg = self.config
        high, low = hysteresis_thresholds(cfg, backend.spec.threshold)
        self.smoother = TemporalSmoother(cfg.smoothing.mode, cfg.smoothing.strength)
        self.hysteresis = Hysteresis(high, low)
        self.scene_cut = SceneCutDetector(cfg.smoothing.scene_cut)
        self.roi = RoiTracker(cfg.roi)
        self.decision_config = cfg.decision or DecisionConfig.from_spec(backend.spec)
        self.decision = PresenceDecision(self.decision_config)
        self._wants_uint8 = bool(getattr(backend, "wants_uint8", False))
        self._size: tuple[int, int] | None = None
        self._last_roi: Roi | None = None

    def reset(self) -> None:
        """Forget all temporal state and the field of view (signal loss, a new video or patient)."""
        self._reset_picture()
        self.decision.reset()

    def _reset_picture(self) -> None:
        """Forget what belongs to the old picture; the decision's persistence history is kept.

        The history counts frames that held a candidate region, which stays meaningful across a
        scene cut, a moved field of view or a new frame size: resetting it there would hide a polyp
        for K-1 frames after every cut, and on a folder of stills (each a cut) would hide them all.
        """
        self._reset_temporal()
        self.roi.reset()
        self.scene_cut.reset()
        self._last_roi = None

    def _reset_temporal(self) -> None:
        self.smoother.reset()
        self.hysteresis.reset()

    def process(self, image_bgr: np.ndarray) -> SegmentationResult:
        """Segment one BGR uint8 frame; the image is only read, never modified.

        Raises:
            ValueError: the image is not BGR uint8, or a fixed ROI lies outside it.
        """
        t0 = time.perf_counter()
        reason = ""
        size = image_bgr.shape[:2]
        if size != self._size:
            # A new frame size means a new field of view and a new picture: nothing carries over.
            if self._size is not None:
                reason = "size"
            self._reset_picture()
            self._size = size
        if self.scene_cut(image_bgr):
            # A cut may bring another field of view as well: re-detect it.
            self._reset_temporal()
            self.roi.reset()
            reason = reason or "scene cut"
        roi = self.roi(image_bgr)
        if roi != self._last_roi:
            if self._last_roi is not None:
                self._reset_temporal()
                reason = reason or "roi"
            self._last_roi = roi
        x, y, w, h = roi
        crop = image_bgr[y:y + h, x:x + w]
        if self._wants_uint8:
            # A remote backend normalises server-side: send the resized uint8 ROI (a quarter the bytes).
            batch = resize_for_model(crop, self.backend.spec)
        else:
            batch = preprocess(crop, self.backend.spec)
        t1 = time.perf_counter()
        raw = self.backend.infer(batch)
        t2 = time.perf_counter()
        prob = self.smoother(raw)
        mask = self.hysteresis(prob)
        decision = self.decision(prob, mask)
        pp = self.config.postprocess
        detection = to_frame(decision.mask, roi, image_bgr.shape, pp.min_area, pp.fill_holes, present=decision.present)
        t3 = time.perf_counter()
        timings = {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2, "total": t3 - t0}
        return SegmentationResult(prob, raw, decision, detection, roi, reason, timings)
