"""The threaded pipeline: capture -> inference (preprocess, model, smoothing, postprocess) -> render/write.

Three threads joined by bounded queues, one stop event, a timeout on every wait. A stage that raises
puts its exception on the error queue and sets the stop event; every other stage notices within
0.1 s, the main thread joins them, closes the recording and re-raises. The main thread owns the
display window (GUI toolkits want that) and the terminal table.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyp_live.engines.base import Backend
from polyp_live.engines.preprocess import preprocess
from polyp_live.realtime.config import PipelineConfig
from polyp_live.realtime.errors import OutputError, SourceError, StageError
from polyp_live.realtime.postprocess import Detection, to_frame
from polyp_live.realtime.recorder import MaskWriter, VideoRecorder, check_writable_dir
from polyp_live.realtime.render import HudInfo, draw_hud, overlay
from polyp_live.realtime.roi import RoiTracker
from polyp_live.realtime.smoothing import Hysteresis, SceneCutDetector, TemporalSmoother
from polyp_live.realtime.sources import Frame, FrameSource, SignalLost, reconnect
from polyp_live.realtime.stats import PipelineStats

WAIT = 0.1  # seconds: the longest any stage blocks before looking at the stop event


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


END = _Marker("END")        # the source is exhausted
RESET = _Marker("RESET")    # forget temporal state (after a signal loss)


@dataclass
class Result:
    """One processed frame on its way to the renderer."""

    frame: Frame
    detection: Detection
    prob: np.ndarray
    roi: tuple[int, int, int, int]
    inference_ms: float


class Controls:
    """What the keyboard can change while running (shared between the main thread and stages)."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self.overlay = True


