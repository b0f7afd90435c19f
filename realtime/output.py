"""The output stage: the newest mask drawn on each frame, the HUD, the recording and the mask files.

In live mode (a live source or ``--realtime``) a frame is drawn with the newest annotation the model
has produced, which was computed on an earlier frame; an annotation older than
``render.max_annotation_age_ms`` is not drawn and the HUD says the annotation is stale. In file mode
each frame carries its own annotation (exact masks).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path


from polyp_live.core.backend import Backend
from polyp_live.core.config import PipelineConfig
from polyp_live.realtime.motion import Thumb, estimate_shift, shift_detection
from polyp_live.realtime.recorder import MaskWriter, VideoRecorder
from polyp_live.realtime.render import HudInfo, draw_hud, overlay
from polyp_live.core.segmenter import SegmentationResult
from polyp_live.realtime.sources import Frame
from polyp_live.realtime.stats import PipelineStats
from polyp_live.realtime.view import LiveView


@dataclass(frozen=True)
class Annotation:
    """A segmentation result and the frame it was computed on."""

    result: SegmentationResult
    frame_index: int
    source_index: int
    name: str | None
    arrival: float          # capture time of the annotated frame (perf_counter)
    thumb: Thumb | None = None  # the annotated frame's field of view, small and grey (--motion-shift)

    @classmethod
    def of(cls, frame: Frame, result: SegmentationResult, motion: bool = False) -> "Annotation":
        thumb = Thumb(frame.image, result.roi) if motion else None
        return cls(result, frame.index, frame.source_index, frame.name, frame.arrival, thumb)


class AnnotationSlot:
    """The newest annotation, shared between the inference thread (writer) and the output stage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._annotation: Annotation | None = None
        self._state = "waiting"   # "" (an annotation is there), "waiting", "lost"

    def set(self, annotation: Annotation) -> None:
        with self._lock:
            self._annotation, self._state = annotation, ""

    def clear(self, state: str = "waiting") -> None:
        """Forget the annotation (signal loss) or mark inference as unreachable (``state="lost"``)."""
        with self._lock:
            self._annotation, self._state = None, state

    def get(self) -> tuple[Annotation | None, str]:
        with self._lock:
            return self._annotation, self._state


@dataclass(frozen=True)
class ModelInfo:
    """What the HUD and ``--stats-json`` say about the model that runs."""

    model: str
    precision: str
    backend: str


def describe_backend(backend: Backend) -> ModelInfo:
    """Model name, precision and runtime of a loaded backend, from what it declares."""
    name = Path(backend.model_path).stem if backend.model_path else backend.model_name
    if name.endswith(".int8"):
        name = name[:-5]
    if not name:  # an engine or a server: describe the network from its sidecar
        info = backend.spec.info if isinstance(backend.spec.info, dict) else {}
        name = " ".join(str(info[k]) for k in ("architecture", "encoder") if k in info)
    return ModelInfo(name, backend.precision, backend.name)


