#!/usr/bin/env python3
"""Does shifting a late mask by the camera's motion help? Per-frame Dice of lagged masks, with and without.

In live mode the mask drawn on frame t was computed on frame t - L (L frames of annotation delay).
This tool runs the Segmenter on every frame of a sequence with ground truth (e.g. from
tools/make_sequence.py), then scores, for each lag L, the mask of frame t - L drawn on frame t as is
and moved by the phase-correlation shift between the two frames (``--motion-shift``), against frame
t's true mask; lag 0 is the exact mask. Deterministic: no timing is involved.

Example:
    python tools/make_sequence.py --data ../shared/data/kvasir-seg --negatives ../shared/data/negatives \\
        --split test --out runs/seq-test
    python tools/motion_shift_eval.py --source runs/seq-test/frames --masks runs/seq-test/masks \\
        --lags 1 3 6 --out runs/motion-shift.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from pathlib import Path


def dice(a, b) -> float:
    """Dice of two masks (nonzero = polyp), by the project's one metric definition."""
    from polyp_live.core.metrics import image_metrics
    return image_metrics(a > 0, b > 0)["dice"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, metavar="PATH", help="image folder (frames named like the masks) or video")
    p.add_argument("--masks", required=True, metavar="DIR", help="true masks (0/255 PNG) named like the frames")
    p.add_argument("--model", default=None, metavar="PATH", help="model file (default: the bundled model)")
    p.add_argument("--lags", type=int, nargs="+", default=[1, 3, 6], metavar="L", help="lags in frames (default 1 3 6)")
    p.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames (default all)")
    p.add_argument("--out", default=None, metavar="PATH", help="also write the results as JSON")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if any(lag < 1 for lag in args.lags):
        p.error("--lags must be at least 1")

    import cv2

    from polyp_live.engines.registry import load_backend
    from polyp_live.core.config import PipelineConfig
    from polyp_live.realtime.motion import Thumb, estimate_shift, shift_detection
    from polyp_live.core.segmenter import Segmenter
    from polyp_live.realtime.sources import open_source
    from polyp_live.resources import bundled_model

    backend = load_backend(args.model or str(bundled_model()))
    segmenter = Segmenter(backend, PipelineConfig())
    source = open_source(args.source)
    source.open()
    history: deque = deque(maxlen=max(args.lags) + 1)
    scores = {"exact": []} | {f"lag{lag}": [] for lag in args.lags} | {f"lag{lag}+shift": [] for lag in args.lags}
    size_changes = {lag: 0 for lag in args.lags}
    frames = 0
    try:
        while not args.max_frames or frames < args.max_frames:
            image = source.read()
            if image is None:
                break
            name = source.last_name or f"{source.last_index:06d}"
            result = segmenter.process(image)
            thumb = Thumb(image, result.roi)
            history.append((result, thumb))
            frames += 1
            truth = cv2.imread(str(Path(args.masks) / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            if truth is None or not truth.any():
                continue  # Dice on polyp frames only
            scores["exact"].append(dice(result.mask, truth))
            for lag in args.lags:
                if len(history) <= lag:
                    continue
                old, old_thumb = history[-1 - lag]
                if old.mask.shape != truth.shape:
                    # A mask of a frame of another size cannot be drawn on this one (the live view
                    # drops it too): a folder of raw stills of mixed sizes has such pairs.
                    size_changes[lag] += 1
                    continue
                scores[f"lag{lag}"].append(dice(old.mask, truth))
                dx, dy = estimate_shift(old_thumb, thumb)  # (0, 0) when the field of view changed
                scores[f"lag{lag}+shift"].append(dice(shift_detection(old.detection, dx, dy).mask, truth))
    finally:
        source.close()
        backend.close()
    report(scores, size_changes, frames, args.out)
    return 0


def report(scores: dict, size_changes: dict, frames: int, out: str | None) -> None:
    """Print the mean Dice per lag (and with the shift), and write them as JSON to ``out``."""
    import numpy as np
    summary = {k: {"mean_dice": float(np.mean(v)) if v else None, "frames": len(v)} for k, v in scores.items()}
    for k, v in summary.items():
        print(f"{k:>12}: mean Dice {v['mean_dice'] if v['mean_dice'] is None else round(v['mean_dice'], 4)} "
              f"over {v['frames']} polyp frames")
    for lag, count in size_changes.items():
        if count:
            print(f"lag {lag}: {count} polyp frames not scored: the frame {lag} back had another size")
    if out:
        Path(out).write_text(json.dumps({"frames": frames, "results": summary,
                                              "skipped_size_change": {f"lag{k}": v for k, v in size_changes.items()}},
                                             indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
