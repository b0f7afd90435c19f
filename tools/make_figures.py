#!/usr/bin/env python3
"""Make the documentation figures (PNG, each under 300 kB) from a model, a dataset and a training run.

  overlay  one frame of the demo clip (or any video) as polyp-live draws it: the frames before it go
           through the same Segmenter as the live path (field of view, smoothing, decision), so the
           outline is the live one; the HUD is left out, its timings belong to the machine.
  grid     real test images of the polyp set and of the polyp-free set, evenly spread over the split
           (not picked by score), with the model's outline and the true one, and a legend.
  curves   training curves from a run's log.csv (loss, validation Dice, false alarms, learning rate).

Examples (from the repository root; figures go to docs/):
    polyp-live make-figures overlay --out docs/overlay.png
    polyp-live make-figures grid --model engines/models/polyp-unetpp-lite0-256.onnx \\
        --data ../shared/data/kvasir-seg --negatives ../shared/data/negatives --out docs/examples.png
    polyp-live make-figures curves --log runs/lite0-256/log.csv --out docs/training-curves.png
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from polyp_live.core.errors import PolypLiveError
from polyp_live.arguments import (DEFAULT_DATA, DEFAULT_NEGATIVES, check_dataset, check_output_file, command_parser,
                                  printable, refuse_overwriting_inputs)

MAX_BYTES = 300_000
TRUTH = (255, 0, 255)        # BGR magenta: against the live overlay's green, readable with red-green blindness
PREDICTION = (0, 255, 0)     # BGR green: the live overlay's colour (RenderConfig.color)


class FigureError(PolypLiveError, ValueError):
    """An input of a figure is missing or unusable; the message names it."""


# --- writing ----------------------------------------------------------------------------------------

def save_png(image_bgr: np.ndarray, path: str | Path, max_bytes: int = MAX_BYTES) -> int:
    """Write ``image_bgr`` as a PNG under ``max_bytes``: full colour if it fits, else an adaptive
    256-colour palette, else smaller. Returns the size written."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1]))
    while True:
        for candidate in (image, image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)):
            buffer = io.BytesIO()
            candidate.save(buffer, "PNG", optimize=True)
            if buffer.tell() <= max_bytes:
                tmp = path.with_name(f".{path.name}.partial")
                tmp.write_bytes(buffer.getvalue())
                tmp.replace(path)
                return buffer.tell()
        image = image.resize((image.width * 4 // 5, image.height * 4 // 5), Image.Resampling.LANCZOS)


def _label(image: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5) -> None:
    """White text with a dark outline, legible on any tissue colour."""
    import cv2
    for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def _outline(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], thickness: int = 2) -> None:
    import cv2
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(image, contours, -1, colour, thickness, cv2.LINE_AA)


# --- overlay: one demo frame through the live Segmenter ------------------------------------------

def overlay_frame(model: str, source: str, frame_index: int, width: int) -> tuple[np.ndarray, str]:
    """Frame ``frame_index`` of ``source`` with the live outline, after the Segmenter saw every
    earlier frame (so smoothing and the decision's persistence are as live). Returns (image, note)."""
    import cv2

    from polyp_live.engines.registry import load_backend
    from polyp_live.core.config import PipelineConfig, RenderConfig
    from polyp_live.realtime.render import overlay
    from polyp_live.core.segmenter import Segmenter

    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise FigureError(f"cannot open video {source}; pass --source with a video file")
    backend = load_backend(model)
    try:
        segmenter = Segmenter(backend, PipelineConfig())
        index, frame, result = -1, None, None
        while index < frame_index:
            ok, frame = capture.read()
            if not ok:
                raise FigureError(f"{source} has only {index + 1} frames; choose --frame below that")
            index += 1
            result = segmenter.process(frame)
    finally:
        capture.release()
        backend.close()
    image = overlay(frame, result.detection, result.prob, result.roi, RenderConfig())
    if width and image.shape[1] > width:
        image = cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])), interpolation=cv2.INTER_AREA)
    note = f"frame {frame_index}: {'polyp outlined' if result.present else 'no polyp reported'}"
    return image, note


# --- grid: real test images, predicted and true outlines ------------------------------------------

def _evenly(items: list, count: int) -> list:
    if count >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count).round()]


