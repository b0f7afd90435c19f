#!/usr/bin/env python3
"""Calibrate and quantise an ONNX model to INT8 (Q/DQ), or convert it to FP16.

The calibration frames go through the one shared preprocessing. The onnxruntime flavour (unsigned
activations) is the fast CPU model that polyp-live --precision int8 runs; the tensorrt flavour
(symmetric activations) is what TensorRT's explicit quantisation needs (build-engine makes it
itself). The result goes beside a --model in a folder you can write, else (the bundled model) into
the user cache (~/.cache/polyp-live, or $XDG_CACHE_HOME/polyp-live), where polyp-live finds it.

Examples:
    polyp-live quantize --calib ../shared/data/kvasir-seg          # the bundled model, once
    polyp-live --source demo --precision int8                      # then run it
    polyp-live quantize --model MODEL.onnx --calib clip.mp4 --calib-count 300 --flavour tensorrt
    polyp-live quantize --model MODEL.onnx --fp16 --out MODEL.fp16.onnx
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from polyp_live.core.errors import MissingFile
from polyp_live.arguments import add_calibration_options, command_parser, deprecated_alias, refuse_overwriting_inputs
from polyp_live.arguments import printable


def build_parser():
    p = command_parser("quantize", __doc__)
    p.add_argument("--model", default=None, metavar="PATH",
                   help="FP32 ONNX model with its .json sidecar (default: the bundled model)")
    deprecated_alias(p, "--onnx", "--model")
    add_calibration_options(p)
    p.add_argument("--flavour", default="onnxruntime", choices=("onnxruntime", "tensorrt"),
                   help="onnxruntime: the CPU model polyp-live runs (default); tensorrt: symmetric INT8 for "
                        "TensorRT")
    p.add_argument("--method", default="minmax", choices=("minmax", "percentile", "entropy"),
                   help="calibration method (default minmax); an even spread of at most 200 (minmax) or 48 of "
                        "the frames is used")
    p.add_argument("--fp16", action="store_true", help="convert to FP16 instead of quantising")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="model to write, ending in .onnx (default MODEL.int8.onnx, MODEL.trt-int8.onnx or "
                        "MODEL.fp16.onnx, beside MODEL or in the cache)")
    p.add_argument("--force", action="store_true", help="replace an existing --out (and its .json sidecar)")
    return p


def _checked_output(parser, args, model: Path) -> Path:
    """Where the result goes (by default beside the model, or in the cache for the bundled one), refused
    (exit 2) when it would replace the input, lacks .onnx, or exists without --force."""
    from polyp_live.cache import artefact_path
    from polyp_live.core.spec import ModelSpec
    from polyp_live.engines.registry import int8_variant

    if args.fp16:
        out = Path(args.out) if args.out else artefact_path(model, f"{model.stem}.fp16.onnx")
    elif args.flavour == "onnxruntime":
        out = Path(args.out) if args.out else int8_variant(model)
    else:
        out = Path(args.out) if args.out else artefact_path(model, f"{model.stem}.trt-int8.onnx")
    if out.resolve() == model.resolve():
        parser.error(f"--out {out} is the input model; write the result somewhere else")
    if args.out and out.suffix.lower() != ".onnx":
        parser.error(f"--out {out} must end in .onnx (its sidecar is written beside it as .json)")
    if args.out and not args.force and (out.exists() or out.with_suffix(".json").exists()):
        parser.error(f"--out {out} (or its .json sidecar) exists; pass --force to replace it, or choose another path")
    # The sidecar is written beside --out: neither may land on anything this run reads.
    refuse_overwriting_inputs({"--out": out, "--out's sidecar": out.with_suffix(".json"),
                                       "--save-calib": args.save_calib},
                              [model, ModelSpec.sidecar_path(model), args.calib], parser=parser)
    return out


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.fp16 and not args.calib:
        parser.error("INT8 needs --calib SOURCE (a video, an image folder, a dataset folder or a saved .npy set)")

    from polyp_live.cache import file_sha256
    from polyp_live.calibration.frames import calibration_for
    from polyp_live.core.errors import PolypLiveError
    from polyp_live.core.spec import ModelSpec
    from polyp_live.engines.precision import MAX_CALIBRATION_FRAMES, convert_fp16, quantize_int8
    from polyp_live.resources import bundled_model

    model = Path(args.model) if args.model else bundled_model()
    out = None
    try:
        if not model.is_file():
            raise MissingFile(f"model {model} not found; pass --model with an .onnx file")
        spec = ModelSpec.load(model)
        out = _checked_output(parser, args, model)
        out.parent.mkdir(parents=True, exist_ok=True)
        provenance = {"source_model": model.name, "source_sha256": file_sha256(model)}
        if args.fp16:
            convert_fp16(model, out)
            replace(spec, info={**spec.info, **provenance, "precision": "fp16"}).save(out)
            print(f"wrote {out}")
            return 0
        calib, saved = calibration_for(args.calib, spec, args.calib_count, model, args.save_calib)
        if saved:
            print(f"wrote calibration set {saved}")
        used = int(min(len(calib), MAX_CALIBRATION_FRAMES[args.method]))
        quantize_int8(model, out, calib, args.flavour, args.method)
        replace(spec, info={**spec.info, **provenance, "precision": f"int8-{args.flavour}", "calibration": {
            "source": str(args.calib), "frames_drawn": int(len(calib)), "frames_used": used,
            "method": args.method}}).save(out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) calibrated on {used} of {len(calib)} frames "
              f"from {args.calib}")
    except PolypLiveError as exc:
        print(f"polyp-live quantize: error: {printable(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"polyp-live quantize: error: cannot write {exc.filename or out} ({exc.strerror}); "
              "pass --out with a writable path", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
