#!/usr/bin/env python3
"""Interpolate the weights of two exported models of one architecture: (1 - alpha) * A + alpha * B.

For a model B fine-tuned from A (WiSE-FT): alpha trades what B gained against what A kept, without
training. The result has no operating point; choose one on val before use. --out is replaced only
with --force.

Example:
    polyp-live interpolate --models runs/r3/model.onnx runs/r6/model.onnx --alpha 0.5 --out runs/mix50/model.onnx
    polyp-live evaluate --model runs/mix50/model.onnx --split val --choose-operating-point --update-sidecar \\
        --out runs/eval-val-mix50
"""

from __future__ import annotations

import sys
from pathlib import Path

from polyp_live.arguments import command_parser
from polyp_live.arguments import printable


def build_parser():
    p = command_parser("interpolate", __doc__)
    p.add_argument("--models", nargs=2, required=True, metavar=("A", "B"), help="two exported .onnx models")
    p.add_argument("--alpha", type=float, required=True, metavar="W", help="weight of B, in [0, 1]")
    p.add_argument("--out", required=True, metavar="PATH", help="the .onnx to write (its sidecar goes beside it)")
    p.add_argument("--force", action="store_true", help="replace --out when it exists")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        parser.error(f"--out {out} must end in .onnx")
    if any(Path(m).resolve() == out.resolve() for m in args.models):
        parser.error(f"--out {out} is one of the inputs; write the result elsewhere")
    if out.exists() and not args.force:
        parser.error(f"--out {out} exists; pass --force to replace it, or choose another path")
    for model in args.models:
        if not Path(model).is_file():
            parser.error(f"model {model} not found; pass two exported .onnx files")

    from polyp_live.core.errors import PolypLiveError
    from polyp_live.training.interpolate import interpolate_onnx
    try:
        interpolate_onnx(args.models[0], args.models[1], args.alpha, out)
    except PolypLiveError as exc:
        print(f"polyp-live interpolate: error: {printable(exc)}", file=sys.stderr)
        return 2
    print(f"wrote {out} = {1 - args.alpha:g} x {args.models[0]} + {args.alpha:g} x {args.models[1]}; "
          "choose its operating point on val before use")
    return 0


if __name__ == "__main__":
    sys.exit(main())
