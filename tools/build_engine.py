#!/usr/bin/env python3
"""Compile an ONNX model into a TensorRT engine (TensorRT 10.x and 11.x, strongly typed).

Precision is carried by the graph: fp16 converts the ONNX to FP16 (sigmoid and reductions stay FP32),
int8 inserts Q/DQ pairs calibrated on --calib frames (symmetric INT8 activations, per-channel
weights). The engine gets a sidecar (ENGINE.json) with the TensorRT version, GPU, compute
capability, precision, input shape and the source ONNX's sha256; polyp-live refuses engines built
for another TensorRT or GPU and prints the rebuild command. Without --out the engine goes where
polyp-live --backend tensorrt looks for it: beside a --model in a folder you can write, else (the
bundled model) in the user cache (~/.cache/polyp-live, or $XDG_CACHE_HOME/polyp-live).

Examples:
    polyp-live build-engine --precision fp16                       # the bundled model, cached
    polyp-live build-engine --model MODEL.onnx --precision fp16 --out model.engine
    polyp-live build-engine --model MODEL.onnx --precision int8 --calib ../shared/data/kvasir-seg \\
        --out model-int8.engine --timing-cache trt.cache --validate val
"""

from __future__ import annotations

import sys
from pathlib import Path

from polyp_live.core.errors import MissingFile
from polyp_live.arguments import (DEFAULT_DATA, add_calibration_options, check_dataset, command_parser,
                                  deprecated_alias, printable)



def parse_args(argv=None):
    p = command_parser("build-engine", __doc__)
    p.add_argument("--model", default=None, metavar="PATH",
                   help="source ONNX model with its .json sidecar (default: the bundled model)")
    deprecated_alias(p, "--onnx", "--model")
    p.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "int8"), help="engine precision (default fp16)")
    add_calibration_options(p, note="int8 only: ")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="engine file to write, its sidecar goes to PATH.json (default: the cached engine "
                        "polyp-live --backend tensorrt uses)")
    p.add_argument("--workspace", type=int, default=0, metavar="MB", help="builder workspace limit in MB (default: TensorRT's)")
    p.add_argument("--timing-cache", default=None, metavar="PATH", help="reuse and update a timing cache to speed up rebuilds")
    p.add_argument("--validate", default=None, metavar="SPLIT",
                   help="after building, compare with ONNX Runtime FP32 on this split of --data; fails when "
                        "they disagree (fp32: max abs diff 1e-3 and every mask Dice 0.99; fp16: mean mask Dice "
                        "0.99; int8: 0.98)")
    p.add_argument("--data", default=DEFAULT_DATA, metavar="DIR",
                   help=f"dataset for --validate (default {DEFAULT_DATA})")
    p.add_argument("--validate-count", type=int, default=50, metavar="N", help="images used by --validate (default 50)")
    args = p.parse_args(argv)
    if args.precision == "int8" and not args.calib:
        p.error("--precision int8 needs --calib SOURCE (a video, an image folder, a dataset or a saved .npy set)")
    if args.validate:  # now, not after a build of several minutes
        check_dataset(p, "--data", args.data, "polyps")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    from polyp_live.core.errors import PolypLiveError
    from polyp_live.core.spec import ModelSpec
    from polyp_live.engines.tensorrt_builder import build_engine

    from rich.markup import escape

    from polyp_live.realtime import terminal
    from polyp_live.resources import bundled_model

    console = terminal.console(stderr=True)
    args.model = args.model or str(bundled_model())
    try:
        import tensorrt  # noqa: F401
    except ImportError:  # the [tensorrt] extra; an absent GPU is a runtime error (exit 1) further on
        from polyp_live.engines.tensorrt_builder import INSTALL_HINT
        console.print(f"[bold red]polyp-live build-engine: error:[/bold red] {escape(INSTALL_HINT)}", highlight=False,
                      soft_wrap=True)
        return 2
    try:
        if not Path(args.model).is_file():
            raise MissingFile(f"model {args.model} not found; pass --model with an .onnx file and its sidecar")
        if args.out is None:
            from polyp_live.engines.cuda_memory import gpu_info
            from polyp_live.engines.tensorrt_builder import cached_engine_path, import_tensorrt
            args.out = str(cached_engine_path(args.model, args.precision, import_tensorrt().__version__, gpu_info()))
        calibration = None
        if args.precision == "int8":
            from polyp_live.calibration.frames import calibration_for
            calibration, saved = calibration_for(args.calib, ModelSpec.load(args.model), args.calib_count,
                                                 args.model, args.save_calib)
            if saved:
                console.print(f"wrote calibration set {escape(str(saved))}", highlight=False, soft_wrap=True)
        meta = build_engine(args.model, args.out, args.precision, calibration, args.workspace, args.timing_cache,
                            log=lambda m: console.print(m, highlight=False))
        console.print(f"wrote {args.out}: TensorRT {meta['tensorrt_version']}, {meta['gpu']} "
                      f"(sm_{meta['compute_capability']}), {meta['precision']}, input {meta['input_shape']}")
        if args.validate:
            return validate(args, console)
    except (PolypLiveError, OSError) as exc:
        console.print(f"[bold red]polyp-live build-engine: error:[/bold red] {escape(printable(exc))}", highlight=False, soft_wrap=True)
        return 1
    return 0


def validate(args, console) -> int:
    """Run --validate images through the engine and ONNX Runtime FP32, each prepared as the live path
    prepares a still (field of view cut out); fail when they disagree under the precision's rule."""
    from polyp_live.core.comparator import compare, rule_for
    from polyp_live.core.datasets import read_pair, scan, split_stems
    from polyp_live.core.segmenter import prepare_still
    from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
    from polyp_live.engines.tensorrt_backend import TensorRTBackend

    samples = scan(args.data)
    stems = split_stems(args.data, args.validate, samples)[: args.validate_count]
    with OnnxRuntimeBackend(args.model) as reference, TensorRTBackend(args.out) as engine:
        inputs = [prepare_still(read_pair(samples[stem])[0], reference.spec)[0] for stem in stems]
        agreement = compare([reference.infer(x) for x in inputs], [engine.infer(x) for x in inputs],
                            reference.spec.threshold)
    rule = rule_for(args.precision)
    console.print(f"validate on {args.validate}: {agreement.line()}")
    broken = rule.failures(agreement)
    if broken:
        console.print(f"[bold red]polyp-live build-engine: error:[/bold red] the engine disagrees with ONNX Runtime "
                      f"FP32: {'; '.join(broken)}; do not deploy {args.out}", soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
