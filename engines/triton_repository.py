"""Write a stock Triton model repository for the ONNX Runtime backend, with polyp-live's wire format.

A site that already runs Triton serves the model without PyTriton: ``DIR/polyp/config.pbtxt`` and
``DIR/polyp/1/model.onnx``. A stock ONNX Runtime model takes whatever its ONNX takes, so the
written ONNX is the project's model with the shared preprocessing prepended as graph nodes
(Cast, channel Gather, Sub, Div, Transpose) and the output squeezed to float16: the same
``image`` uint8 ``[batch, H, W, 3]`` in and ``probability`` float16 ``[batch, H, W]`` out as the
PyTriton server, and the sidecar as the ``polyp_live_spec`` config parameter, so one client
works against either.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polyp_live.core.errors import PolypLiveError, ModelLoadError
from polyp_live.engines.onnx_file import read_onnx
from polyp_live.core.spec import ModelSpec
from polyp_live.engines.triton_wire import (INPUT_NAME, INPUT_TRITON_TYPE, MODEL_NAME, OUTPUT_NAME,
                                            OUTPUT_TRITON_TYPE, SPEC_PARAMETER, spec_to_parameter)

PREFIX = "net_"  # prepended to every name of the original graph so the wire names stay free


class RepositoryError(PolypLiveError, RuntimeError):
    """The repository cannot be written (unsupported model, existing target, missing onnx)."""


def wire_model(model_path: str | Path, spec: ModelSpec):
    """The ONNX model with uint8 NHWC BGR input ``image`` and float16 NxHxW output ``probability``."""
    try:
        import onnx
        from onnx import TensorProto, compose, helper
    except ImportError:
        raise RepositoryError("writing a Triton repository needs the onnx package: pip install onnx") from None
    net = compose.add_prefix(read_onnx(model_path), PREFIX)
    graph = net.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise RepositoryError(f"model {model_path} has {len(graph.input)} inputs and {len(graph.output)} outputs; "
                              "the Triton repository needs one image input and one probability output")
    net_in, net_out = graph.input[0].name, graph.output[0].name
    h, w = spec.input_height, spec.input_width

    def const(name: str, values, dtype=TensorProto.FLOAT, dims=None):
        values = list(np.asarray(values).ravel())
        return helper.make_tensor(name, dtype, dims if dims is not None else [len(values)], values)

    inits = [const("wire_mean", [255.0 * m for m in spec.mean]), const("wire_std", [255.0 * s for s in spec.std]),
             const("wire_squeeze_axes", [1], TensorProto.INT64)]
    pre = [helper.make_node("Cast", [INPUT_NAME], ["wire_f"], to=TensorProto.FLOAT)]
    pixels = "wire_f"
    if spec.color_order == "RGB":  # frames arrive BGR, as OpenCV delivers them
        inits.append(const("wire_bgr_to_rgb", [2, 1, 0], TensorProto.INT64))
        pre.append(helper.make_node("Gather", ["wire_f", "wire_bgr_to_rgb"], ["wire_rgb"], axis=3))
        pixels = "wire_rgb"
    # (x / 255 - mean) / std == (x - 255 mean) / (255 std): the shared normalize, in graph form.
    pre += [helper.make_node("Sub", [pixels, "wire_mean"], ["wire_centred"]),
            helper.make_node("Div", ["wire_centred", "wire_std"], ["wire_nhwc"]),
            helper.make_node("Transpose", ["wire_nhwc"], [net_in], perm=[0, 3, 1, 2])]
    prob = net_out
    post = []
    if spec.output == "logits":
        post.append(helper.make_node("Sigmoid", [net_out], ["wire_sigmoid"]))
        prob = "wire_sigmoid"
    post += [helper.make_node("Squeeze", [prob, "wire_squeeze_axes"], ["wire_squeezed"]),
             helper.make_node("Cast", ["wire_squeezed"], [OUTPUT_NAME], to=TensorProto.FLOAT16)]
    new_graph = helper.make_graph(
        pre + list(graph.node) + post, "polyp_live_wire",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", h, w, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT16, ["batch", h, w])],
        list(graph.initializer) + inits)
    model = helper.make_model(new_graph, opset_imports=list(net.opset_import))
    model.ir_version = net.ir_version
    onnx.checker.check_model(model)
    return model


def config_text(spec: ModelSpec, model_name: str = MODEL_NAME, max_batch: int = 8,
                max_queue_delay_us: int = 2000) -> str:
    """The ``config.pbtxt`` of the ONNX Runtime model (no instance_group: Triton picks GPU or CPU)."""
    h, w = spec.input_height, spec.input_width
    return (f'name: "{model_name}"\n'
            'backend: "onnxruntime"\n'
            f"max_batch_size: {max_batch}\n"
            f'input [ {{ name: "{INPUT_NAME}" data_type: TYPE_{INPUT_TRITON_TYPE} dims: [ {h}, {w}, 3 ] }} ]\n'
            f'output [ {{ name: "{OUTPUT_NAME}" data_type: TYPE_{OUTPUT_TRITON_TYPE} dims: [ {h}, {w} ] }} ]\n'
            f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}\n"
            # json.dumps gives a quoted, escaped string that protobuf's text format reads back as is.
            f'parameters {{ key: "{SPEC_PARAMETER}" value {{ string_value: {json.dumps(spec_to_parameter(spec))} }} }}\n')


def write_repository(model_path: str | Path, out_dir: str | Path, model_name: str = MODEL_NAME,
                     max_batch: int = 8, max_queue_delay_us: int = 2000) -> list[Path]:
    """Write ``out_dir/<model_name>/config.pbtxt`` and ``out_dir/<model_name>/1/model.onnx``.

    Refuses to touch an existing ``out_dir/<model_name>``. Returns the written paths.
    """
    source = Path(model_path)
    if source.suffix.lower() != ".onnx":
        raise RepositoryError(f"--triton-repository needs an .onnx --model, got {source}; TensorRT engines are "
                              "GPU-specific: let the site build model.plan from the ONNX with trtexec")
    if not source.is_file():
        raise ModelLoadError(f"model file {source} not found; pass --model with an existing .onnx file")
    spec = ModelSpec.load(source)
    target = Path(out_dir) / model_name
    if target.exists():
        raise RepositoryError(f"{target} already exists; remove it or choose another --triton-repository DIR")
    model = wire_model(source, spec)  # raises RepositoryError without the onnx package
    import onnx

    (target / "1").mkdir(parents=True)
    onnx_path = target / "1" / "model.onnx"
    onnx.save(model, str(onnx_path))
    config_path = target / "config.pbtxt"
    config_path.write_text(config_text(spec, model_name, max_batch, max_queue_delay_us))
    return [config_path, onnx_path]
