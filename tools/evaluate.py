#!/usr/bin/env python3
"""Evaluate a checkpoint (.pt) or an exported model (.onnx) on one split of a polyp set and a polyp-free set.

Runs through the same backend and preprocessing as polyp-live. Segmentation: per-image CSV, JSON
summary and a best/worst overlay grid, with masks as the presence decision would draw them on
still images. Frames: detection rate on polyp images, false-alarm rate on polyp-free frames, a sweep
of the decision's score threshold and a PNG of detection against false alarms with the operating
point marked.

Examples:
    python tools/evaluate.py --model runs/neg/best.pt --split val --sweep --out runs/eval-val
    python tools/evaluate.py --model engines/models/polyp-unetpp-lite0-256.onnx --split val \\
        --choose-operating-point --false-alarm-target 0.005 --update-sidecar --out runs/eval-val
    python tools/evaluate.py --model engines/models/polyp-unetpp-lite0-256.onnx --split test --out runs/eval-test
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_live.arguments import printable
from polyp_live.core.decision import score_text

if TYPE_CHECKING:  # annotations only: the command imports its dependencies once its options are checked
    from polyp_live.core.spec import ModelSpec
    from polyp_live.core.decision import DecisionConfig
    from polyp_live.training.evaluation import Evaluation
    from polyp_live.training.frame_evaluation import OperatingPoint


def parse_args(argv=None) -> argparse.Namespace:
    """The options, checked (a missing dataset or extra included) before any model or image is read."""
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def build_parser() -> argparse.ArgumentParser:
    """``polyp-live evaluate``'s options."""
    from polyp_live.arguments import DEFAULT_DATA, DEFAULT_NEGATIVES, command_parser
    from polyp_live.realtime.options import persistence
    p = command_parser("evaluate", __doc__)
    p.add_argument("--model", required=True, metavar="PATH",
                   help="checkpoint (.pt) or ONNX model (.onnx with its sidecar)")
    p.add_argument("--data", default=DEFAULT_DATA, metavar="DIR",
                   help=f"polyp dataset folder (images/, masks/, splits/; default {DEFAULT_DATA})")
    p.add_argument("--negatives", default=DEFAULT_NEGATIVES, metavar="DIR",
                   help=f"polyp-free frames (images/, splits/); '' to skip the frame-level part (default "
                        f"{DEFAULT_NEGATIVES})")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default test)")
    p.add_argument("--threshold", type=float, default=None, metavar="P",
                   help="pixel threshold on the probability (default: the model's)")
    p.add_argument("--score-threshold", type=float, default=None, metavar="P",
                   help="decision: a region's peak probability must reach this (default: the model's sidecar)")
    p.add_argument("--min-area-fraction", type=float, default=None, metavar="F",
                   help="decision: smallest region as a fraction of the model input (default: the sidecar's, "
                        "else 0.002)")
    p.add_argument("--sweep", action="store_true", help="also report mean Dice over pixel thresholds 0.20..0.80")
    p.add_argument("--choose-operating-point", action="store_true",
                   help="pick the lowest score threshold whose false-alarm rate is within the target (use on val)")
    # 0.5 % on ~245 val frames: at a true 1 % a 239-frame test exceeds 2 % about one time in ten.
    p.add_argument("--false-alarm-target", type=float, default=0.005, metavar="F",
                   help="false-alarm rate allowed on the polyp-free val frames when choosing the operating "
                        "point (default 0.005, the bundled model's)")
    p.add_argument("--external", default="", metavar="DIR",
                   help="also score external validation sets (frames from other hospitals, e.g. "
                        "../shared/data/external-val): masked sets give Dice and per-sequence first-shown and "
                        "coverage through the live path, labelled sets the detection-vs-false-alarm curve")
    p.add_argument("--external-false-alarm-target", type=float, default=0.02, metavar="F",
                   help="with --external and --choose-operating-point: false-alarm rate allowed on each external "
                        "set's polyp-free frames as well (default 0.02)")
    p.add_argument("--persistence", type=persistence, default=None, metavar="K/N",
                   help="with --update-sidecar: store this persistence (alert after K of the last N frames)")
    p.add_argument("--update-sidecar", action="store_true",
                   help="write the chosen operating point (and --threshold) into the .onnx model's sidecar")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the CSV, JSON and PNG files")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="inference threads (0 = runtime default)")
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, in one line and before any work, what the evaluation would fail on later."""
    from polyp_live.arguments import check_dataset, check_output_folder
    from polyp_live.commands import require_extra
    from polyp_live.engines.registry import SUFFIXES
    if args.update_sidecar and not args.model.endswith(".onnx"):
        p.error("--update-sidecar needs an .onnx model (a checkpoint has no sidecar)")
    if args.update_sidecar and not args.choose_operating_point and args.score_threshold is None:
        p.error("--update-sidecar needs --choose-operating-point or --score-threshold")
    for name in ("threshold", "score_threshold"):
        v = getattr(args, name)
        if v is not None and not 0.0 < v < 1.0:
            p.error(f"--{name.replace('_', '-')} must lie in (0, 1), got {v}")
    for name in ("false_alarm_target", "external_false_alarm_target"):
        v = getattr(args, name)
        if not 0.0 <= v <= 1.0:
            p.error(f"--{name.replace('_', '-')} must lie in [0, 1], got {v}")
    if args.external and not Path(args.external).is_dir():
        p.error(f"--external {args.external} is not a folder; give the folder that holds the external sets "
                "(for example ../shared/data/external-val)")
    check_output_folder(p, "--out", args.out)
    if SUFFIXES.get(Path(args.model).suffix.lower()) == "torch":  # an ONNX model needs no extra at all
        require_extra("evaluate", ("torch",), f" --model {printable(args.model)}")
    check_dataset(p, "--data", args.data, "polyps")
    check_dataset(p, "--negatives", args.negatives, "negatives")


@dataclass
class Outcome:
    """What one evaluation found, for the tables and the sidecar."""

    spec: ModelSpec
    threshold: float
    stored: DecisionConfig         # the decision stored in the sidecar
    min_area: float
    score_threshold: float
    result: Evaluation
    summary: dict
    point: OperatingPoint | None = None  # with --choose-operating-point
    frame_summary: dict | None = None
    external: tuple | None = None  # (summary, scores) of --external


def main(argv=None) -> int:
    """``polyp-live evaluate``: score the model, write the reports, print the tables."""
    args = parse_args(argv)
    from rich.markup import escape

    from polyp_live.core.errors import PolypLiveError
    from polyp_live.realtime import terminal

    console = terminal.console()
    try:
        outcome = run_evaluation(args, console)
    except (PolypLiveError, OSError) as exc:
        # On stderr, apart from the tables: a script reading the report never mistakes it for results.
        terminal.console(stderr=True).print(f"polyp-live evaluate: [red]error:[/red] {escape(printable(exc))}",
                                            highlight=False, soft_wrap=True)
        return 2
    print_results(console, args, outcome)
    if args.update_sidecar:
        update_sidecar(console, args, outcome)
    console.print(f"reports in {escape(args.out)}")
    return 0


def run_evaluation(args: argparse.Namespace, console) -> Outcome:
    """Score the polyp split (and the polyp-free and external sets) and write the reports into --out."""
    from rich.progress import Progress

    from polyp_live.engines.registry import load_backend
    from polyp_live.core.decision import DecisionConfig
    from polyp_live.training.evaluation import evaluate, write_reports
    from polyp_live.training.external_validation import (LabelledSet, evaluate_external, find_external_sets,
                                                          score_labelled, write_external_report)
    from polyp_live.training.frame_evaluation import choose_operating_point, score_frames, write_frame_report
    from polyp_live.training.video_evaluation import default_variants

    backend = load_backend(args.model, threads=args.threads)
    spec = backend.spec
    threshold = spec.threshold if args.threshold is None else args.threshold
    stored = DecisionConfig.from_spec(spec)
    min_area = args.min_area_fraction
    if min_area is None:
        min_area = stored.min_area_fraction if "decision" in spec.info else 0.002
    external_sets = find_external_sets(args.external) if args.external else []  # layout errors first
    # Off in a pipe or a log: it draws nothing there but leaves a blank line.
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        frames = point = external = None
        if args.negatives:
            frames = score_frames(backend, args.data, args.negatives, args.split, threshold, min_area, progress)
        if frames is not None and args.choose_operating_point:
            # Polyp-free frames of other hospitals bound the choice too (their polyp frames do not).
            others = {s.name: score_labelled(backend, s, threshold, min_area, progress).free_scores
                      for s in external_sets if isinstance(s, LabelledSet)}
            point = choose_operating_point(frames, args.false_alarm_target, args.split, others,
                                           args.external_false_alarm_target)
        score_threshold = args.score_threshold if args.score_threshold is not None else (
            point.score_threshold if point else stored.score_threshold)
        decision = DecisionConfig(score_threshold, min_area, 1, 1)
        result, kept = evaluate(backend, args.data, args.split, threshold, args.sweep, progress, decision)
        if external_sets:
            live_decision = DecisionConfig(score_threshold, min_area, *(args.persistence or (stored.k, stored.n)))
            external = evaluate_external(backend, external_sets, threshold, live_decision,
                                         default_variants(["confidence"]), progress=progress)
    summary = write_reports(result, kept, args.out, args.model)
    frame_summary = write_frame_report(frames, point, args.out, args.split, args.model, score_threshold) \
        if frames is not None else None
    if external is not None:
        write_external_report(*external, args.out, args.model, score_threshold)
    return Outcome(spec, threshold, stored, min_area, score_threshold, result, summary, point, frame_summary,
                   external)


def print_results(console, args: argparse.Namespace, outcome: Outcome) -> None:
    """The metrics table, the sweep, the frame-level rates and one line per external set."""
    from rich.markup import escape
    from rich.table import Table

    from polyp_live.realtime.terminal import loose_headings
    from polyp_live.core.metrics import METRICS

    result, summary = outcome.result, outcome.summary
    table = Table(title=escape(f"{args.model} on {args.split} ({summary['images']} polyp images, pixel threshold "
                               f"{outcome.threshold:.2f}, score threshold {score_text(outcome.score_threshold)})"))
    table.add_column("metric")
    table.add_column("mean per image", justify="right")
    table.add_column("pooled", justify="right")
    for m in METRICS:
        table.add_row(m, f"{result.mean[m]:.4f}", f"{result.pooled[m]:.4f}")
    console.print(loose_headings(table))
    if result.sweep:
        console.print("pixel threshold sweep (mean Dice): " +
                      ", ".join(f"{t:.2f}: {d:.4f}" for t, d in result.sweep.items()))
        console.print(f"best pixel threshold: {summary['best_threshold']:.2f}")
    if outcome.frame_summary is not None:
        at = outcome.frame_summary["at_operating_point"]
        console.print(f"frames at score threshold {score_text(outcome.score_threshold)}: polyp detected on {at['detected']}/"
                      f"{at['polyp_images']} images ({100 * at['detection_rate']:.1f} %), false alarms on "
                      f"{at['false_alarms']}/{at['polyp_free_frames']} polyp-free frames "
                      f"({100 * at['false_alarm_rate']:.1f} %)")
        if outcome.point is not None:
            console.print(f"chosen operating point on {outcome.point.chosen_on}: score threshold "
                          f"{score_text(outcome.point.score_threshold)} (false-alarm target {args.false_alarm_target:.3f})")
    if outcome.external is not None:
        print_external(console, outcome.external[0])


def update_sidecar(console, args: argparse.Namespace, outcome: Outcome) -> None:
    """Write the operating point (and --threshold, --persistence) into the .onnx model's sidecar."""
    from rich.markup import escape

    from polyp_live.core.spec import ModelSpec

    spec, point, stored = outcome.spec, outcome.point, outcome.stored
    info = dict(spec.info)
    k, n = args.persistence or (stored.k, stored.n)
    info["decision"] = {"score_threshold": outcome.score_threshold, "min_area_fraction": outcome.min_area,
                        "k": k, "n": n,
                        "chosen_on": f"{args.split} splits of {Path(args.data).name} and "
                                     f"{Path(args.negatives).name}" + (
                                         f" and the polyp-free frames of {', '.join(point.chosen_on.split(' + ')[1:])}"
                                         if point and " + " in point.chosen_on else ""),
                        "false_alarm_target": args.false_alarm_target if point else None}
    if point and " + " in point.chosen_on:
        info["decision"]["external_false_alarm_target"] = args.external_false_alarm_target
    new = ModelSpec(**{**asdict(spec), "threshold": outcome.threshold, "info": info})
    path = new.save(args.model)
    console.print(f"operating point written to {escape(str(path))}")