class OutputStage:
    """Renders and writes frames; owned by one thread (the render thread).

    Args:
        config: the pipeline configuration (render and output sections).
        stats: where timings and counters go.
        view: where rendered pictures go (the window reads them).
        model: what the HUD says about the model.
        fps: the source's frame rate (the recording's timestamp unit).
        live: frames are shown with the newest annotation and never wait (see the module doc).
        status: returns the current state line (signal lost, server reconnecting) for the HUD.
    """

    def __init__(self, config: PipelineConfig, stats: PipelineStats, view: LiveView, model: ModelInfo,
                 fps: float, live: bool, status=lambda: "", appearance=lambda: ""):
        self.config = config
        self.stats = stats
        self.view = view
        self.model = model
        self.fps = fps
        self.live = live
        self.status = status
        self.appearance = appearance  # the current polyp appearance for the HUD ("#3 2.4 s", or "")
        self.recorder: VideoRecorder | None = None
        self.masks = MaskWriter(config.output.save_masks) if config.output.save_masks else None
        self._t0: float | None = None
        self._last_roi = None
        self._inference_ms = 0.0

    def _timestamp(self, frame: Frame) -> float:
        """Seconds since the recording's first frame: the source's own clock for files, capture time
        for live feeds, so the recording lasts as long as what it recorded."""
        t = frame.arrival if self.view.live_source else frame.source_index / self.fps
        if self._t0 is None:
            self._t0 = t
        return t - self._t0

    def emit(self, frame: Frame, annotation: Annotation | None, state: str = "") -> None:
        """Draw ``annotation`` (if fresh enough) and the HUD on ``frame``; display and record it.

        Args:
            frame: the captured frame.
            annotation: the mask to draw: the frame's own (file mode) or the newest (live mode).
            state: why there is no annotation: "waiting" or "lost".
        """
        cfg = self.config
        t = time.perf_counter()
        # Live: the inference thread may still be reading this frame, so draw on a copy.
        canvas = frame.image.copy() if self.live else frame.image
        drawn, stale_ms = annotation, None
        if annotation is not None:
            self._last_roi = annotation.result.roi
            self._inference_ms = 1000 * annotation.result.timings.get("inference", 0.0)
            age_ms = 1000 * (frame.arrival - annotation.arrival)
            if age_ms > cfg.render.max_annotation_age_ms:
                drawn, state, stale_ms = None, "stale", age_ms
                self.stats.count("stale")
        present = drawn is not None and drawn.result.present
        if drawn is not None and self.view.overlay:
            r = drawn.result
            detection = r.detection
            if drawn.thumb is not None and drawn.frame_index != frame.index and detection.present:
                dx, dy = estimate_shift(drawn.thumb, Thumb(frame.image, drawn.thumb.roi))
                detection = shift_detection(detection, dx, dy)
            style = cfg.render if self.view.style == cfg.render.style else replace(cfg.render, style=self.view.style)
            overlay(canvas, detection, r.prob, r.roi, style)
        if cfg.render.hud:
            hud = HudInfo(self.stats.rolling_fps(), self.stats.rolling_ms("video_delay"),
                          self._annotation_delay_ms(t, drawn), self._inference_ms,
                          self.model.model, self.model.precision, self.model.backend, state, self.status(),
                          stale_ms, self.appearance() if present else "")
            draw_hud(canvas, hud, present, self._last_roi)
        t_render = time.perf_counter()
        if cfg.output.record:
            if self.recorder is None:
                self.recorder = self._open_recorder(canvas.shape[1], canvas.shape[0])
            if not self.recorder.submit(canvas, self._timestamp(frame), block=not self.live):
                self.stats.count("record_dropped")
        if not self.live and annotation is not None:
            self.write_mask(annotation)
        t_write = time.perf_counter()
        self.stats.record("render", t_render - t)
        self.stats.record("write", t_write - t_render)
        self.stats.record("video_delay", t_write - frame.arrival)
        if drawn is not None:
            self.stats.record("annotation_delay", t_write - drawn.arrival)
            self.stats.count("annotated")
        self.stats.frame_out()
        if present:
            self.stats.count("polyp_frames")
        if cfg.display or cfg.web:
            self.view.publish(canvas, present, self.appearance() if present else "", frame.source_index)

    def _open_recorder(self, width: int, height: int) -> VideoRecorder:
        """The recording, opened at the first rendered frame's size; a web view that watches shares its packets."""
        out, cfg = self.config.output, self.config
        shared = self.view.recording_tap is not None
        return VideoRecorder(out.record, self.fps, (width, height), out.record_codec,
                             out.shared_record_preset if shared else out.record_preset,
                             out.record_crf, out.record_gop_s, out.record_queue, cfg.performance.encoder_threads,
                             on_encoded=lambda s: self.stats.record("encode", s),
                             clock=Fraction(1, 90000) if self.view.live_source else None,
                             packet_sink=self.view.recording_tap)

    def _annotation_delay_ms(self, t: float, drawn: Annotation | None) -> float | None:
        """The HUD's annotation delay: a rolling mean like its video delay (this frame's own until
        there is one), so that in file mode, where both are the same frames', the two agree."""
        if drawn is None:
            return None
        rolling = self.stats.rolling_ms("annotation_delay")
        return rolling if rolling > 0 else 1000 * (t - drawn.arrival)

    def write_mask(self, annotation: Annotation) -> None:
        """Write the annotation's frame-size mask, named after its source frame."""
        if self.masks is not None:
            self.masks.write(annotation.source_index, annotation.result.detection.mask, annotation.name)
            self.stats.count("masks")

    def close(self) -> None:
        """Finalise the recording (raises nothing; a failure is left in ``recorder.error``)."""
        if self.recorder is not None:
            self.recorder.close()
            self.stats.add_cpu("encode", self.recorder.cpu_s)
