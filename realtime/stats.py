"""Per-stage timings, the two delays, rolling FPS, CPU time per stage and counters, with rich tables and JSON.

The two latencies a clinician feels are reported separately: *video delay*, from a frame's capture
to the moment its rendered picture is handed to the display and the recorder, and *annotation
delay*, from the capture of the frame a mask was computed on to the moment that mask is shown (on a
later frame, in live mode). A ``--realtime`` file's frame counts as captured at its due time, as a
live feed's would, so reading it and any lag behind the schedule are part of its delays.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from rich.console import Group
from rich.table import Table

from polyp_live.realtime.terminal import loose_headings

STAGES = ("capture", "preprocess", "inference", "postprocess", "render", "write", "encode",
          "video_delay", "annotation_delay")
COUNTERS = (
    "frames_in",         # captured
    "frames_out",        # shown/recorded (rendered by the output stage)
    "dropped",           # captured but never shown: the video path fell behind (live sources only)
    "inferred",          # frames the model ran on
    "not_inferred",      # live: frames shown with an earlier frame's mask, the model being busy
    "annotated",         # frames shown with a mask drawn
    "stale",             # frames shown without a mask because the newest one was too old
    "annotations_lost",  # inference requests that failed transiently (a lost inference server)
    "record_dropped",    # frames the encoder could not take in time (live sources only)
    "corrupt", "signal_lost", "reconnects", "polyp_frames", "masks")


class LatencyHistogram:
    """Durations in log-spaced bins 1 % wide from 10 us to 1000 s: fixed memory however long the run.

    Percentiles are read from the cumulative counts, interpolated inside a bin, so they are within
    1 % of the exact value; count, mean, minimum and maximum are exact. A 30 FPS run of 30 minutes keeps
    the same 14 KB per stage as one of 30 seconds (the raw samples grew by 0.5 MB a minute).
    """

    LOW, HIGH, RATIO = 1e-5, 1e3, 1.01

    def __init__(self) -> None:
        self._bins = int(np.ceil(np.log(self.HIGH / self.LOW) / np.log(self.RATIO))) + 2
        self.counts = np.zeros(self._bins, np.int64)
        self.count, self.total, self.max, self.min = 0, 0.0, 0.0, float("inf")

    def add(self, seconds: float) -> None:
        """Count one duration (below 10 us counts in the lowest bin, above 1000 s in the highest)."""
        if seconds <= self.LOW:
            index = 0
        else:
            index = min(self._bins - 1, 1 + int(np.log(seconds / self.LOW) / np.log(self.RATIO)))
        self.counts[index] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.min = min(self.min, seconds)

    def _edge(self, index: int) -> float:
        return self.LOW * self.RATIO ** (index - 1) if index > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile in seconds (numpy's linear definition, to within the 1 % bin width)."""
        if not self.count:
            return float("nan")
        rank = q / 100.0 * (self.count - 1)  # 0-based position among the sorted samples
        cumulative = np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, rank + 1, side="left"))
        before = cumulative[index - 1] if index else 0
        inside = (rank - before + 0.5) / self.counts[index]
        low, high = self._edge(index), self._edge(index + 1)
        return float(min(self.max, max(self.min, low + (high - low) * min(1.0, max(0.0, inside)))))


