#!/usr/bin/env python3
"""Benchmark inference backends on the same real frames.

Each model runs the same preprocessed frames (the shared preprocessing) after a warm-up; the table
reports median and p95 latency, throughput, peak resident memory of the process, and mask Dice
against the first model listed (the reference). Do not run it while another job loads the CPU.

Entries are ``PATH[@BACKEND[:PRECISION]]``; by default every backend and precision available on
this machine runs (ONNX Runtime FP32 and INT8, torch with --checkpoint, TensorRT FP16 and INT8 where
TensorRT and a GPU exist), each in its own process.

With ``--pipeline`` it measures the whole live pipeline instead (see tools/pipeline_benchmark.py):
the 720p demo and a 1080p variant, ``--realtime`` and file mode, FP32 and INT8, recording on.

Examples:
    python tools/benchmark.py --threads 2 --json docs/benchmark-cpu.json
    python tools/benchmark.py --pipeline --threads 2   # docs/benchmark-pipeline.{json,md}, docs/pipeline-delays.png
    python tools/benchmark.py --checkpoint runs/lite0-256/best.pt --threads 2
    python tools/benchmark.py --model MODEL.onnx@onnxruntime:fp32 MODEL.onnx@tensorrt:fp16 --source clip.mp4
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path

import numpy as np
from polyp_live.arguments import printable



def load_frames(source: str, split: str, count: int) -> list[np.ndarray]:
    """The same frame sampling as calibration: a dataset split, an image folder or a video."""
    from polyp_live.calibration.frames import sample_frames
    return sample_frames(source, count, split, name="--source")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95 and p99 of ``values`` (None each when there are none), as the benchmark reports give them."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def parse_entry(entry: str) -> tuple[str, str, str]:
    """``PATH[@BACKEND[:PRECISION]]`` -> (path, backend, precision)."""
    path, _, rest = entry.partition("@")
    backend, _, precision = rest.partition(":")
    return path, backend or "auto", precision or "auto"


def run_one(entry: str, source: str, split: str, count: int, threads: int, runs: int, warmup: int) -> tuple[dict, list]:
    """Benchmark one model in this process (called in a fresh child so peak memory is its own)."""
    from polyp_live.core.segmenter import prepare_still
    from polyp_live.engines.registry import load_backend
    path, backend_name, precision = parse_entry(entry)
    frames = load_frames(source, split, count)
    rss_before = peak_rss_mb()
    backend = load_backend(path, backend_name, threads=threads, precision=precision)
    inputs = [prepare_still(f, backend.spec)[0] for f in frames]   # what the live model is given
    for x in (inputs * (1 + warmup // max(1, len(inputs))))[:warmup]:
        backend.infer(x)
    times, probs = [], []
    for r in range(runs):
        for x in inputs:
            prob = backend.infer(x)
            times.append(backend.last_infer_s)
            if r == 0:
                probs.append(prob)
    ms = np.asarray(times) * 1000
    result = {"model": path, "backend": backend.name, "precision": precision, "threshold": backend.spec.threshold,
              "input": [backend.spec.input_height, backend.spec.input_width], "frames": len(inputs), "runs": runs,
              "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
              "throughput_fps": float(1000 / ms.mean()), "peak_rss_mb": peak_rss_mb(),
              "frames_rss_mb": rss_before}
    backend.close()
    return result, probs


def default_entries(model: str, checkpoint: str | None) -> list[str]:
    """Everything that can run here: ONNX Runtime FP32/INT8, torch CPU/CUDA, TensorRT FP16/INT8."""
    from polyp_live.engines.registry import int8_variant
    entries = [f"{model}@onnxruntime:fp32"]
    if int8_variant(model).is_file():
        entries.append(f"{model}@onnxruntime:int8")
    if checkpoint:
        entries.append(f"{checkpoint}@torch")
    try:
        import tensorrt  # noqa: F401
        from polyp_live.engines.cuda_memory import gpu_info
        gpu_info()
        entries += [f"{model}@tensorrt:fp16", f"{model}@tensorrt:int8"]
    except Exception:
        pass  # no TensorRT or no GPU here
    return entries


def build_parser():
    """``polyp-live benchmark``'s options."""
    from polyp_live.arguments import DEFAULT_DATA, command_parser, deprecated_alias
    p = command_parser("benchmark", __doc__)
    p.add_argument("--model", nargs="+", default=None, metavar="PATH[@BACKEND[:PRECISION]]",
                   help="models to compare, the first is the Dice reference; a bare .onnx runs on every backend "
                        "and precision available here, a .pt with torch (default: the bundled model)")
    deprecated_alias(p, "--models", "--model", nargs="+")
    p.add_argument("--checkpoint", default=None, help="also benchmark this .pt with the torch backend")
    p.add_argument("--source", default=DEFAULT_DATA,
                   help=f"dataset, image folder or video (default {DEFAULT_DATA}; with --pipeline: the demo clip)")
    p.add_argument("--split", default="test")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per model (default 50); with --pipeline, frames per run (default 0: the whole clip)")
    p.add_argument("--runs", type=int, default=3, help="passes over the frames (default 3)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = runtime default)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--markdown", default=None, help="also write the table as Markdown here")
    pipe = p.add_argument_group("--pipeline: the whole live pipeline")
    pipe.add_argument("--pipeline", action="store_true", help="benchmark the live pipeline instead of inference alone")
    pipe.add_argument("--sizes", nargs="+", default=["720p", "1080p"], choices=["720p", "1080p"])
    pipe.add_argument("--modes", nargs="+", default=["realtime", "file"], choices=["realtime", "file"])
    pipe.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    pipe.add_argument("--spinning", action="store_true", help="let ONNX Runtime's idle threads spin (default off)")
    pipe.add_argument("--png", default=None, help="delay histogram (default docs/pipeline-delays.png)")
    pipe.add_argument("--opencv-threads", type=int, default=None, help="OpenCV's thread pool (default 1; 0 = OpenCV's own)")
    pipe.add_argument("--encoder-threads", type=int, default=None, help="libx264 threads (default 1)")
    pipe.add_argument("--preset", default=None, help="libx264 preset (default superfast)")
    p.add_argument("--force", action="store_true", help="replace result files that already exist (the pipeline "
                   "benchmark's defaults are the committed docs/ files)")
    return p


