"""Precision carried by the ONNX graph: FP16 conversion and INT8 Q/DQ quantisation.

TensorRT 11 removed the FP16/INT8 builder flags and the INT8 calibrators; a strongly typed network
takes its precision from the graph. The same graphs run in ONNX Runtime, which is how they are
tested here without a GPU.

Two INT8 flavours, because the runtimes want different ones:
- ``tensorrt``: symmetric signed INT8 activations and per-channel INT8 weights (explicit
  quantisation in TensorRT requires symmetric scales);
- ``onnxruntime``: unsigned 8-bit activations with per-channel INT8 weights, which reach ONNX
  Runtime's fast integer kernels on x86 CPUs.
The sigmoid head stays in higher precision in every flavour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyp_live.core.errors import InvalidValue
from polyp_live.engines.onnx_file import read_onnx

FLAVOURS = ("tensorrt", "onnxruntime")
# Ops whose FP16 versions overflow or lose the decision boundary: the sigmoid head and reductions.
FP32_OPS = ["Sigmoid", "ReduceMean", "GlobalAveragePool", "Softmax"]
# Bumped when the graphs made here change what an engine computes, so that a cached engine built from
# an older graph is rebuilt. 2: the FP16 graph's probability leaves it from the FP32 sigmoid.
GRAPH_REVISION = 2


def _sigmoid_nodes(model) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == "Sigmoid"]


def _head_nodes(model) -> list[str]:
    """The sigmoid and the node feeding it: the head stays out of INT8."""
    producers = {out: n for n in model.graph.node for out in n.output}
    names = []
    for node in model.graph.node:
        if node.op_type == "Sigmoid":
            names.append(node.name)
            feeder = producers.get(node.input[0])
            if feeder is not None:
                names.append(feeder.name)
    return names


def _name_nodes(model) -> None:
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` so every node follows its producers (TensorRT's parser needs that)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("graph has a cycle or an undefined input: " + pending[0].name)
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def drop_round_trip_casts(graph) -> None:
    """Remove FP32 -> FP16 -> FP32 cast pairs after the ops kept in FP32.

    The converter casts a kept op's FP32 output down to FP16 and, for a graph output, straight back up:
    the sigmoid's probability would leave the graph rounded to FP16, whose steps below 1 are 0.0005,
    so every score threshold between 0.999 and 1 would read the same three values. Each tensor cast
    round trip is replaced by the FP32 tensor itself, under the outer cast's name (so the graph output
    keeps its name); a down-cast that still has FP16 consumers stays for them.
    """
    from onnx import TensorProto

    def cast_to(node):
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    producers = {out: n for n in graph.node for out in n.output}
    for up in [n for n in graph.node if cast_to(n) == TensorProto.FLOAT]:
        down = producers.get(up.input[0])
        source = producers.get(down.input[0]) if down is not None and cast_to(down) == TensorProto.FLOAT16 else None
        if source is None or source.op_type not in FP32_OPS:
            continue
        old, new = down.input[0], up.output[0]
        graph.node.remove(up)
        for node in graph.node:  # the FP32 tensor takes the up-cast's name everywhere it is read
            node.input[:] = [new if name == old else name for name in node.input]
            node.output[:] = [new if name == old else name for name in node.output]
        if not any(down.output[0] in n.input for n in graph.node) and down.output[0] not in {o.name for o in graph.output}:
            graph.node.remove(down)
        for info in graph.value_info:
            if info.name == old:
                info.name = new
        producers = {out: n for n in graph.node for out in n.output}


def convert_fp16(onnx_in: str | Path, onnx_out: str | Path) -> Path:
    """FP16 graph with FP32 inputs and outputs, keeping :data:`FP32_OPS` in FP32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = read_onnx(onnx_in)
    _name_nodes(model)
    fp16 = convert_float_to_float16(model, keep_io_types=True, op_block_list=FP32_OPS)
    drop_round_trip_casts(fp16.graph)
    topological_sort(fp16.graph)  # the converter appends its input casts at the end
    onnx.checker.check_model(fp16)
    onnx.save(fp16, str(onnx_out))
    return Path(onnx_out)


class _Reader:
    """ONNX Runtime calibration reader over an in-memory calibration set."""

    def __init__(self, input_name: str, batch: np.ndarray):
        self.input_name = input_name
        self.items = iter(batch[i:i + 1] for i in range(len(batch)))

    def get_next(self):
        item = next(self.items, None)
        return None if item is None else {self.input_name: item}

    def rewind(self):  # newer ORT versions may call it
        pass


# Frames ONNX Runtime calibrates on in one pass: min-max holds ~25 MB of activations per 256x256
# frame of this UNet++, the histogram methods several times more.
MAX_CALIBRATION_FRAMES = {"minmax": 200, "percentile": 48, "entropy": 48}


# 7-bit weights. On x86 CPUs without VNNI (AVX2 only, e.g. this project's AMD EPYC CI machine) ONNX
# Runtime multiplies u8 x s8 with VPMADDUBSW, whose 16-bit sums saturate: the INT8 model's masks agreed
# with FP32 at Dice 0.97 (onnxruntime flavour) and 0.81 (tensorrt flavour run on ONNX Runtime) there,
# against >= 0.98 on a VNNI machine. ONNX Runtime's documented remedy is the reduced range.
REDUCE_RANGE = True


def quantize_int8(onnx_in: str | Path, onnx_out: str | Path, calibration: np.ndarray, flavour: str = "tensorrt",
                  method: str = "minmax") -> Path:
    """Write a Q/DQ INT8 model calibrated on ``calibration`` (N x 3 x H x W, shared preprocessing).

    ONNX Runtime's calibrators keep every activation of every frame in memory, and its chunked
    min-max option (``CalibMaxIntermediateOutputs``) discards all but the last chunk in
    onnxruntime 1.31. So an even spread of at most ``MAX_CALIBRATION_FRAMES[method]`` frames of the
    calibration set is used, in one pass.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if flavour not in FLAVOURS:
        raise InvalidValue(f"unknown INT8 flavour {flavour!r}; choose one of: {', '.join(FLAVOURS)}")
    onnx_out = Path(onnx_out)
    prepared = onnx_out.with_name(onnx_out.stem + ".prep.onnx")
    model = read_onnx(onnx_in)
    _name_nodes(model)
    input_name = model.graph.input[0].name
    partial = onnx_out.with_name(f".{onnx_out.name}.partial")
    try:
        onnx.save(model, str(prepared))  # inside: a full disk here leaves no truncated .prep.onnx
        quant_pre_process(str(prepared), str(prepared), skip_symbolic_shape=True)
        methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                   "entropy": CalibrationMethod.Entropy}
        extra = {"ActivationSymmetric": flavour == "tensorrt", "WeightSymmetric": True}
        limit = MAX_CALIBRATION_FRAMES[method]
        if len(calibration) > limit:
            calibration = calibration[np.linspace(0, len(calibration) - 1, limit).astype(int)]
        if method == "percentile":
            extra["CalibPercentile"] = 99.99
        quantize_static(
            str(prepared), str(partial), _Reader(input_name, calibration),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=REDUCE_RANGE,
            activation_type=QuantType.QInt8 if flavour == "tensorrt" else QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=_head_nodes(onnx.load(str(prepared))),
            calibrate_method=methods[method], extra_options=extra)
        partial.replace(onnx_out)  # whole, or not there at all
    finally:  # also on failure: no half-made files are left next to the model
        prepared.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
        for leftover in onnx_out.parent.glob("augmented_model*.onnx"):
            leftover.unlink(missing_ok=True)
    return onnx_out