def print_external(console, summary: dict) -> None:
    """One line per external set: what an endoscopist in that hospital would get."""
    from rich.markup import escape
    for name, entry in summary.items():
        if entry["kind"] == "masks":
            still = entry["still"]
            parts = [f"{name}: still Dice {still['dice']:.3f} (polyp shown on {100 * still['shown_rate']:.0f} %)"]
            for variant, live in entry["live"].items():
                parts.append(f"live {variant} ({live['persistence']}): Dice {live['dice']:.3f}, shown "
                             f"{100 * live['shown_rate']:.0f} %, {live['sequences_shown_within_3_frames']}/"
                             f"{live['sequences']} sequences shown within 3 frames, "
                             f"{live['sequences_never_shown']} never")
        else:
            at, two = entry["at_operating_point"], entry["at_2_percent_false_alarms"]
            parts = [f"{name}: curve area {entry['curve_area']:.3f}; at the operating point {at['detected']}/"
                     f"{at['polyp_frames']} polyp frames ({100 * at['detection_rate']:.0f} %), false alarms on "
                     f"{at['false_alarms']}/{at['polyp_free_frames']} ({100 * at['false_alarm_rate']:.1f} %); "
                     f"{100 * two['detection_rate']:.0f} % found at 2 % false alarms"]
            for variant, live in entry["live_polyp_free"].items():
                parts.append(f"live {variant} ({live['persistence']}) on the polyp-free sequences: "
                             f"{100 * live['false_alarm_rate']:.1f} % of frames alarmed")
        console.print(escape("; ".join(parts)), highlight=False, soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