def check_args(p, args) -> None:
    """Refuse, before any model runs, bad counts, missing models or source, and outputs over inputs."""
    from polyp_live.arguments import check_output_file, refuse_overwriting_inputs
    if (args.frames is not None and args.frames < 1) or args.runs < 1 or args.warmup < 0:
        p.error("--frames and --runs need at least 1, --warmup at least 0")
    models = [m.split("@")[0] for m in (args.model or [])] + ([args.checkpoint] if args.checkpoint else [])
    for model in models:
        if not Path(model).is_file():
            p.error(f"model {model} not found; pass an .onnx or .pt file")
    if args.threads < 0:
        p.error(f"--threads must be 0 (the runtime's default) or more, got {args.threads}")
    for option, value, suffix in (("--json", args.json, ".json"), ("--markdown", args.markdown, ".md"),
                                  ("--png", args.png, ".png")):
        check_output_file(p, option, value, (suffix,))
        if value:
            Path(value).parent.mkdir(parents=True, exist_ok=True)  # found missing only after the whole run
    refuse_overwriting_inputs({"--json": args.json, "--markdown": args.markdown, "--png": args.png},
                              [args.source, *models], parser=p)
    default = args.source == p.get_default("source")
    if not Path(args.source).exists() and not (args.pipeline and default):  # --pipeline's default: the demo clip
        where = " (the default)" if default else ""
        p.error(f"--source {printable(args.source)}{where} not found; pass a dataset folder, an image folder or a "
                "video with --source (Kvasir-SEG, whose folder is the default: https://datasets.simula.no/kvasir-seg/)")


def main(argv=None) -> int:
    """``polyp-live benchmark``: latency of each backend and precision on the same frames, or of the pipeline."""
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    if args.pipeline:
        return run_pipeline(p, args)
    return run_inference(args)


def run_pipeline(p, args) -> int:
    """``--pipeline``: the whole live pipeline, into the docs/ files unless other outputs are named."""
    from polyp_live.resources import bundled_model, demo_clip
    from polyp_live.tools.pipeline_benchmark import run
    docs = Path(__file__).resolve().parents[1] / "docs"
    outputs = {"--json": args.json or str(docs / "benchmark-pipeline.json"),
               "--markdown": args.markdown or str(docs / "benchmark-pipeline.md"),
               "--png": args.png or str(docs / "pipeline-delays.png")}
    existing = [f"{option} {path}" for option, path in outputs.items() if Path(path).exists()]
    if existing and not args.force:
        p.error(f"{existing[0]} exists (the defaults are the committed docs/ results); pass --force to replace "
                "them, or name other files with --json, --markdown and --png")
    source = args.source if args.source != p.get_default("source") else str(demo_clip())
    run(args.model[0] if args.model else str(bundled_model()), source, args.frames or 0, args.threads, args.spinning,
        args.sizes, args.modes, args.precisions, outputs["--json"], outputs["--markdown"], outputs["--png"],
        {k: v for k, v in (("opencv_threads", args.opencv_threads), ("encoder_threads", args.encoder_threads),
                           ("preset", args.preset)) if v is not None})
    return 0


