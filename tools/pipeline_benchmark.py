"""The whole live pipeline under load: ``python tools/benchmark.py --pipeline``.

Runs the 720p demo clip (and a 1080p variant made on the fly by upscaling it) through the real
pipeline with recording on, in ``--realtime`` (the file paced like a live feed) and in file mode
(every frame, exact masks), with the FP32 and the INT8 model, each run in a fresh process. Reports:

- output FPS against the source's, frames dropped from the video (never shown or never recorded);
- inference rate; video delay and annotation delay p50/p95/p99;
- file mode: throughput as a fraction of ``1000 / inference p50`` measured in the same run (the rate
  the slowest stage allows);
- CPU time per stage (``time.thread_time`` of each stage thread; "other" is ONNX Runtime's worker
  threads and the main thread);
- whether the recording decodes to every frame and lasts as long as the source.

Writes JSON, a Markdown table and a PNG histogram of the two delays. Run it on an otherwise idle
machine; the figures in docs/PERFORMANCE.md come from it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from polyp_live.tools.benchmark import percentiles

SIZES = {"720p": None, "1080p": (1920, 1080)}


def make_variant(clip: str, size: tuple[int, int] | None, frames: int, folder: Path) -> str:
    """The clip itself, or its first ``frames`` frames upscaled to ``size`` as H.264 (like a 1080p feed)."""
    if size is None:
        return clip
    import av
    import cv2

    out = folder / f"demo-{size[1]}p.mp4"
    if out.exists():
        return str(out)
    src = cv2.VideoCapture(clip)
    fps = src.get(cv2.CAP_PROP_FPS) or 30.0
    from polyp_live.realtime.recorder import exact_fps
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=exact_fps(fps), options={"preset": "veryfast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        n = 0
        while frames <= 0 or n < frames:
            ok, image = src.read()
            if not ok:
                break
            big = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(big, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        for packet in stream.encode(None):
            container.mux(packet)
    src.release()
    return str(out)


def run_one(clip: str, model: str, mode: str, frames: int, threads: int, spinning: bool, folder: str,
            tuning: dict | None = None) -> dict:
    """One pipeline run in this (fresh) process; returns its measurements and raw delay samples.

    ``tuning``: ``opencv_threads``, ``encoder_threads`` and ``preset`` (the x264 preset), when given.
    """
    from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
    from polyp_live.core.config import OutputConfig, PerformanceConfig, PipelineConfig, SourceConfig
    from polyp_live.realtime.pipeline import Pipeline
    from polyp_live.realtime.sources import open_source

    record = Path(folder) / f"out-{os.getpid()}.mp4"
    tuning = tuning or {}
    perf = PerformanceConfig(**{k: tuning[k] for k in ("opencv_threads", "encoder_threads") if k in tuning})
    output = OutputConfig(record=str(record), **({"record_preset": tuning["preset"]} if "preset" in tuning else {}))
    config = PipelineConfig(source=SourceConfig(source=clip, realtime=mode == "realtime", max_frames=frames),
                            output=output, performance=perf)
    backend = OnnxRuntimeBackend(model, threads=threads, allow_spinning=spinning)
    warm = np.zeros((1, 3, backend.spec.input_height, backend.spec.input_width), np.float32)
    for _ in range(3):  # the first runs allocate and tune; a live system is warm before the first frame
        backend.infer(warm)
    try:
        pipeline = Pipeline(config, open_source(clip), backend)
        pipeline.stats.keep_samples = True  # the delay histograms plot every sample of this short run
        stats = pipeline.run()
    finally:
        backend.close()
    summary = stats.summary()
    samples = {k: [1000 * v for v in stats.samples[k]] for k in ("video_delay", "annotation_delay")}
    decoded, duration = recording_check(record)
    record.unlink(missing_ok=True)
    return {"summary": summary, "samples_ms": samples, "recording_frames": decoded, "recording_s": duration}


def recording_check(path: Path) -> tuple[int, float]:
    """(frames that decode, duration in seconds) of a recording."""
    import av
    count, end = 0, 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        period = 1 / float(stream.average_rate or 30)
        for frame in container.decode(stream):
            count += 1
            end = max(end, float(frame.pts * frame.time_base) + period)
    return count, end


def row_of(name: str, size: str, precision: str, mode: str, out: dict) -> dict:
    s = out["summary"]
    c, info, stages = s["counters"], s["info"], s["stages_ms"]
    source_fps = float(info["source_fps"])
    inference_p50 = stages.get("inference", {}).get("p50")
    row = {"run": name, "size": size, "precision": precision, "mode": mode, "source_fps": source_fps,
           "frames_in": c["frames_in"], "frames_out": c["frames_out"], "output_fps": s["output_fps"],
           "dropped_from_video": c["dropped"] + c["record_dropped"], "inference_hz": s["inference_hz"],
           "inference_p50_ms": inference_p50, "stale_frames": c["stale"],
           "video_delay_ms": percentiles(out["samples_ms"]["video_delay"]),
           "annotation_delay_ms": percentiles(out["samples_ms"]["annotation_delay"]),
           "cpu_cores": {k: v["cores"] for k, v in s["cpu"].items()},
           "recording_frames": out["recording_frames"], "recording_s": out["recording_s"],
           "source_s": c["frames_in"] / source_fps}
    if mode == "file" and inference_p50:
        row["throughput_vs_inference"] = s["output_fps"] / (1000.0 / inference_p50)
    return row


def markdown(rows: list[dict], machine: dict) -> str:
    lines = [f"Machine: {machine['cpu']}, {machine['cores_visible']} cores visible, onnxruntime "
             f"{machine['onnxruntime']}, PyAV {machine['av']}, OpenCV {machine['opencv']}, Python {machine['python']}; "
             f"intra-op threads {machine['threads'] or 'default'}, spinning {'on' if machine['spinning'] else 'off'}"
             + "".join(f", {k} {v}" for k, v in machine["tuning"].items()) + ".", "",
             "| run | source FPS | output FPS | dropped from video | inference Hz | video delay p50/p95/p99 ms | "
             "annotation delay p50/p95/p99 ms | file mode: fraction of 1000/inference p50 | recording frames / s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def three(d):
        return "/".join("-" if d[k] is None else f"{d[k]:.0f}" for k in ("p50", "p95", "p99"))

    for r in rows:
        frac = f"{r['throughput_vs_inference']:.2f}" if "throughput_vs_inference" in r else "-"
        lines.append(f"| {r['run']} | {r['source_fps']:.2f} | {r['output_fps']:.1f} | {r['dropped_from_video']} | "
                     f"{r['inference_hz']:.1f} | {three(r['video_delay_ms'])} | {three(r['annotation_delay_ms'])} | "
                     f"{frac} | {r['recording_frames']} / {r['recording_s']:.2f} (source {r['source_s']:.2f}) |")
    stages = sorted({k for r in rows for k in r["cpu_cores"]})
    lines += ["", "CPU use per stage (cores busy on average over the run):", "",
              "| run | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
    for r in rows:
        lines.append(f"| {r['run']} | " + " | ".join(f"{r['cpu_cores'].get(k, 0.0):.2f}" for k in stages) + " |")
    return "\n".join(lines) + "\n"


def histogram(runs: list[tuple[str, dict]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    live = [(name, out) for name, out in runs if "realtime" in name] or runs
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, key, title in ((axes[0], "video_delay", "video delay (capture to shown/recorded)"),
                           (axes[1], "annotation_delay", "annotation delay (capture of the mask's frame to shown)")):
        top = max([max(out["samples_ms"][key], default=0) for _, out in live] + [1])
        bins = np.linspace(0, min(top, 1000), 60)
        for name, out in live:
            ax.hist(out["samples_ms"][key], bins=bins, histtype="step", linewidth=1.5, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ms")
        ax.set_ylabel("frames")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(model: str, clip: str, frames: int, threads: int, spinning: bool, sizes: list[str], modes: list[str],
        precisions: list[str], json_path: str | None, md_path: str | None, png_path: str | None,
        tuning: dict | None = None, say=print) -> list[dict]:
    """Run every combination; write the outputs; return the rows."""
    from polyp_live.engines.registry import int8_variant
    from polyp_live.tools.benchmark import cpu_name, package_version

    models = {"fp32": model}
    notes = []
    if "int8" in precisions:
        int8 = int8_variant(model)
        if int8.is_file():
            models["int8"] = str(int8)
        else:
            notes.append(f"INT8 skipped: no {int8}; create it with polyp-live quantize (python tools/quantize.py)")
            say(notes[-1])
    rows, runs = [], []
    with tempfile.TemporaryDirectory(prefix="polyp-bench-") as folder:
        for size in sizes:
            source = make_variant(clip, SIZES[size], frames, Path(folder))
            for precision in [p for p in precisions if p in models]:
                for mode in modes:
                    name = f"{size} {precision} {mode}"
                    # A fresh process per run: no runtime state or warm caches leak across runs.
                    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                        out = pool.submit(run_one, source, models[precision], mode, frames, threads, spinning,
                                          folder, tuning).result()
                    rows.append(row_of(name, size, precision, mode, out))
                    runs.append((name, out))
                    r = rows[-1]
                    say(f"{name}: {r['output_fps']:.1f} FPS out of {r['source_fps']:.2f}, dropped "
                        f"{r['dropped_from_video']}, inference {r['inference_hz']:.1f} Hz, video delay p95 "
                        f"{r['video_delay_ms']['p95'] or 0:.0f} ms, annotation delay p95 "
                        f"{r['annotation_delay_ms']['p95'] or 0:.0f} ms")
    import av
    import cv2
    machine = {"cpu": cpu_name(), "cores_visible": os.cpu_count(), "python": platform.python_version(),
               "onnxruntime": package_version("onnxruntime"), "av": av.__version__, "opencv": cv2.__version__,
               "threads": threads, "spinning": spinning, "frames": frames, "tuning": tuning or {}, "notes": notes}
    if json_path:
        Path(json_path).write_text(json.dumps({"machine": machine, "runs": rows}, indent=2) + "\n")
    if md_path:
        Path(md_path).write_text(markdown(rows, machine) + "".join(f"\n{n}\n" for n in notes))
    if png_path and runs:
        histogram(runs, png_path)
    return rows
