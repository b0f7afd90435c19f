#!/usr/bin/env python3
"""Evaluate the live path's segmentation over a video or a folder of frames, per smoothing mode.

Each frame runs through the same Segmenter as polyp-live (field of view, shared preprocessing,
backend, smoothing, hysteresis, presence decision, postprocessing). With --masks (a folder of
ground-truth masks named like the frames, or by 6-digit frame index for a video) it reports per-frame
Dice on polyp frames, detection and false-alarm rates, presence toggles per 100 frames and flicker
(1 - Dice between consecutive predicted masks, minus the same for the truth), for a single-frame
reference and each smoothing mode, as a table and JSON.

Examples:
    python tools/make_sequence.py --data ../shared/data/kvasir-seg --negatives ../shared/data/negatives \\
        --split test --out runs/seq-test
    python tools/evaluate_video.py --source runs/seq-test/frames --masks runs/seq-test/masks --out runs/video-test
    python tools/evaluate_video.py --source clip.mp4 --out runs/video-clip     # no truth: toggles and flicker
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from polyp_live.arguments import printable


def parse_args(argv=None) -> argparse.Namespace:
    from polyp_live.arguments import check_output_folder, command_parser
    from polyp_live.realtime.options import persistence
    p = command_parser("evaluate-video", __doc__)
    p.add_argument("--source", required=True, metavar="PATH", help="video file, image folder or glob")
    p.add_argument("--masks", default=None, metavar="DIR", help="ground-truth masks (0/255 PNG), named like the frames")
    p.add_argument("--model", default=None, metavar="PATH", help="model file (default: the bundled model)")
    p.add_argument("--backend", default="auto", metavar="NAME", help="backend as in polyp-live (default auto)")
    p.add_argument("--precision", default="auto", metavar="P", help="precision as in polyp-live (default auto)")
    p.add_argument("--modes", default="none,ema,confidence", metavar="LIST",
                   help="smoothing modes to compare, comma-separated (default none,ema,confidence)")
    p.add_argument("--persistence", type=persistence, action="append", default=[], metavar="K/N",
                   help="also compare the confidence mode with this persistence (repeatable)")
    p.add_argument("--roi", default="auto", metavar="auto|full|x,y,w,h", help="field of view (default auto)")
    p.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames (default all)")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="inference threads (0 = runtime default)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for video_eval.json")
    args = p.parse_args(argv)
    from polyp_live.core.smoothing import SMOOTHING_MODES
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in SMOOTHING_MODES]
    if bad:
        p.error(f"unknown smoothing mode {bad[0]!r}; choose from {', '.join(SMOOTHING_MODES)}")
    try:
        from polyp_live.core.roi import parse_roi
        parse_roi(args.roi)
    except ValueError as exc:
        p.error(str(exc))
    check_output_folder(p, "--out", args.out)
    if args.max_frames < 0:
        p.error(f"--max-frames must be 0 (all) or more, got {args.max_frames}")
    if args.masks and not Path(args.masks).is_dir():
        p.error(f"--masks {args.masks} is not a folder; give the folder of ground-truth masks")
    from polyp_live.commands import require_extra
    from polyp_live.engines.registry import SUFFIXES
    if args.model and SUFFIXES.get(Path(args.model).suffix.lower()) == "torch":  # an ONNX model needs no extra
        require_extra("evaluate-video", ("torch",), f" --model {printable(args.model)}")
    elif args.backend == "torch":
        require_extra("evaluate-video", ("torch",), " --backend torch")
    return args


def main(argv=None) -> int:
    """``polyp-live evaluate-video``: each smoothing variant over the video, a table and video_eval.json."""
    args = parse_args(argv)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress

    from polyp_live.engines.registry import load_backend
    from polyp_live.realtime import terminal
    from polyp_live.core.errors import PolypLiveError
    from polyp_live.resources import bundled_model
    from polyp_live.training.video_evaluation import (Variant, base_config, default_variants, evaluate_variant,
                                                      write_report)

    console = terminal.console()
    model = args.model or str(bundled_model())
    variants = default_variants(args.modes) + [Variant(f"confidence {k}/{n}", "confidence", (k, n))
                                               for k, n in args.persistence]
    rows = []
    try:
        backend = load_backend(model, backend=args.backend, precision=args.precision, threads=args.threads)
        # Off in a pipe or a log: it draws nothing there but leaves a blank line.
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            for variant in variants:
                rows.append(evaluate_variant(backend, args.source, variant, base_config(args.roi), args.masks,
                                             args.max_frames, progress))
    except (PolypLiveError, OSError) as exc:
        # On stderr, apart from the tables: a script reading the report never mistakes it for results.
        Console(stderr=True).print(f"polyp-live evaluate-video: [red]error:[/red] {escape(printable(exc))}", highlight=False, soft_wrap=True)
        return 1
    path = write_report(rows, args.out, {"model": model, "source": args.source, "masks": args.masks})
    console.print(terminal.loose_headings(results_table(rows, args.masks is not None, model, args.source)))
    skipped, early = rows[0]["damaged_frames_skipped"], rows[0]["ended_early"]
    if skipped or early:
        note = f"{skipped} damaged frame(s) of the source skipped" + (f"; {early}" if early else "")
        Console(stderr=True).print(f"warning: {escape(note)}", highlight=False, soft_wrap=True)
    console.print(f"results in {escape(str(path))}")
    return 0


def results_table(rows: list[dict], truth: bool, model: str, source: str):
    """One row per variant: with ground truth Dice, detection and false alarms, else presence and flicker."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{model} on {source} ({rows[0]['frames']} frames)"))
    columns = ["variant", "persistence"] + (["Dice (polyp frames)", "detected", "false alarms"] if truth else
                                            ["present"]) + ["toggles/100", "flicker" if truth else "raw flicker"]
    columns += ["appearances", "polyps found", "false app./min", "first detection"] if truth else \
        ["appearances", "app./min"]
    for c in columns:
        table.add_column(c, justify="left" if c == "variant" else "right")
    for r in rows:
        cells = [r["variant"], r["persistence"]]
        if truth:
            cells += [f"{r['dice']:.4f}", f"{100 * r['detection_rate']:.1f} %", f"{100 * r['false_alarm_rate']:.2f} %"]
        else:
            cells += [f"{100 * r['present_rate']:.1f} %"]
        cells += [f"{r['toggles_per_100_frames']:.2f}", f"{r['flicker'] if truth else r['flicker_raw']:.4f}"]
        if truth:
            cells += [str(r["appearances"]), f"{r['true_polyps_found']}/{r['true_polyps']}",
                      f"{r['false_appearances_per_minute']:.2f}", f"{1000 * r['median_time_to_first_detection_s']:.0f} ms"]
        else:
            cells += [str(r["appearances"]), f"{r['appearances_per_minute']:.2f}"]
        table.add_row(*cells)
    return table


if __name__ == "__main__":
    sys.exit(main())