class PipelineStats:
    """Thread-safe collector. Stages call :meth:`record`; the console and summary read snapshots.

    Each stage keeps a :class:`LatencyHistogram` (bounded memory) and a short window for the HUD;
    ``keep_samples`` also keeps every raw sample (benchmarks, which plot them; short runs only).
    """

    def __init__(self, window: int = 120, keep_samples: bool = False):
        self._lock = threading.Lock()
        self.keep_samples = keep_samples
        self.histograms: dict[str, LatencyHistogram] = {s: LatencyHistogram() for s in STAGES}
        self.samples: dict[str, list[float]] = {s: [] for s in STAGES}
        self.recent: dict[str, deque] = {s: deque(maxlen=window) for s in STAGES}
        self.counters = {c: 0 for c in COUNTERS}
        self._out_times: deque = deque(maxlen=window)
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.info: dict[str, object] = {}
        self.cpu_s: dict[str, float] = {}   # thread CPU time per stage (time.thread_time)
        self._first_out: float | None = None  # the last one is _out_times[-1]
        self._cpu0 = time.process_time()
        self.extra: dict[str, object] = {}  # further sections of the summary (the appearances)

    def record(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.histograms[stage].add(seconds)
            if self.keep_samples:
                self.samples[stage].append(seconds)
            self.recent[stage].append(seconds)

    def count(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self.counters[counter] += n

    def add_cpu(self, stage: str, seconds: float) -> None:
        """Add a thread's CPU time (``time.thread_time()`` at its end minus at its start) to ``stage``."""
        with self._lock:
            self.cpu_s[stage] = self.cpu_s.get(stage, 0.0) + seconds

    def frame_out(self) -> None:
        with self._lock:
            now = time.perf_counter()
            self.counters["frames_out"] += 1
            self._out_times.append(now)
            self._first_out = self._first_out or now

    def rolling_fps(self) -> float:
        with self._lock:  # runs per frame for the HUD: read the ends, do not copy the window
            times = self._out_times
            if len(times) < 2 or times[-1] == times[0]:
                return 0.0
            return (len(times) - 1) / (times[-1] - times[0])

    def rolling_ms(self, stage: str) -> float:
        with self._lock:
            values = list(self.recent[stage])
        return 1000.0 * float(np.mean(values)) if values else 0.0

    def summary(self) -> dict:
        """Percentiles per stage in milliseconds, counters, and overall throughput."""
        with self._lock:
            stages = {}
            for stage, h in self.histograms.items():
                if h.count:
                    stages[stage] = {"count": h.count, "mean": 1000.0 * h.total / h.count,
                                     **{f"p{q}": 1000.0 * h.percentile(q) for q in (50, 95, 99)},
                                     "max": 1000.0 * h.max}
            counters = dict(self.counters)
        elapsed = (self.finished or time.perf_counter()) - self.started
        with self._lock:
            cpu = dict(self.cpu_s)
            # Rates over the span from the first to the last frame out: start-up (opening the source,
            # the model's first run) is not throughput.
            span = (self._out_times[-1] - self._first_out) if self._first_out else 0.0
        process_cpu = time.process_time() - self._cpu0
        # What no stage thread accounts for: ONNX Runtime's own worker threads, the main thread.
        cpu["other"] = max(0.0, process_cpu - sum(cpu.values()))
        cpu_use = {k: {"cpu_s": v, "cores": v / elapsed if elapsed > 0 else 0.0} for k, v in cpu.items()}
        out = counters["frames_out"]
        return {"stages_ms": stages, "counters": counters, "wall_s": elapsed,
                "fps": out / elapsed if elapsed > 0 else 0.0,
                "output_fps": (out - 1) / span if span > 0 else 0.0,
                "inference_hz": counters["inferred"] * (out - 1) / out / span if span > 0 and out else 0.0,
                "process_cpu_s": process_cpu, "cpu": cpu_use, "info": dict(self.info), **self.extra}

    def live_table(self) -> Table:
        """The table the terminal shows while running."""
        table = Table(title=f"polyp-live  {self.rolling_fps():5.1f} FPS", title_justify="left")
        table.add_column("stage")
        table.add_column("ms (recent mean)", justify="right")
        for stage in STAGES:
            table.add_row(stage.replace("_", "-"), f"{self.rolling_ms(stage):7.2f}")
        with self._lock:
            counters = dict(self.counters)
        table.add_row("frames in/out", f"{counters['frames_in']}/{counters['frames_out']}")
        table.add_row("inferred / stale", f"{counters['inferred']} / {counters['stale']}")
        table.add_row("dropped / corrupt", f"{counters['dropped']} / {counters['corrupt']}")
        return table

    def summary_table(self) -> Group:
        """What is printed at exit: a heading line, p50, p95, p99 and max per stage, a line of counters."""
        data = self.summary()
        table = Table(title=f"polyp-live summary: {data['counters']['frames_out']} frames in {data['wall_s']:.1f} s "
                            f"({data['fps']:.1f} FPS)", title_justify="left")
        for col in ("stage", "p50 ms", "p95 ms", "p99 ms", "max ms"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        for stage, row in data["stages_ms"].items():
            table.add_row(stage.replace("_", "-"), *(f"{row[k]:.2f}" for k in ("p50", "p95", "p99", "max")))
        counters = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data["counters"].items() if v or k in
                             ("frames_in", "frames_out", "dropped", "inferred", "polyp_frames"))
        table.caption = counters
        return loose_headings(table)

    def write_json(self, path: str | Path) -> None:
        """Write :meth:`summary` as JSON; raises OSError when the file cannot be written."""
        Path(path).write_text(json.dumps(self.summary(), indent=2) + "\n")