def put_blocking(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put with back-pressure, giving up only when the pipeline stops."""
    while not stop.is_set():
        try:
            q.put(item, timeout=WAIT)
            return True
        except queue.Full:
            continue
    return False


def put_latest(q: queue.Queue, item, on_drop=None) -> None:
    """Keep only the newest item: replace whatever the consumer has not taken yet."""
    while True:
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            try:
                old = q.get_nowait()
                if on_drop and isinstance(old, Frame):
                    on_drop()
            except queue.Empty:
                pass


class Pipeline:
    """Runs one source through one backend until the source ends, the user stops, or a stage fails.

    Args:
        config: the pipeline configuration.
        source: an unopened :class:`FrameSource`; the pipeline opens and closes it.
        backend: a loaded backend; the caller owns it.
        stats: where timings go (a fresh collector by default).
    """

    def __init__(self, config: PipelineConfig, source: FrameSource, backend: Backend,
                 stats: PipelineStats | None = None):
        self.config = config
        self.source = source
        self.backend = backend
        self.stats = stats or PipelineStats()
        self.stop = threading.Event()
        self.done = threading.Event()
        self.errors: queue.Queue = queue.Queue()
        self.controls = Controls()
        self.status = ""  # e.g. "signal lost, reconnecting (3)"; shown on the HUD and the console
        self.frames_q: queue.Queue = queue.Queue(maxsize=1 if self._drops_frames() else config.queue_size)
        self.results_q: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self.display_q: queue.Queue = queue.Queue(maxsize=1)
        self.recorder: VideoRecorder | None = None
        self.masks: MaskWriter | None = None
        self._threads: list[threading.Thread] = []
        self._last_image: np.ndarray | None = None
        spec_threshold = backend.spec.threshold
        high = config.smoothing.threshold if config.smoothing.threshold is not None else spec_threshold
        low = config.smoothing.threshold_low if config.smoothing.threshold_low is not None else max(0.05, high - 0.15)
        self.smoother = TemporalSmoother(config.smoothing.mode, config.smoothing.strength)
        self.hysteresis = Hysteresis(high, low)
        self.scene_cut = SceneCutDetector(config.smoothing.scene_cut)
        self.roi = RoiTracker(config.roi)
        out = config.output
        # Output locations are checked before the first frame, so a bad path costs nothing.
        if out.record:
            check_writable_dir(Path(out.record).parent, "recording")
        if out.save_masks:
            self.masks = MaskWriter(out.save_masks)
        if out.stats_json:
            check_writable_dir(Path(out.stats_json).parent, "--stats-json")

    def _drops_frames(self) -> bool:
        return self.source.live or self.config.source.realtime

    # ---- stages -------------------------------------------------------------------------------

    def _guard(self, name: str, body) -> None:
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the main thread
            self.errors.put(exc if isinstance(exc, (SourceError, OutputError)) else StageError(name, exc))
            self.stop.set()

    def _capture(self) -> None:
        cfg = self.config.source
        fps = self.source.fps
        delivered, index = 0, 0
        t0 = time.perf_counter()
        while not self.stop.is_set():
            if self.controls.paused.is_set() and not self.source.live:
                self.stop.wait(WAIT)
                t0 += WAIT  # a paused --realtime file resumes at its pace, not with a burst
                continue
            if cfg.max_frames and delivered >= cfg.max_frames:
                break
            if cfg.realtime and not self.source.live:
                due = t0 + index / fps
                delay = due - time.perf_counter()
                if delay > 0 and self.stop.wait(delay):
                    break
            start = time.perf_counter()
            try:
                image = self.source.read()
            except SignalLost:
                self._handle_signal_loss()
                continue
            corrupt = self.source.corrupt_frames - self.stats.counters["corrupt"]
            if corrupt > 0:
                self.stats.count("corrupt", corrupt)
            if image is None:
                if cfg.loop and self.source.rewind():
                    continue
                break
            now = time.perf_counter()
            frame = Frame(index, image, now, now - start)
            index += 1
            delivered += 1
            self.stats.count("frames_in")
            self.stats.record("capture", now - start)
            if self._drops_frames():
                put_latest(self.frames_q, frame, lambda: self.stats.count("dropped"))
            elif not put_blocking(self.frames_q, frame, self.stop):
                return
        if self._drops_frames():
            put_latest(self.frames_q, END, lambda: self.stats.count("dropped"))
        else:
            put_blocking(self.frames_q, END, self.stop)

    def _handle_signal_loss(self) -> None:
        self.stats.count("signal_lost")
        timeout = self.config.source.reconnect_timeout

        def attempt(n: int, elapsed: float) -> None:
            self.status = f"signal lost: reconnecting ({n}, {elapsed:.0f}/{timeout:.0f} s)"

        self.status = "signal lost: reconnecting"
        put_latest(self.frames_q, RESET, lambda: self.stats.count("dropped"))
        if not reconnect(self.source, timeout, self.stop, attempt):
            if self.stop.is_set():
                return
            raise SourceError(f"{self.source.description} lost and not back within --reconnect-timeout "
                              f"{timeout:g} s; check the connection and restart")
        self.stats.count("reconnects")
        self.status = ""

    def _infer(self) -> None:
        cfg = self.config
        spec = self.backend.spec
        last_roi = None
        while not self.stop.is_set():
            try:
                item = self.frames_q.get(timeout=WAIT)
            except queue.Empty:
                continue
            if item is END:
                put_blocking(self.results_q, END, self.stop)
                return
            if item is RESET:
                self._reset_state()
                continue
            frame: Frame = item
            t = time.perf_counter()
            if self.scene_cut(frame.image):
                self._reset_state(keep_cut=True)
            roi = self.roi(frame.image)
            if roi != last_roi:
                self.smoother.reset()
                self.hysteresis.reset()
                last_roi = roi
            x, y, w, h = roi
            batch = preprocess(frame.image[y:y + h, x:x + w], spec)
            t_pre = time.perf_counter()
            prob = self.backend.infer(batch)
            t_inf = time.perf_counter()
            smooth = self.smoother(prob)
            mask = self.hysteresis(smooth)
            detection = to_frame(mask, roi, frame.image.shape, cfg.postprocess.min_area, cfg.postprocess.fill_holes)
            t_post = time.perf_counter()
            self.stats.record("preprocess", t_pre - t)
            self.stats.record("inference", t_inf - t_pre)
            self.stats.record("postprocess", t_post - t_inf)
            result = Result(frame, detection, smooth, roi, 1000 * (t_inf - t_pre))
            if not put_blocking(self.results_q, result, self.stop):
                return

    def _reset_state(self, keep_cut: bool = False) -> None:
        self.smoother.reset()
        self.hysteresis.reset()
        self.roi.reset()
        if not keep_cut:
            self.scene_cut.reset()

    def _render(self) -> None:
        cfg = self.config
        while True:
            # After a stop, frames already inferred are still rendered and recorded (at most
            # queue_size of them), so a failure upstream loses nothing that was processed.
            try:
                item = self.results_q.get(timeout=WAIT) if not self.stop.is_set() else self.results_q.get_nowait()
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if item is END:
                self.done.set()
                return
            result: Result = item
            t = time.perf_counter()
            image = result.frame.image  # drawn on in place: nothing reads the raw frame after this
            if self.controls.overlay:
                overlay(image, result.detection, result.prob, result.roi, cfg.render)
            if cfg.render.hud:
                hud = HudInfo(self.stats.rolling_fps(), self.stats.rolling_ms("end_to_end"),
                              result.inference_ms, self.backend.name, message=self.status)
                draw_hud(image, hud, result.detection.present)
            t_render = time.perf_counter()
            if cfg.output.record:
                if self.recorder is None:
                    self.recorder = VideoRecorder(cfg.output.record, self.source.fps, (image.shape[1], image.shape[0]))
                self.recorder.write(image)
            if self.masks is not None:
                self.masks.write(result.frame.index, result.detection.mask)
            t_write = time.perf_counter()
            self.stats.record("render", t_render - t)
            self.stats.record("write", t_write - t_render)
            self.stats.record("end_to_end", t_write - result.frame.arrival)
            self.stats.frame_out()
            if result.detection.present:
                self.stats.count("polyp_frames")
            if cfg.display:
                put_latest(self.display_q, image)

    # ---- orchestration ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the source and start the three stage threads."""
        self.source.open()
        self.stats.info.update({"source": self.source.description, "source_fps": self.source.fps,
                                "source_size": list(self.source.size), "backend": self.backend.name})
        for name, body in (("capture", self._capture), ("inference", self._infer), ("render", self._render)):
            thread = threading.Thread(target=self._guard, args=(name, body), name=f"polyp-live-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def poll(self, timeout: float = WAIT) -> bool:
        """Wait up to ``timeout`` for progress; False once the pipeline has finished or failed."""
        if not self.errors.empty():
            self.stop.set()
            return False
        if self.done.is_set() or self.stop.is_set():
            return False
        self.done.wait(timeout)
        return not (self.done.is_set() or not self.errors.empty())

    def close(self, join_timeout: float = 2.0) -> None:
        """Stop every stage, finalise the recording and release the source. Safe to call twice."""
        self.stop.set()
        deadline = time.monotonic() + join_timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        try:
            if self.recorder is not None:
                self.recorder.close()
        finally:
            self.source.close()
            self.stats.finished = self.stats.finished or time.perf_counter()
            if self.stats.counters["corrupt"]:
                self.stats.info["corrupt_frames_skipped"] = self.stats.counters["corrupt"]
            if self.config.output.stats_json:
                self.stats.write_json(self.config.output.stats_json)

    def raise_if_failed(self) -> None:
        """Re-raise the first stage error in the calling (main) thread."""
        try:
            raise self.errors.get_nowait()
        except queue.Empty:
            return

    def run(self, on_tick=None) -> PipelineStats:
        """Run headless to completion: start, poll, close, re-raise. ``on_tick`` runs on each poll."""
        try:
            self.start()
            while self.poll():
                if on_tick:
                    on_tick()
        finally:
            self.close()
        self.raise_if_failed()
        return self.stats
