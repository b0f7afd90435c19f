#!/usr/bin/env python3
"""Benchmark inference backends on the same real frames.

Each model runs the same preprocessed frames (the shared preprocessing) after a warm-up; the table
reports median and p95 latency, throughput, peak resident memory of the process, and mask Dice
against the first model listed (the reference). Do not run it while another job loads the CPU.

Examples:
    python tools/benchmark.py --models engines/models/polyp-unetpp-lite0-256.onnx --threads 2
    python tools/benchmark.py --models engines/models/polyp-unetpp-lite0-256.onnx runs/lite0-256/best.pt \
        --source ../shared/data/kvasir-seg --split test --json docs/benchmark-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_frames(source: str, split: str, count: int) -> list[np.ndarray]:
    """BGR frames from a dataset split, an image folder or a video (spread over its length)."""
    import cv2
    path = Path(source)
    if (path / "images").is_dir():
        from training.dataset import read_pair, scan, split_stems
        samples = scan(path)
        stems = split_stems(path, split, samples)[:count]
        return [read_pair(samples[s])[0] for s in stems]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})[:count]
        return [cv2.imread(str(f)) for f in files]
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or count)
    frames = []
    for index in np.linspace(0, max(0, total - 1), min(count, total)).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if ok:
            frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"error: no frames could be read from {source}")
    return frames


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(model: str, backend_name: str, frames, threads: int, runs: int, warmup: int) -> dict:
    from engines.preprocess import preprocess
    from engines.registry import load_backend
    backend = load_backend(model, backend_name, threads=threads)
    inputs = [preprocess(f, backend.spec) for f in frames]
    for x in inputs[:warmup]:
        backend.infer(x)
    times, probs = [], []
    for r in range(runs):
        for x in inputs:
            t = time.perf_counter()
            prob = backend.infer(x)
            times.append(time.perf_counter() - t)
            if r == 0:
                probs.append(prob)
    ms = np.asarray(times) * 1000
    result = {"model": model, "backend": backend.name, "threshold": backend.spec.threshold,
              "input": [backend.spec.input_height, backend.spec.input_width], "frames": len(inputs), "runs": runs,
              "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
              "throughput_fps": float(1000 / ms.mean()), "peak_rss_mb": peak_rss_mb()}
    backend.close()
    return result, probs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="model files; the first is the Dice reference")
    p.add_argument("--backend", default="auto", help="backend for every model (default: from each suffix)")
    p.add_argument("--source", default="../shared/data/kvasir-seg", help="dataset, image folder or video")
    p.add_argument("--split", default="test")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--runs", type=int, default=3, help="passes over the frames (default 3)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = runtime default)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from training.metrics import image_metrics

    console = Console()
    frames = load_frames(args.source, args.split, args.frames)
    rows, reference = [], None
    for model in args.models:
        row, probs = run_one(model, args.backend, frames, args.threads, args.runs, args.warmup)
        if reference is None:
            reference = [p >= row["threshold"] for p in probs]
        dices = [image_metrics(p >= row["threshold"], r)["dice"] if p.shape == r.shape else float("nan")
                 for p, r in zip(probs, reference)]
        row["mask_dice_vs_reference"] = float(np.nanmean(dices))
        rows.append(row)
    machine = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
               "cores_visible": __import__("os").cpu_count(), "threads": args.threads}
    table = Table(title=f"{len(frames)} frames x {args.runs} runs, threads={args.threads or 'default'}")
    for col in ("model", "backend", "input", "median ms", "p95 ms", "FPS", "peak RSS MB", "mask Dice"):
        table.add_column(col, justify="left" if col in ("model", "backend") else "right")
    for r in rows:
        table.add_row(Path(r["model"]).name, r["backend"], "x".join(map(str, r["input"])), f"{r['median_ms']:.1f}",
                      f"{r['p95_ms']:.1f}", f"{r['throughput_fps']:.1f}", f"{r['peak_rss_mb']:.0f}",
                      f"{r['mask_dice_vs_reference']:.4f}")
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
