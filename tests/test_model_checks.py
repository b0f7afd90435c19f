"""A model that would see nothing, or that polyp-live would misread, is refused in one line naming it.

Sidecars with a zero or non-numeric std, a one-value mean or a non-numeric stored operating point are
refused when the model loads; ONNX graphs with two outputs, a 3-channel output or an int64 input are
refused at load; a model whose first output is NaN or not a probability stops the run at its first
frame, before anything is recorded as if it had looked.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import TEST_SPEC, decode, make_brightness_model
from polyp_live.core.errors import ModelLoadError
from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
from polyp_live.core.spec import ModelSpec, ModelSpecError
from test_bad_input import error_line, run_cli


def edit_sidecar(model, **changes):
    path = ModelSpec.sidecar_path(model)
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "decision":
            data.setdefault("info", {})["decision"] = value
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("field, value, words", [
    ("std", [0.0, 0.0, 0.0], "std must be three positive numbers"),
    ("std", ["abc", 1, 1], "std must be three finite numbers"),
    ("mean", [0.5], "mean must be three finite numbers"),
    ("mean", [0.5, float("nan"), 0.5], "mean must be three finite numbers"),
    ("threshold", "abc", "threshold must be a number"),
    ("input_height", 0, "input_height must be a positive whole number"),
    ("decision", {"score_threshold": "abc"}, "info.decision.score_threshold must be a number"),
    ("decision", {"k": 3, "n": 2}, "persistence 3/2"),
])
def test_a_bad_sidecar_field_is_named_with_its_file_at_load(capsys, tmp_path, clip, field, value, words):
    model = make_brightness_model(tmp_path / "m.onnx")
    sidecar = edit_sidecar(model, **{field: value})
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(model), "--record", str(tmp_path / "o.mp4"))
    line = error_line(err)
    assert code == 1 and words in line and str(sidecar) in line, line
    assert not (tmp_path / "o.mp4").exists()


def graph_model(path, nodes, inputs, outputs, inits=()):
    model = helper.make_model(helper.make_graph(nodes, "m", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    TEST_SPEC.save(path)
    return path


IMAGE = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])
AXES = helper.make_tensor("axes", TensorProto.INT64, [1], [1])


def test_a_model_with_two_outputs_is_refused_unless_the_sidecar_names_one(tmp_path):
    path = graph_model(tmp_path / "two.onnx",
                       [helper.make_node("ReduceMean", ["image", "axes"], ["prob"], keepdims=1),
                        helper.make_node("Identity", ["image"], ["features"])],
                       [IMAGE], [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 3, 32, 32]),
                                 helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, 32, 32])], [AXES])
    with pytest.raises(ModelLoadError, match="has 2 outputs"):
        OnnxRuntimeBackend(path)
    spec = ModelSpec(**{**TEST_SPEC.__dict__, "info": {"output_name": "prob"}})
    backend = OnnxRuntimeBackend(path, spec=spec)
    batch = np.full((1, 3, 32, 32), 0.25, np.float32)
    assert backend.infer(batch).shape == (32, 32) and np.allclose(backend.infer(batch), 0.25)


def test_a_three_channel_output_and_an_int64_input_are_refused_at_load(tmp_path):
    three = graph_model(tmp_path / "three.onnx", [helper.make_node("Identity", ["image"], ["prob"])], [IMAGE],
                        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 3, 32, 32])])
    with pytest.raises(ModelLoadError, match=r"shape \[1, 3, 32, 32\].*N x 1 x 32 x 32"):
        OnnxRuntimeBackend(three)
    ints = graph_model(tmp_path / "int.onnx",
                       [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
                        helper.make_node("ReduceMean", ["f", "axes"], ["prob"], keepdims=1)],
                       [helper.make_tensor_value_info("image", TensorProto.INT64, [1, 3, 32, 32])],
                       [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, 32, 32])], [AXES])
    with pytest.raises(ModelLoadError, match=r"tensor\(int64\) input"):
        OnnxRuntimeBackend(ints)


@pytest.mark.parametrize("scale, words", [(float("nan"), "NaN or infinite"), (10.0, "not probabilities in [0, 1]")])
def test_a_model_whose_first_output_is_not_a_probability_stops_the_run(capsys, tmp_path, clip, scale, words):
    # prob = mean(image) * scale: NaN everywhere, or values up to 10 from a model without its sigmoid.
    path = graph_model(tmp_path / "bad.onnx",
                       [helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=1),
                        helper.make_node("Mul", ["m", "scale"], ["prob"])],
                       [IMAGE], [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, 32, 32])],
                       [AXES, helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])])
    out = tmp_path / "o.mp4"
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(path), "--record", str(out))
    line = error_line(err)
    assert code == 1 and words in line and "bad.onnx" in line and "stage failed" not in line, line
    # Nothing annotated was recorded as though the model had looked.
    assert not out.exists() or len(decode(out)[0]) == 0


def test_spec_objects_refuse_the_same_values_directly():
    with pytest.raises(ModelSpecError, match="std must be three positive"):
        ModelSpec(input_height=8, input_width=8, std=(0.2, 0.0, 0.2))
    with pytest.raises(ModelSpecError, match="mean must be three finite"):
        ModelSpec(input_height=8, input_width=8, mean=(0.5,))