def grid_figure(model: str, data: str, negatives: str | None, split: str, polyps: int, free: int,
                tile: int = 224, per_row: int = 4) -> np.ndarray:
    """Tiles of ``polyps`` images of ``data`` and ``free`` polyp-free frames of ``negatives``: the model's
    outline (what the live path draws on a still image) in green, the true one in magenta."""
    import cv2

    from polyp_live.engines.registry import load_backend
    from polyp_live.core.decision import DecisionConfig
    from polyp_live.core.datasets import DatasetError, read_pair, scan, split_stems
    from polyp_live.training.evaluation import still_probability
    from polyp_live.training.frame_evaluation import still_segmenter
    from polyp_live.core.metrics import image_metrics

    try:
        picks = [(s, samples[s]) for samples in [scan(data)] for s in _evenly(split_stems(data, split, samples), polyps)]
        if negatives and free:
            neg = scan(negatives, negatives=True)
            picks += [(s, neg[s]) for s in _evenly(split_stems(negatives, split, neg), free)]
    except DatasetError as exc:
        raise FigureError(str(exc)) from None
    backend = load_backend(model)
    tiles = []
    try:
        spec = backend.spec
        decision = DecisionConfig.from_spec(spec)
        segmenter = still_segmenter(backend)
        for stem, sample in picks:
            image, truth = read_pair(sample)
            h, w = image.shape[:2]
            predicted = still_probability(segmenter, image, spec.threshold, decision) >= spec.threshold
            scale = tile / max(h, w)
            size = (round(w * scale), round(h * scale))
            canvas = np.zeros((tile, tile, 3), np.uint8)
            x0, y0 = (tile - size[0]) // 2, (tile - size[1]) // 2
            view = canvas[y0:y0 + size[1], x0:x0 + size[0]]
            view[:] = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            for mask, colour in ((truth, TRUTH), (predicted, PREDICTION)):
                _outline(view, cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST), colour)
            if sample.mask is None:
                text = "polyp-free: " + ("false alarm" if predicted.any() else "no outline")
            else:
                text = f"Dice {image_metrics(predicted, truth)['dice']:.2f}"
            _label(canvas, text, (6, 18))
            tiles.append(canvas)
    finally:
        backend.close()
    while len(tiles) % per_row:
        tiles.append(np.full((tile, tile, 3), 255, np.uint8))
    rows = [np.hstack(tiles[i:i + per_row]) for i in range(0, len(tiles), per_row)]
    grid = np.vstack(rows)
    return np.vstack([grid, _legend(grid.shape[1], spec.threshold, split, polyps, free if negatives else 0)])


def _legend(width: int, threshold: float, split: str, polyps: int, free: int) -> np.ndarray:
    import cv2
    strip = np.full((52, width, 3), 255, np.uint8)
    font, dark = cv2.FONT_HERSHEY_SIMPLEX, (40, 40, 40)
    cv2.line(strip, (10, 16), (40, 16), PREDICTION, 3, cv2.LINE_AA)
    cv2.putText(strip, f"model (threshold {threshold:.2f}, presence decision)", (48, 21), font, 0.5, dark, 1, cv2.LINE_AA)
    cv2.line(strip, (10, 38), (40, 38), TRUTH, 3, cv2.LINE_AA)
    cv2.putText(strip, "ground truth", (48, 43), font, 0.5, dark, 1, cv2.LINE_AA)
    what = f"{split} split: {polyps} polyp images" + (f", {free} polyp-free frames" if free else "") + ", evenly spaced"
    cv2.putText(strip, what, (max(320, width - 8 - cv2.getTextSize(what, font, 0.5, 1)[0][0]), 43), font, 0.5, dark, 1,
                cv2.LINE_AA)
    return strip


# --- curves: a run's log.csv --------------------------------------------------------------------

