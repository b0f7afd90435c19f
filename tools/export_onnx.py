#!/usr/bin/env python3
"""Export a training checkpoint to ONNX with its JSON sidecar, and check parity on real images.

Example:
    python tools/export_onnx.py --checkpoint runs/lite0-256/best.pt \
        --out engines/models/polyp-unetpp-lite0-256.onnx --threshold 0.5 \
        --metrics runs/eval-test/test_summary.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path



def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="best.pt from tools/train.py")
    p.add_argument("--out", required=True, help="the .onnx to write (the sidecar .json goes next to it)")
    p.add_argument("--threshold", type=float, default=0.5, help="default decision threshold stored in the sidecar")
    p.add_argument("--data", default="../shared/data/kvasir-seg", help="dataset for the parity check")
    p.add_argument("--split", default="val", help="split whose images are used for parity (default val)")
    p.add_argument("--parity-images", type=int, default=16)
    p.add_argument("--metrics", default=None, help="evaluation summary JSON to record in the sidecar")
    args = p.parse_args(argv)

    from rich.console import Console

    from polyp_live.training.dataset import DatasetError, read_pair, scan, split_stems
    from polyp_live.training.export import ParityError, check_parity, export_onnx

    console = Console()
    try:
        info = {}
        if args.metrics:
            summary = json.loads(Path(args.metrics).read_text())
            info["metrics"] = {"split": summary["split"], "images": summary["images"],
                               "threshold": summary["threshold"], "mean": summary["mean"], "pooled": summary["pooled"]}
        spec = export_onnx(args.checkpoint, args.out, args.threshold, info)
        samples = scan(args.data)
        stems = split_stems(args.data, args.split, samples)[: args.parity_images]
        images = [read_pair(samples[s])[0] for s in stems]
        parity = check_parity(args.checkpoint, args.out, images)
    except ParityError as exc:
        console.print(f"[red]error:[/red] {exc}")
        Path(args.out).unlink(missing_ok=True)
        return 1
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    size = Path(args.out).stat().st_size / 1e6
    console.print(f"wrote {args.out} ({size:.1f} MB, input 1x3x{spec.input_height}x{spec.input_width}) and its sidecar")
    console.print(f"parity on {parity['images']} {args.split} images: max abs diff {parity['max_abs_diff']:.2e}, "
                  f"mask Dice min {parity['min_mask_dice']:.4f} mean {parity['mean_mask_dice']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
