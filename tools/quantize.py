#!/usr/bin/env python3
"""Calibrate and quantise an ONNX model to INT8 (Q/DQ), or convert it to FP16.

The calibration frames go through the one shared preprocessing and can be saved for reuse. The
``onnxruntime`` flavour (unsigned activations) is the fast CPU model polyp-live picks with
``--precision int8``; the ``tensorrt`` flavour (symmetric activations) is what TensorRT's explicit
quantisation needs (tools/build_engine.py makes it itself).

Examples:
    python tools/quantize.py --onnx engines/models/polyp-unetpp-lite0-256.onnx --calib ../shared/data/kvasir-seg
    python tools/quantize.py --onnx MODEL.onnx --calib clip.mp4 --calib-count 300 --flavour tensorrt --out m.trt-int8.onnx
    python tools/quantize.py --onnx MODEL.onnx --fp16 --out MODEL.fp16.onnx
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path



def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="FP32 ONNX model with its sidecar")
    p.add_argument("--calib", default=None, help="video, image folder, dataset folder (train split) or saved .npy set")
    p.add_argument("--calib-count", type=int, default=500, help="frames drawn, spread over the source (default 500)")
    p.add_argument("--save-calib", default=None, help="also store the calibration set here (.npy) for reuse")
    p.add_argument("--flavour", default="onnxruntime", choices=("onnxruntime", "tensorrt"))
    p.add_argument("--method", default="minmax", choices=("minmax", "percentile", "entropy"),
                   help="calibration method (default minmax); ONNX Runtime uses an even spread of at most 200 (minmax) or 48 of the frames")
    p.add_argument("--fp16", action="store_true", help="convert to FP16 instead of quantising")
    p.add_argument("--out", default=None, help="output (default MODEL.int8.onnx for the onnxruntime flavour)")
    args = p.parse_args(argv)

    from polyp_live.calibration.frames import CalibrationError, build_calibration_set, load_calibration_set, save_calibration_set
    from polyp_live.calibration.precision import MAX_CALIBRATION_FRAMES, convert_fp16, quantize_int8
    from polyp_live.engines.registry import int8_variant
    from polyp_live.engines.spec import ModelSpec, ModelSpecError

    try:
        spec = ModelSpec.load(args.onnx)
        if args.fp16:
            out = Path(args.out or Path(args.onnx).with_name(Path(args.onnx).stem + ".fp16.onnx"))
            convert_fp16(args.onnx, out)
            replace(spec, info={**spec.info, "precision": "fp16"}).save(out)
            print(f"wrote {out}")
            return 0
        if not args.calib:
            raise ValueError("INT8 needs --calib SOURCE (video, image folder, dataset folder or .npy)")
        calib = load_calibration_set(args.calib) if args.calib.endswith(".npy") else \
            build_calibration_set(args.calib, spec, args.calib_count)
        if args.save_calib:
            save_calibration_set(calib, args.save_calib)
        default = int8_variant(args.onnx) if args.flavour == "onnxruntime" else \
            Path(args.onnx).with_name(Path(args.onnx).stem + ".trt-int8.onnx")
        out = Path(args.out or default)
        quantize_int8(args.onnx, out, calib, args.flavour, args.method)
        replace(spec, info={**spec.info, "precision": f"int8-{args.flavour}", "calibration": {
            "source": str(args.calib), "frames_drawn": int(len(calib)),
            "frames_used": int(min(len(calib), MAX_CALIBRATION_FRAMES[args.method])), "method": args.method}}).save(out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) calibrated on {min(len(calib), MAX_CALIBRATION_FRAMES[args.method])} of {len(calib)} frames from {args.calib}")
    except (CalibrationError, ModelSpecError, FileNotFoundError, ValueError) as exc:
        print(f"quantize: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
