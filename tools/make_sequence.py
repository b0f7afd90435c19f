#!/usr/bin/env python3
"""Render a dataset split as a synthetic colonoscopy sequence with ground-truth masks.

Each still is held for a number of frames with smooth camera motion inside an endoscope-style field
of view; polyp and polyp-free stills come in a seeded random order. Writes OUT/frames/*.jpg,
OUT/masks/*.png (named alike) and OUT/sequence.json, ready for tools/evaluate_video.py and
polyp-live --source OUT/frames.

Example:
    python tools/make_sequence.py --data ../shared/data/kvasir-seg --negatives ../shared/data/negatives \\
        --split test --out runs/seq-test
"""

from __future__ import annotations

import sys
from polyp_live.arguments import printable


def main(argv=None) -> int:
    from polyp_live.arguments import check_dataset, command_parser
    p = command_parser("make-sequence", __doc__)
    p.add_argument("--data", default="", metavar="DIR", help="polyp dataset (images/, masks/, splits/)")
    p.add_argument("--negatives", default="", metavar="DIR", help="polyp-free frames (images/, splits/)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default test)")
    p.add_argument("--frames-per-image", type=int, default=15, metavar="N", help="frames per still (default 15)")
    p.add_argument("--size", default="720x576", metavar="WxH", help="frame size (default 720x576)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="use only the first N stills of the order")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="order and motion (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (must not exist)")
    args = p.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        assert width >= 64 and height >= 64
    except (ValueError, AssertionError):
        p.error(f"--size must be WxH with both at least 64, got {args.size!r}")
    if args.frames_per_image < 1:
        p.error("--frames-per-image must be at least 1")
    if args.limit < 0:
        p.error(f"--limit must be 0 (every still) or more, got {args.limit}")
    if not args.data and not args.negatives:
        p.error("give --data, --negatives or both")
    check_dataset(p, "--data", args.data, "polyps")
    check_dataset(p, "--negatives", args.negatives, "negatives")
    from pathlib import Path
    if Path(args.out).exists():
        print(f"polyp-live make-sequence: error: {args.out} exists; choose a new folder (nothing is overwritten)", file=sys.stderr)
        return 2

    from polyp_live.core.datasets import DatasetError
    from polyp_live.training.sequences import SequenceSpec, write_sequence
    import shutil
    out = Path(args.out)
    # Written under a hidden name and renamed when whole: a failure leaves no half sequence behind
    # (one without sequence.json, which a rerun would then refuse to replace).
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        meta = write_sequence(partial, SequenceSpec(width, height, args.frames_per_image, args.seed),
                              args.data or None, args.negatives or None, args.split, args.limit)
    except BaseException as exc:  # an interrupt too: nothing half written stays
        shutil.rmtree(partial, ignore_errors=True)
        if not isinstance(exc, (DatasetError, ValueError)):
            raise
        print(f"polyp-live make-sequence: error: {printable(exc)}", file=sys.stderr)
        return 2
    partial.rename(out)
    kinds = [s["kind"] for s in meta["stills"]]
    print(f"{meta['frames']} frames from {kinds.count('polyp')} polyp and {kinds.count('polyp-free')} polyp-free "
          f"stills in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
