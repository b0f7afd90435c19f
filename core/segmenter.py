"""The thread-free segmentation of one frame: the single object the live path, the video evaluation
and the inference server share.

``Segmenter.process(image_bgr)`` runs, in order: scene-cut check, field of view (ROI), the one shared
preprocessing, the backend, temporal smoothing, hysteresis, the presence decision and the mapping
back to frame coordinates. It keeps state between calls (field of view, smoothing, hysteresis, the
decision's persistence history). A new picture (a scene cut, a moved field of view, a new frame size)
resets the field of view and the smoothing; :meth:`Segmenter.reset` (signal loss, a new video)
forgets everything. A pipeline may split the work in two threads with :meth:`Segmenter.prepare`
(before the model) and :meth:`Segmenter.complete` (after it).

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

from polyp_live.core.backend import Backend
from polyp_live.core.errors import check_probability_map
from polyp_live.core.preprocess import preprocess, resize_for_model
from polyp_live.core.config import PipelineConfig, RoiConfig
from polyp_live.core.decision import Decision, DecisionConfig, PresenceDecision
from polyp_live.core.postprocess import Detection, to_frame
from polyp_live.core.roi import Roi, RoiTracker
from polyp_live.core.smoothing import Hysteresis, SceneCutDetector, TemporalSmoother
from polyp_live.core.spec import ModelSpec


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


@dataclass
class PreparedFrame:
    """A frame ready for the model (the output of :meth:`Segmenter.prepare`).

    Attributes:
        batch: the model input: float32 1x3xHxW, or the resized uint8 HxWx3 ROI for a backend that
            normalises itself (``wants_uint8``).
        roi: the field of view in frame pixels.
        frame_shape: (height, width) of the frame.
        reset: why the picture is new ("", "size", "scene cut", "roi").
        fresh_picture: smoothing and hysteresis must start afresh on this frame.
        preprocess_s: seconds :meth:`Segmenter.prepare` took.
    """

    batch: np.ndarray
    roi: Roi
    frame_shape: tuple[int, int]
    reset: str
    fresh_picture: bool
    preprocess_s: float


def hysteresis_thresholds(config: PipelineConfig, model_threshold: float) -> tuple[float, float]:
    """(high, low) from the config, defaulting to the model's threshold and ``high - 0.15``."""
    s = config.smoothing
    high = s.threshold if s.threshold is not None else model_threshold
    low = s.threshold_low if s.threshold_low is not None else max(0.05, high - 0.15)
    return high, low


def model_input(image_bgr: np.ndarray, roi: Roi, spec: ModelSpec, wants_uint8: bool = False) -> np.ndarray:
    """What the model is given for one frame: its field of view cut out and preprocessed.

    A backend that normalises itself (``wants_uint8``: a remote server) gets the resized uint8 crop
    instead, a quarter of the bytes. The one way every layer feeds the model.
    """
    x, y, w, h = roi
    crop = image_bgr[y:y + h, x:x + w]
    if wants_uint8:
        return np.ascontiguousarray(resize_for_model(crop, spec))
    return preprocess(crop, spec)


def prepare_still(image_bgr: np.ndarray, spec: ModelSpec, roi: RoiConfig = RoiConfig()) -> tuple[np.ndarray, Roi]:
    """(model input, field of view) of one still, as the live path prepares a new picture.

    For consumers without a backend at hand (calibration); :meth:`Segmenter.prepare` does the same
    for a frame after a reset.
    """
    view = RoiTracker(roi)(image_bgr)
    return model_input(image_bgr, view, spec), view