def read_log(path: str | Path) -> dict[str, list[float]]:
    """Columns of a training log.csv as floats (a run folder means its log.csv)."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.csv"
    if not path.is_file():
        raise FigureError(f"training log {path} not found; pass --log with a run folder or its log.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "epoch" not in rows[0]:
        raise FigureError(f"{path} has no epochs (expected a header with epoch, loss, val_dice, ...)")
    columns = {}
    for name in rows[0]:
        try:
            columns[name] = [float(r[name]) for r in rows]
        except (TypeError, ValueError):
            pass  # a text column
    return columns


def curves_figure(log: dict[str, list[float]], title: str) -> np.ndarray:
    """Loss (left axis) and validation metrics (right panel) per epoch, as a BGR image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = log["epoch"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    from matplotlib.ticker import MaxNLocator

    lines = left.plot(epochs, log["loss"], color="#1f77b4", marker="o", ms=3, label="training loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    if "lr" in log:
        lr = left.twinx()
        lines += lr.plot(epochs, log["lr"], color="#999999", ls="--", lw=1, label="learning rate (right axis)")
        lr.set_ylabel("learning rate", color="#777777")
        lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    left.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_title("training")
    names = {"val_dice": "validation Dice", "val_false_alarm": "false-alarm rate (polyp-free val)",
             "val_score": "Dice - false alarms (selects best.pt)"}
    for name, label in names.items():
        if name in log:
            right.plot(epochs, log[name], marker="o", ms=3, label=label)
    if "val_dice" in log:
        best = int(np.argmax(log["val_score"] if "val_score" in log else log["val_dice"]))
        right.axvline(epochs[best], color="#999999", ls=":", lw=1)
        right.annotate(f"best.pt: epoch {epochs[best]:g}", (epochs[best], 0.02), fontsize=8, color="#555555",
                       xytext=(3, 0), textcoords="offset points")
    right.set_ylim(0, 1)
    right.set_xlabel("epoch")
    right.legend(loc="center right", fontsize=8)
    right.set_title("validation")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    import cv2
    return cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_COLOR)


# --- command line -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = command_parser("make-figures", __doc__)
    figures = p.add_subparsers(dest="figure", metavar="FIGURE", required=True)

    def figure(name: str, summary: str, out: str) -> argparse.ArgumentParser:
        sub = figures.add_parser(name, help=summary, description=summary)
        sub.add_argument("--out", default=out, metavar="PATH", help=f"PNG to write (default {out})")
        return sub

    ov = figure("overlay", "one demo frame as polyp-live draws it (the README's top picture)", "docs/overlay.png")
    ov.add_argument("--model", default=None, metavar="PATH", help="model file (default: the bundled model)")
    ov.add_argument("--source", default="demo", metavar="PATH", help="video file, or demo for the bundled clip (default)")
    ov.add_argument("--frame", type=int, default=75, metavar="N", help="frame index to show (default 75)")
    ov.add_argument("--width", type=int, default=720, metavar="N", help="picture width in pixels (default 720)")
    gr = figure("grid", "real test images with the model's and the true outlines", "docs/examples.png")
    gr.add_argument("--model", default=None, metavar="PATH", help="model file (default: the bundled model)")
    gr.add_argument("--data", default=DEFAULT_DATA, metavar="DIR",
                    help=f"polyp dataset (images/, masks/, splits/); default {DEFAULT_DATA}")
    gr.add_argument("--negatives", default=DEFAULT_NEGATIVES, metavar="DIR",
                    help=f"polyp-free frames (images/, splits/); '' for none (default {DEFAULT_NEGATIVES})")
    gr.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default test)")
    gr.add_argument("--polyps", type=int, default=8, metavar="N", help="polyp images (default 8)")
    gr.add_argument("--free", type=int, default=4, metavar="N", help="polyp-free frames (default 4)")
    cu = figure("curves", "training curves from a run's log.csv", "docs/training-curves.png")
    cu.add_argument("--log", required=True, metavar="PATH", help="a run folder of polyp-live train, or its log.csv")
    cu.add_argument("--title", default=None, metavar="TEXT", help="figure title (default: the run folder's name)")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, before any frame is read, an output over an input, a missing dataset or a missing extra."""
    from polyp_live.commands import require_extra
    from polyp_live.engines.registry import SUFFIXES
    from polyp_live.resources import bundled_model, demo_clip

    source = getattr(args, "source", None)
    read = [demo_clip() if source == "demo" else source, getattr(args, "model", None) or bundled_model(),
            getattr(args, "data", None), getattr(args, "negatives", None), getattr(args, "log", None)]
    refuse_overwriting_inputs({"--out": args.out}, read, parser=parser)
    check_output_file(parser, "--out", args.out, (".png",))
    # Pillow writes every figure, matplotlib draws the curves: both come with the [train] extra.
    require_extra("make-figures", ("PIL", "matplotlib") if args.figure == "curves" else ("PIL",), f" {args.figure}")
    model = getattr(args, "model", None)
    if model and SUFFIXES.get(Path(model).suffix.lower()) == "torch":
        require_extra("make-figures", ("torch",), f" --model {printable(model)}")
    if args.figure == "grid":
        check_dataset(parser, "--data", args.data, "polyps")
        check_dataset(parser, "--negatives", args.negatives, "negatives")


def main(argv=None) -> int:
    """``polyp-live make-figures FIGURE``: draw one documentation figure and write it as a PNG."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    from polyp_live.resources import bundled_model, demo_clip

    try:
        model = str(getattr(args, "model", None) or bundled_model())
        note = ""
        if args.figure == "overlay":
            source = str(demo_clip()) if args.source == "demo" else args.source
            image, note = overlay_frame(model, source, args.frame, args.width)
        elif args.figure == "grid":
            image = grid_figure(model, args.data, args.negatives or None, args.split, args.polyps, args.free)
        else:
            log_path = Path(args.log)
            title = args.title or f"training run {(log_path if log_path.is_dir() else log_path.parent).name}"
            image = curves_figure(read_log(log_path), title)
        size = save_png(image, args.out)
    except (PolypLiveError, OSError) as exc:
        print(f"polyp-live make-figures: error: {printable(exc)}", file=sys.stderr)
        return 1
    except ImportError as exc:  # matplotlib and Pillow come with the [train] extra
        from polyp_live.commands import missing_extra
        hint = missing_extra(exc, "make-figures")
        if hint is None:
            raise
        print(f"polyp-live make-figures: error: {hint}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({size / 1000:.0f} kB){': ' + note if note else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
