"""Option types and the checks ``polyp-live`` makes before its first frame.

Every option value is checked when the command line is parsed (argparse exits 2 with one line);
what needs the model or the source (an output that would overwrite an input, a switch-off
threshold above the model's switch-on one) is checked right after loading them, still before the
first frame, and raises :class:`UsageError` (also exit 2).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from polyp_live.core.errors import OutputError, UsageError


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def unit(text: str) -> float:
    """A probability strictly between 0 and 1 (thresholds)."""
    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def fraction(text: str) -> float:
    """At least 0 and below 1 (smoothing strength: 1 would freeze the first frame forever)."""
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1): 0 follows each frame, values towards 1 keep the past")
    return value


def non_negative(text: str) -> float:
    """A finite number >= 0 (frame rates, seconds)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def positive(text: str) -> float:
    """A finite number > 0 (timeouts that must allow some time)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def whole_number(text: str) -> int:
    """Any whole number; the named checks below add the range."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (counts, pixels, threads)."""
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (batch sizes)."""
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def roi(text: str) -> str:
    """``auto``, ``full`` or ``x,y,w,h`` with x, y >= 0 and w, h > 0 (kept as text for the config)."""
    from polyp_live.core.roi import parse_roi  # noqa: PLC0415 - OpenCV; parsing runs after the signal guard
    try:
        parse_roi(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, full or x,y,w,h in pixels with w and h above 0") from None
    return text


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that involve two options; ``parser.error`` exits 2 with one line."""
    if args.threshold is not None and args.threshold_low is not None and args.threshold_low > args.threshold:
        parser.error(f"--threshold-low {args.threshold_low:g} must not be above --threshold {args.threshold:g}")
    if args.precision == "fp16":
        from polyp_live.engines.registry import backend_for  # noqa: PLC0415
        try:
            backend = backend_for(args.model, args.backend)
        except Exception:  # noqa: BLE001 - an unknown suffix is reported when the model loads
            backend = None
        if backend == "onnxruntime":
            parser.error("--precision fp16 is for TensorRT; ONNX Runtime runs fp32 (default) or int8")


def check_threshold_low(threshold_low: float | None, threshold: float) -> None:
    """The switch-off threshold must lie below the switch-on one (the model's when not given)."""
    if threshold_low is not None and threshold_low > threshold:
        raise UsageError(f"--threshold-low {threshold_low:g} must not be above the switch-on threshold {threshold:g} "
                         "(the model's; pass a lower --threshold-low or a higher --threshold)")


def cap_threads(threads: int) -> tuple[int, str | None]:
    """``threads`` limited to the CPU cores this process may use, with a warning when it was more."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads > cores:
        return cores, f"--threads {threads} is more than the {cores} CPU cores available; using {cores}"
    return threads, None


def check_stats_path(value: str, option: str = "--stats-json", example: str = "stats.json") -> None:
    """Refuse an output file path (``--stats-json``, ``--report``) that is a folder (exit 2) or cannot be
    written (exit 1)."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise UsageError(f"{option} {value} is a folder; give a file name such as {path / example}")
    existed = path.exists() or path.is_symlink()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as exc:
        raise OutputError(f"{option} {value} cannot be written ({exc.strerror}); choose another path") from None
    if not existed:
        path.unlink(missing_ok=True)


def persistence(text: str) -> tuple[int, int]:
    """``K/N`` -> (k, n) with 1 <= K <= N: the presence decision's persistence (``--persistence``)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N (e.g. 2/3: alert after 2 of the last 3 frames)") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r} needs 1 <= K <= N")
    return k, n