def run_inference(args) -> int:
    """Each entry in a fresh process on the same frames; the table (printed) and --json, --markdown."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from polyp_live.core.errors import PolypLiveError
    from polyp_live.realtime import terminal
    from polyp_live.resources import bundled_model
    from dataclasses import asdict

    from polyp_live.core.comparator import compare, rule_for

    args.frames = args.frames or 50
    console = terminal.console()  # piped or redirected: no 80-column limit that cuts the model names
    entries = [e for m in (args.model or [str(bundled_model())]) for e in
               ([m] if "@" in m else [f"{m}@torch"] if Path(m).suffix in (".pt", ".pth") else default_entries(m, None))]
    entries += [f"{args.checkpoint}@torch"] if args.checkpoint else []
    rows, reference = [], None
    for entry in entries:
        # A fresh process per model: its peak memory is its own and no runtime state leaks across.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                row, probs = pool.submit(run_one, entry, args.source, args.split, args.frames, args.threads,
                                         args.runs, args.warmup).result()
            except (PolypLiveError, OSError) as exc:  # raised in the worker, re-raised here with its own type
                print(f"polyp-live benchmark: error: {printable(entry)}: {printable(exc)}", file=sys.stderr)
                return 1
        if reference is None:
            reference = probs
        same_input = all(p.shape == r.shape for p, r in zip(probs, reference))
        agreement = compare(reference, probs, row["threshold"]) if same_input else None
        row["mask_dice_vs_reference"] = agreement.mean_dice if agreement else float("nan")
        row["agreement_vs_first"] = asdict(agreement) if agreement else None
        row["agrees_with_first"] = rule_for(row["precision"]).passes(agreement) if agreement else None
        rows.append(row)
        console.print(f"{entry}: median {row['median_ms']:.1f} ms", highlight=False)
    machine = {"cpu": cpu_name(), "python": platform.python_version(), "cores_visible": os.cpu_count(),
               "threads": args.threads, "onnxruntime": package_version("onnxruntime")}
    console.print(results_table(rows, machine, len(reference), args.runs))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(rows, machine))
    return 0


def results_table(rows: list[dict], machine: dict, frames: int, runs: int):
    """The printed table (its heading on a line of its own); adds ``speedup_vs_first`` to each row."""
    from rich.markup import escape
    from rich.table import Table

    from polyp_live.realtime.terminal import loose_headings

    table = Table(title=escape(f"{frames} frames x {runs} runs, threads={machine['threads'] or 'default'}, "
                               f"{machine['cpu']}"))
    for col in ("model", "backend", "input", "median ms", "p95 ms", "FPS", "peak RSS MB", "mask Dice vs first"):
        table.add_column(col, justify="left" if col in ("model", "backend") else "right")
    base = rows[0]["median_ms"]
    for r in rows:
        table.add_row(escape(Path(r["model"]).name), f"{r['backend']} {r['precision']}", "x".join(map(str, r["input"])),
                      f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['throughput_fps']:.1f}",
                      f"{r['peak_rss_mb']:.0f}", f"{r['mask_dice_vs_reference']:.4f}")
        r["speedup_vs_first"] = base / r["median_ms"]
    return loose_headings(table)


def markdown_table(rows: list[dict], machine: dict) -> str:
    lines = [f"Machine: {machine['cpu']}, {machine['cores_visible']} cores visible, threads={machine['threads'] or 'default'}, "
             f"onnxruntime {machine['onnxruntime']}, Python {machine['python']}.", "",
             "| model | backend | precision | input | median ms | p95 ms | FPS | speed-up vs first | peak RSS MB | mask Dice vs first |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {Path(r['model']).name} | {r['backend']} | {r['precision']} | {'x'.join(map(str, r['input']))} | {r['median_ms']:.1f} | "
                     f"{r['p95_ms']:.1f} | {r['throughput_fps']:.1f} | {r['speedup_vs_first']:.2f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['mask_dice_vs_reference']:.4f} |")
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(module: str) -> str:
    """The installed version of ``module``, or "absent"."""
    try:
        return __import__(module).__version__
    except Exception:
        return "absent"


if __name__ == "__main__":
    sys.exit(main())
