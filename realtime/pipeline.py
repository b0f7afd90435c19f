"""Orchestration: the threads, their queues, one stop event and the error relay.

Three stage threads (plus the recorder's encoder thread):

- **capture** reads the source (paced for ``--realtime``) and hands every frame on;
- **inference** runs the :class:`~polyp_live.core.segmenter.Segmenter`;
- **render** is the :class:`~polyp_live.realtime.output.OutputStage`: overlay, HUD, recorder, masks.

*Live mode* (a live source, or a file with ``--realtime``): the video never waits for the model.
Every captured frame goes straight to the render thread and is shown and recorded with the newest
annotation; inference takes the newest frame whenever it is free (older ones are skipped, not
queued) and runs the whole Segmenter on it. *File mode*: frames pass capture -> inference -> render
in order with back-pressure, so every frame gets its own exact mask; the Segmenter's work is spread
so the inference thread runs the model alone (capture also prepares the frame, render completes the
mask), which keeps the slowest stage fed.

The two modes are two small classes over the shared stages, :class:`LivePipeline` and
:class:`FilePipeline`; each declares its stage graph in one place, :meth:`Pipeline.compose` (as
HoloHub's operators do), and ``Pipeline(config, source, backend)`` gives the right one.

Every wait has a timeout (0.1 s). A stage that raises puts its exception on the error queue and sets
the stop event; the others notice within 0.1 s, the main thread joins them, finalises the recording
and re-raises. The main thread owns the window and the terminal table.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable
from pathlib import Path

import cv2

from polyp_live.core.backend import Backend
from polyp_live.core.errors import InferenceUnavailable, ModelOutputError
from polyp_live.realtime.appearances import AppearanceTracker, regions_of, tracker_summary
from polyp_live.core.config import PipelineConfig
from polyp_live.core.errors import InferenceLost, OutputError, SourceError, StageError
from polyp_live.realtime.output import Annotation, AnnotationSlot, ModelInfo, OutputStage, describe_backend
from polyp_live.realtime.queues import END, RESET, WAIT, NewestQueue, put_blocking
from polyp_live.realtime.report import write_report
from polyp_live.realtime.recorder import check_masks_folder, check_record_path, check_writable_dir
from polyp_live.core.segmenter import Segmenter
from polyp_live.realtime.sources import Frame, FrameSource, SignalLost, reconnect
from polyp_live.realtime.stats import PipelineStats
from polyp_live.realtime.view import LiveView
from polyp_live import __version__

LIVE_VIDEO_FRAMES = 8  # frames the live video path may hold before it drops the oldest (~0.27 s at 30 FPS)


@dataclass(frozen=True)
class Stage:
    """One thread of the stage graph: its name, its body, and what it reads and writes (for the reader)."""

    name: str
    body: Callable[[], None]
    reads: str
    writes: str


class Pipeline:
    """Runs one source through one backend until the source ends, the user stops, or a stage fails.

    ``Pipeline(...)`` gives a :class:`LivePipeline` for a live source or a ``--realtime`` file (*live
    mode*: the video never waits for the model) and a :class:`FilePipeline` otherwise (every frame its
    own mask), as ``pathlib.Path(...)`` gives a ``PosixPath``. This class holds what both share: the
    capture stage, the render loop, signal loss, start, poll, close and the error relay.

    Args:
        config: the pipeline configuration.
        source: an unopened :class:`FrameSource`; the pipeline opens and closes it.
        backend: a loaded backend; the caller owns it.
        stats: where timings go (a fresh collector by default).
        model: what the HUD and stats say about the model (by default read from the backend).
    """

    live = False   # live mode: the video path never waits for the model

    def __new__(cls, config: PipelineConfig, source: FrameSource, *args, **kwargs):
        if cls is Pipeline:
            cls = LivePipeline if (source.live or config.source.realtime) else FilePipeline
        return super().__new__(cls)

    def __init__(self, config: PipelineConfig, source: FrameSource, backend: Backend,
                 stats: PipelineStats | None = None, model: ModelInfo | None = None):
        self.config = config
        self.source = source
        self.backend = backend
        self.stats = stats or PipelineStats()
        self.model = model or describe_backend(backend)
        self.stop = threading.Event()
        self.done = threading.Event()
        self.errors: queue.Queue = queue.Queue()
        self.view = LiveView(source.live, self.stop, config.render.style, config.smoothing.mode)
        self.segmenter = Segmenter(backend, config)
        # Fed by the one stage that has each frame's result in order: inference (live) or render (file).
        self.tracker = AppearanceTracker(config.appearance_gap_s)
        self._threads: list[threading.Thread] = []
        out = config.output
        # Output locations are checked before the first frame, so a bad path costs nothing.
        if out.record:
            check_record_path(out.record)
        if out.stats_json:
            check_writable_dir(Path(out.stats_json).parent, "--stats-json")
        if out.save_masks:
            check_masks_folder(out.save_masks)
        self.output: OutputStage | None = None

    def compose(self) -> list[Stage]:
        """The stage graph: one thread per stage, started in this order."""
        raise NotImplementedError

    @property
    def recorder(self):
        """The recorder once the first frame was rendered (None before, or without --record)."""
        return self.output.recorder if self.output is not None else None

    def appearance_label(self) -> str:
        """The current appearance for the HUD: its number and age at the newest tracked frame."""
        current = self.tracker.current()
        if current is None or self.tracker.last_time is None:
            return ""
        ident, first = current
        return f"#{ident} {max(0.0, self.tracker.last_time - first):.1f} s"

    def status(self) -> str:
        """The state line for the HUD and console: signal loss, or an inference server reconnecting."""
        return self.view.signal or self.backend.status

    # ---- stages -------------------------------------------------------------------------------

    def _guard(self, name: str, body) -> None:
        cpu0 = time.thread_time()
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the main thread
            # Errors that already name their input and fix (a source, an output, a broken model) pass as they are.
            self.errors.put(exc if isinstance(exc, (SourceError, OutputError, ModelOutputError))
                            else StageError(name, exc))
            self.stop.set()
        finally:
            self.stats.add_cpu(name, time.thread_time() - cpu0)

    def _send(self, frame: Frame) -> bool:
        """Hand a captured frame to the next stages; False when the pipeline stopped meanwhile."""
        raise NotImplementedError

    def _send_marker(self, marker) -> None:
        """Hand END or RESET on; markers are never dropped."""
        raise NotImplementedError

    def _capture(self) -> None:
        cfg = self.config.source
        fps = self.source.fps
        delivered, index, replaced_seen = 0, 0, 0
        paced = cfg.realtime and not self.source.live
        t0 = time.perf_counter()
        try:
            while not self.stop.is_set():
                if self.view.paused.is_set() and not self.source.live:
                    self.stop.wait(WAIT)
                    t0 += WAIT  # a paused --realtime file resumes at its pace, not with a burst
                    continue
                if cfg.max_frames and delivered >= cfg.max_frames:
                    break
                if paced:
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
                replaced = self.source.replaced_frames - replaced_seen
                if replaced > 0:
                    # Captured by the device, replaced by a newer frame before we read: never shown.
                    replaced_seen += replaced
                    self.stats.count("frames_in", replaced)
                    self.stats.count("dropped", replaced)
                if image is None:
                    if cfg.loop and self.source.rewind():
                        continue
                    break
                now = time.perf_counter()
                # A paced file's frame exists from its due time, as a live feed's would: reading and
                # decoding it, and any lag behind the schedule, count in its video delay.
                arrival = min(now, due) if paced else now
                frame = Frame(index, image, arrival, now - start, source_index=self.source.last_index,
                              name=self.source.last_name)
                index += 1
                delivered += 1
                self.stats.count("frames_in")
                self.stats.record("capture", now - start)
                if not self._send(frame):
                    return
        finally:
            # END always goes out (never dropped), so the other stages finish what they hold.
            self._send_marker(END)

    def _handle_signal_loss(self) -> None:
        self.stats.count("signal_lost")
        timeout = self.config.source.reconnect_timeout

        def attempt(n: int, elapsed: float) -> None:
            self.view.set_signal(f"signal lost: reconnecting ({n}, {elapsed:.0f}/{timeout:.0f} s)")

        self.view.set_signal("signal lost: reconnecting")
        self._on_signal_lost()
        self._send_marker(RESET)
        if not reconnect(self.source, timeout, self.stop, attempt):
            if self.stop.is_set():
                return
            raise SourceError(f"{self.source.description} lost and not back within --reconnect-timeout "
                              f"{timeout:g} s; check the connection and restart")
        self.stats.count("reconnects")
        self.view.set_signal("")

    def _on_signal_lost(self) -> None:
        """What the capture thread resets when the source is lost (before RESET goes out)."""

    def _prepare(self, frame: Frame):
        prepared = self.segmenter.prepare(frame.image)
        self.stats.record("preprocess", prepared.preprocess_s)
        return prepared

    def _track(self, frame: Frame, result) -> None:
        """Feed the appearance tracker: a live frame at its capture time, a file's at its place in the file."""
        when = frame.arrival - self.stats.started if self.source.live else frame.source_index / (self.source.fps or 30.0)
        self.tracker.update(frame.index, when, regions_of(result), result.decision.candidate, result.decision.score,
                            frame.image, result.reset)

    def _render(self) -> None:
        # After a stop, frames already captured (live) or inferred (file) are still rendered and
        # recorded (a few at most), so a failure upstream loses nothing that was processed.
        source = self._render_input()
        while True:
            try:
                item = source.get(timeout=WAIT) if not self.stop.is_set() else source.get_nowait()
            except queue.Empty:
                if self.stop.is_set():
                    break
                continue
            if item is END:
                self._render_end()
                self.done.set()
                break
            if item is RESET:
                self._render_reset()
                continue
            self._render_item(item)
        self._render_finished()

    def _render_input(self) -> queue.Queue:
        raise NotImplementedError

    def _render_item(self, item) -> None:
        raise NotImplementedError

    def _render_end(self) -> None:
        """The source ended: what must still happen before the run is done."""

    def _render_reset(self) -> None:
        """A signal loss reached the render thread."""

    def _render_finished(self) -> None:
        """The render loop ended (source end or stop)."""

    # ---- orchestration ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the source and start the three stage threads."""
        perf = self.config.performance
        if perf.opencv_threads > 0:
            cv2.setNumThreads(perf.opencv_threads)  # process-wide: our threads are the parallelism
        self.source.open()
        self.output = OutputStage(self.config, self.stats, self.view, self.model, self.source.fps, self.live,
                                  self.status, self.appearance_label)
        self.stats.info.update({"version": __version__, "source": self.source.description, "source_fps": self.source.fps,
                                "source_size": list(self.source.size), "backend": self.model.backend,
                                "model": self.model.model, "precision": self.model.precision,
                                "mode": "live" if self.live else "file",
                                "max_annotation_age_ms": self.config.render.max_annotation_age_ms,
                                "decision": asdict(self.segmenter.decision_config)})
        for stage in self.compose():
            thread = threading.Thread(target=self._guard, args=(stage.name, stage.body),
                                      name=f"polyp-live-{stage.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def poll(self, timeout: float = WAIT) -> bool:
        """Wait up to ``timeout`` for progress; False once the pipeline has finished or failed."""
        recorder = self.recorder
        if recorder is not None and recorder.error is not None and self.errors.empty():
            self.errors.put(recorder.error)  # the encoder failed while nothing was being submitted
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
            if self.output is not None:
                self.output.close()
        finally:
            self.source.close()
            self.stats.finished = self.stats.finished or time.perf_counter()
            if self.stats.counters["corrupt"]:
                self.stats.info["corrupt_frames_skipped"] = self.stats.counters["corrupt"]
            recorder = self.recorder
            if recorder is not None:
                self.stats.info["recording"] = {"path": str(recorder.path), "frames": recorder.frames,
                                                "fps": recorder.fps, "finalised": recorder.finalised}
            self.stats.extra["appearances"] = tracker_summary(self.tracker)
            if self.config.output.report:
                try:
                    write_report(self.stats.summary(), self.config.output.report)
                except OSError as exc:
                    self.errors.put(OutputError(f"cannot write --report {self.config.output.report} "
                                                f"({exc.strerror}); choose another path"))
            if self.config.output.stats_json:
                try:
                    self.stats.write_json(self.config.output.stats_json)
                except OSError as exc:
                    self.errors.put(OutputError(f"cannot write --stats-json {self.config.output.stats_json} "
                                                f"({exc.strerror}); choose another path"))

    def raise_if_failed(self) -> None:
        """Re-raise the first stage error in the calling (main) thread.

        A failed recording's own error wins: after :meth:`close` it names the frames that decode.
        """
        recorder = self.recorder
        if recorder is not None and recorder.error is not None:
            raise recorder.error
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


class LivePipeline(Pipeline):
    """Live mode: every frame is shown and recorded at once with the newest mask; the model takes the
    newest frame whenever it is free (older ones are skipped, not queued) and runs the whole Segmenter."""

    live = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.video_q = NewestQueue(LIVE_VIDEO_FRAMES, lambda _f: self.stats.count("dropped"))
        self.infer_q = NewestQueue(1, lambda _f: self.stats.count("not_inferred"))
        self.latest = AnnotationSlot()
        self.masks_q: queue.Queue = queue.Queue(maxsize=16)
        self._inference_done = threading.Event()

    def compose(self) -> list[Stage]:
        return [Stage("capture", self._capture, "source", "video_q (newest 8) and infer_q (newest 1)"),
                Stage("inference", self._inference, "infer_q", "latest (the newest annotation), masks_q"),
                Stage("render", self._render, "video_q + latest", "window, web view, recorder; masks from masks_q")]

    def _send(self, frame: Frame) -> bool:
        self.video_q.put(frame)
        self.infer_q.put(frame)
        return True

    def _send_marker(self, marker) -> None:
        self.video_q.put(marker)
        self.infer_q.put(marker)

    def _segment(self, frame: Frame) -> Annotation | None:
        """Run the segmenter on one frame and record its timings; None when inference is unreachable."""
        self.segmenter.set_smoothing(self.view.smoothing)
        try:
            result = self.segmenter.process(frame.image)
        except InferenceUnavailable:
            # A lost inference server: video keeps flowing without annotation; the backend reconnects.
            self.stats.count("annotations_lost")
            return None
        for step in ("preprocess", "inference", "postprocess"):
            self.stats.record(step, result.timings[step])
        self.stats.count("inferred")
        return Annotation.of(frame, result, motion=self.config.render.motion_shift)

    def _inference(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.infer_q.get(WAIT)
                except queue.Empty:
                    continue
                if item is END:
                    return
                if item is RESET:
                    self.segmenter.reset()
                    self.latest.clear()
                    self.tracker.end_all("signal lost")
                    continue
                annotation = self._segment(item)
                if annotation is not None:
                    self._track(item, annotation.result)
                if annotation is None:
                    self.latest.clear("lost")
                    self.stop.wait(WAIT)  # do not hammer an unreachable server; the newest frame waits
                    continue
                self.latest.set(annotation)
                if self.config.output.save_masks and not put_blocking(self.masks_q, annotation, self.stop):
                    return
        finally:
            self._inference_done.set()

    def _drain_masks(self) -> None:
        while True:
            try:
                self.output.write_mask(self.masks_q.get_nowait())
            except queue.Empty:
                return

    def _render_input(self) -> queue.Queue:
        return self.video_q

    def _render_item(self, frame: Frame) -> None:
        annotation, state = self.latest.get()
        self.output.emit(frame, annotation, state)
        if self.config.output.save_masks:
            self._drain_masks()

    def _render_end(self) -> None:
        # The last inference may still be running; its mask is still to be written.
        while not self._inference_done.wait(WAIT):
            if self.config.output.save_masks:
                self._drain_masks()  # the inference thread may be waiting for room
            if self.stop.is_set():
                break

    def _render_finished(self) -> None:
        if self.config.output.save_masks:
            self._drain_masks()


class FilePipeline(Pipeline):
    """File mode: frames pass capture -> inference -> render in order with back-pressure, so every
    frame gets its own exact mask. The Segmenter's work is spread so the inference thread runs the
    model alone: capture prepares the frame, render completes the mask."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames_q: queue.Queue = queue.Queue(maxsize=self.config.queue_size)
        self.results_q: queue.Queue = queue.Queue(maxsize=self.config.queue_size)

    def compose(self) -> list[Stage]:
        return [Stage("capture", self._capture, "source", "frames_q: (frame, prepared), blocking"),
                Stage("inference", self._inference, "frames_q", "results_q: (frame, prepared, probabilities)"),
                Stage("render", self._render, "results_q", "recorder, masks, window, web view")]

    def _send(self, frame: Frame) -> bool:
        return put_blocking(self.frames_q, (frame, self._prepare(frame)), self.stop)

    def _send_marker(self, marker) -> None:
        put_blocking(self.frames_q, marker, self.stop)

    def _on_signal_lost(self) -> None:
        self.segmenter.reset_prepare()  # this thread prepares; the render thread resets the rest

    def _inference(self) -> None:
        # Only the model runs here: the capture thread prepared the frame, the render thread completes it.
        while not self.stop.is_set():
            try:
                item = self.frames_q.get(timeout=WAIT)
            except queue.Empty:
                continue
            if item is END or item is RESET:
                if not put_blocking(self.results_q, item, self.stop) or item is END:
                    return
                continue
            frame, prepared = item
            raw, seconds = self._infer_waiting(prepared)
            if raw is None:
                return  # stopped while the server was away
            self.stats.record("inference", seconds)
            self.stats.count("inferred")
            if not put_blocking(self.results_q, (frame, prepared, raw, seconds), self.stop):
                return

    def _infer_waiting(self, prepared):
        """File mode: the model's answer for one frame, waiting out a lost inference server.

        Every frame of a file is annotated: while the server is away the frame waits (the HUD says
        so) for up to ``--reconnect-timeout`` seconds, then the run stops with :class:`InferenceLost`.
        Returns (probabilities, seconds), or (None, 0) when the pipeline stopped meanwhile.
        """
        lost_since = None
        limit = self.config.source.reconnect_timeout
        while not self.stop.is_set():
            try:
                return self.backend.infer(prepared.batch), self.backend.last_infer_s
            except InferenceUnavailable as exc:
                now = time.monotonic()
                lost_since = lost_since if lost_since is not None else now
                if now - lost_since > limit:
                    raise InferenceLost(f"inference server lost for more than {limit:g} s (--reconnect-timeout) "
                                        f"in file mode ({exc}); every frame of a file is annotated, so the run "
                                        "stopped; the recording holds the frames annotated so far") from None
                self.stop.wait(WAIT)
        return None, 0.0

    def _render_input(self) -> queue.Queue:
        return self.results_q

    def _render_reset(self) -> None:
        self.segmenter.reset_complete()
        self.tracker.end_all("signal lost")

    def _render_item(self, item) -> None:
        frame, prepared, raw, seconds = item
        annotation = None
        if raw is not None:
            self.segmenter.set_smoothing(self.view.smoothing)
            result = self.segmenter.complete(prepared, raw, seconds)
            self.stats.record("postprocess", result.timings["postprocess"])
            self._track(frame, result)
            annotation = Annotation.of(frame, result)
        self.output.emit(frame, annotation, "" if annotation is not None else "lost")
