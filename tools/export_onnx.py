#!/usr/bin/env python3
"""Export a training checkpoint to ONNX with its JSON sidecar, and check parity on real images.

The model is written under a partial name and only takes its place once torch and ONNX Runtime
agree on --parity-images images of --data (max abs difference and mask Dice); an existing --out is
replaced only with --force, so the shipped model is never overwritten by accident. Needs the
[train] extra (torch).

Example:
    polyp-live export --model runs/lite0-256/best.pt --out runs/lite0-256/model.onnx \\
        --threshold 0.60 --metrics runs/eval-test/test_summary.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from polyp_live.arguments import DEFAULT_DATA, check_dataset, command_parser, deprecated_alias, printable


def build_parser():
    p = command_parser("export", __doc__)
    p.add_argument("--model", default=None, metavar="PATH", help="checkpoint to export (best.pt from polyp-live train)")
    deprecated_alias(p, "--checkpoint", "--model")
    p.add_argument("--out", required=True, metavar="PATH", help="the .onnx to write (its .json sidecar goes beside it)")
    p.add_argument("--force", action="store_true", help="replace --out when it exists")
    p.add_argument("--threshold", type=float, default=None, metavar="P",
                   help="default pixel threshold stored in the sidecar (default: the threshold of --metrics, "
                        "else 0.5)")
    p.add_argument("--metrics", default=None, metavar="PATH",
                   help="evaluation summary JSON (polyp-live evaluate) to record in the sidecar")
    p.add_argument("--data", default=DEFAULT_DATA, metavar="DIR",
                   help=f"dataset for the parity check (default {DEFAULT_DATA})")
    p.add_argument("--split", default="val", metavar="SPLIT", help="split whose images are used for parity (default val)")
    p.add_argument("--parity-images", type=int, default=16, metavar="N", help="images in the parity check (default 16)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("--model PATH is required: the checkpoint (.pt) to export")
    out, model = Path(args.out), Path(args.model)
    if out.suffix.lower() != ".onnx":
        parser.error(f"--out {out} must end in .onnx")
    if out.exists() and not args.force:
        parser.error(f"--out {out} exists; pass --force to replace it, or choose another path")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        parser.error(f"--threshold {args.threshold:g} is not between 0 and 1")

    def fail(message: str, code: int) -> int:
        print(f"polyp-live export: error: {printable(message)}", file=sys.stderr)
        return code

    from polyp_live.commands import missing_extra
    from polyp_live.core.datasets import DatasetError, read_pair, scan, split_stems
    try:
        from polyp_live.training.export import ParityError, check_parity, export_onnx
    except ImportError as exc:  # torch is the [train] extra
        return fail(missing_extra(exc, "export") or str(exc), 2)
    check_dataset(parser, "--data", args.data, "polyps")  # now, not after the export it would check

    partial = out.with_name(f".{out.stem}.partial.onnx")
    try:
        if not model.is_file():
            return fail(f"checkpoint {model} not found; pass --model with a .pt file from polyp-live train", 2)
        info, threshold = {}, args.threshold
        if args.metrics:
            summary = json.loads(Path(args.metrics).read_text())
            info["metrics"] = {"split": summary["split"], "images": summary["images"],
                               "threshold": summary["threshold"], "mean": summary["mean"], "pooled": summary["pooled"]}
            threshold = summary["threshold"] if threshold is None else threshold
        spec = export_onnx(model, partial, 0.5 if threshold is None else threshold, info)
        samples = scan(args.data)
        stems = split_stems(args.data, args.split, samples)[: args.parity_images]
        parity = check_parity(model, partial, [read_pair(samples[s])[0] for s in stems])
        spec.save(out)
        partial.replace(out)
    except ParityError as exc:
        return fail(str(exc), 1)
    except (DatasetError, FileNotFoundError, KeyError, ValueError) as exc:
        return fail(f"{exc}", 2)
    except OSError as exc:  # a full disk: nothing half-written is left (below), the message says so
        reason = "disk full" if exc.errno == 28 else (exc.strerror or str(exc))
        return fail(f"{reason} while writing {out}; free space and export again (nothing was left behind)", 1)
    finally:  # a failed export leaves nothing behind; a finished one has been renamed already
        partial.unlink(missing_ok=True)
        partial.with_suffix(".json").unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, input 1x3x{spec.input_height}x{spec.input_width}, "
          f"threshold {spec.threshold:g}) and its sidecar")
    print(f"parity with torch on {args.split}: {parity.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
