#!/usr/bin/env python3
"""Evaluate a checkpoint (.pt) or an exported model (.onnx) on a dataset split.

Runs through the same backend and preprocessing as polyp-live. Writes a per-image CSV, a JSON
summary and a best/worst overlay grid, and prints a table of mean and pooled metrics.

Examples:
    python tools/evaluate.py --model runs/lite0-256/best.pt --split val --sweep --out runs/eval-val
    python tools/evaluate.py --model engines/models/polyp-unetpp-lite0-256.onnx --split test --out runs/eval-test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint (.pt) or ONNX model (.onnx with its sidecar)")
    p.add_argument("--data", default="../shared/data/kvasir-seg", help="dataset folder (images/, masks/, splits/)")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the model's)")
    p.add_argument("--sweep", action="store_true", help="also report mean Dice over thresholds 0.20..0.80 (use on val)")
    p.add_argument("--out", required=True, help="folder for the CSV, JSON and PNG")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = runtime default)")
    args = p.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from polyp_live.engines.errors import BackendUnavailableError, ModelLoadError
    from polyp_live.engines.registry import load_backend
    from polyp_live.engines.spec import ModelSpecError
    from polyp_live.training.dataset import DatasetError
    from polyp_live.training.evaluation import evaluate, write_reports
    from polyp_live.training.metrics import METRICS

    console = Console()
    try:
        backend = load_backend(args.model, threads=args.threads)
        with Progress(console=console, transient=True) as progress:
            result, kept = evaluate(backend, args.data, args.split, args.threshold, args.sweep, progress)
        summary = write_reports(result, kept, args.out, args.model)
    except (DatasetError, ModelLoadError, ModelSpecError, BackendUnavailableError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    table = Table(title=f"{args.model} on {args.split} ({summary['images']} images, threshold {result.threshold:.2f})")
    table.add_column("metric")
    table.add_column("mean per image", justify="right")
    table.add_column("pooled", justify="right")
    for m in METRICS:
        table.add_row(m, f"{result.mean[m]:.4f}", f"{result.pooled[m]:.4f}")
    console.print(table)
    if result.sweep:
        console.print("threshold sweep (mean Dice): " +
                      ", ".join(f"{t:.2f}: {d:.4f}" for t, d in result.sweep.items()))
        console.print(f"best threshold: {summary['best_threshold']:.2f}")
    console.print(f"reports in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