class Segmenter:
    """Segments a stream of BGR frames with one backend; not thread-safe (one caller at a time).

    Args:
        backend: a loaded :class:`~polyp_live.core.backend.Backend`; the caller owns and closes it.
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
        # A full DecisionConfig is used as given; a dict holds option overrides of the sidecar's point.
        d = cfg.decision
        self.decision_config = d if isinstance(d, DecisionConfig) else DecisionConfig.from_spec(backend.spec, **(d or {}))
        self.decision = PresenceDecision(self.decision_config)
        self._wants_uint8 = backend.wants_uint8
        self._size: tuple[int, int] | None = None
        self._last_roi: Roi | None = None
        self._output_checked = False

    def reset(self) -> None:
        """Forget all temporal state and the field of view (signal loss, a new video or patient)."""
        self.reset_prepare()
        self.reset_complete()

    def reset_prepare(self) -> None:
        """:meth:`reset`'s half for the thread that calls :meth:`prepare`."""
        self._reset_view()

    def reset_complete(self) -> None:
        """:meth:`reset`'s half for the thread that calls :meth:`complete`."""
        self._reset_temporal()
        self.decision.reset()

    # A new picture (scene cut, moved field of view, new frame size) resets the view and the
    # smoothing, but keeps the decision's persistence history: it counts frames that held a
    # candidate region, which stays meaningful across such changes; resetting it there would hide a
    # polyp for K-1 frames after every cut, and on a folder of stills (each a cut) would hide them all.

    def _reset_view(self) -> None:
        """The :meth:`prepare` side: field of view, scene-cut reference, frame size."""
        self.roi.reset()
        self.scene_cut.reset()
        self._last_roi = None
        self._size = None

    def _reset_temporal(self) -> None:
        """The :meth:`complete` side: smoothing and hysteresis."""
        self.smoother.reset()
        self.hysteresis.reset()

    def set_smoothing(self, mode: str) -> None:
        """Switch the temporal smoothing mode (a user control); call from the thread that calls
        :meth:`complete`. The new smoother starts from the next frame, with no history."""
        if mode != self.smoother.mode:
            self.smoother = TemporalSmoother(mode, self.config.smoothing.strength)

    def process(self, image_bgr: np.ndarray) -> SegmentationResult:
        """Segment one BGR uint8 frame; the image is only read, never modified.

        The same as ``complete(prepare(image), backend.infer(prepared.batch))``.

        Raises:
            ValueError: the image is not BGR uint8, or a fixed ROI lies outside it.
        """
        prepared = self.prepare(image_bgr)
        raw = self.backend.infer(prepared.batch)
        return self.complete(prepared, raw, self.backend.last_infer_s)

    def prepare(self, image_bgr: np.ndarray) -> PreparedFrame:
        """The steps before the model: size and scene-cut checks, field of view, preprocessing.

        :meth:`prepare` and :meth:`complete` may run in two threads (a pipeline stage each) as long
        as each is called in frame order: they share no state, and resets travel in the
        :class:`PreparedFrame`.
        """
        t0 = time.perf_counter()
        reason, fresh = "", False
        size = image_bgr.shape[:2]
        if size != self._size:
            # A new frame size means a new field of view and a new picture: nothing carries over.
            if self._size is not None:
                reason = "size"
            self._reset_view()
            self._size, fresh = size, True
        if self.scene_cut(image_bgr):
            # A cut may bring another field of view as well: re-detect it.
            self.roi.reset()
            reason, fresh = reason or "scene cut", True
        roi = self.roi(image_bgr)
        if roi != self._last_roi:
            if self._last_roi is not None:
                reason, fresh = reason or "roi", True
            self._last_roi = roi
        batch = model_input(image_bgr, roi, self.backend.spec, self._wants_uint8)
        return PreparedFrame(batch, roi, size, reason, fresh, time.perf_counter() - t0)

    def _drawn_min_area(self, roi: Roi) -> int:
        """One area rule: ``--min-area`` (frame pixels) never erases a region the decision reported.

        The decision keeps regions of at least ``min_area_fraction`` of the model input, i.e. of the
        field of view; on a small frame 300 pixels is more than that, and the HUD said POLYP with
        nothing outlined. So the drawn minimum is the smaller of the two.
        """
        _, _, w, h = roi
        by_decision = int(self.decision_config.min_area_fraction * w * h)
        return min(self.config.postprocess.min_area, by_decision) if by_decision > 0 else \
            self.config.postprocess.min_area

    def complete(self, prepared: PreparedFrame, raw_prob: np.ndarray, inference_s: float = 0.0) -> SegmentationResult:
        """The steps after the model: smoothing, hysteresis, the presence decision, frame coordinates."""
        t0 = time.perf_counter()
        if not self._output_checked:
            # Once: a model that gives NaN or non-probabilities would otherwise run "fine" and see nothing.
            check_probability_map(raw_prob, str(self.backend.model_path or self.backend.name))
            self._output_checked = True
        if prepared.fresh_picture:
            self._reset_temporal()
        prob = self.smoother(raw_prob)
        mask = self.hysteresis(prob)
        # Regions come from the smoothed map (steady outlines); their scores from this frame's own map:
        # smoothing must not pull a polyp's peak under the score threshold, nor keep a region alive
        # on memory alone. Steadiness of the alert itself is the persistence rule's job.
        decision = self.decision(raw_prob, mask)
        pp = self.config.postprocess
        detection = to_frame(decision.mask, prepared.roi, prepared.frame_shape,
                             self._drawn_min_area(prepared.roi), pp.fill_holes, present=decision.present)
        post = time.perf_counter() - t0
        timings = {"preprocess": prepared.preprocess_s, "inference": inference_s, "postprocess": post,
                   "total": prepared.preprocess_s + inference_s + post}
        return SegmentationResult(prob, raw_prob, decision, detection, prepared.roi, prepared.reset, timings)
