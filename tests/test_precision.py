"""FP16 conversion, INT8 Q/DQ quantisation and calibration sampling on a small conv model (CPU only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from conftest import TEST_SPEC, moving_disc_frames, write_video  # noqa: E402
from polyp_live.calibration.frames import build_calibration_set, sample_frames  # noqa: E402
from polyp_live.engines.precision import convert_fp16, quantize_int8  # noqa: E402
from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from polyp_live.core.preprocess import preprocess  # noqa: E402
from polyp_live.core.metrics import image_metrics  # noqa: E402


def make_conv_model(path: Path, size: int = 32) -> Path:
    """Conv-ReLU-Conv-ReLU-Conv(1x1)-Sigmoid that approximates 'bright and smooth = polyp'."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w1 = np.full((8, 3, 3, 3), 1 / 27, np.float32) + rng.normal(0, 0.02, (8, 3, 3, 3)).astype(np.float32)
    w2 = np.full((8, 8, 3, 3), 1 / 72, np.float32) + rng.normal(0, 0.005, (8, 8, 3, 3)).astype(np.float32)
    w3 = np.full((1, 8, 1, 1), 10 / 8, np.float32)
    b3 = np.array([-5.0], np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"), (b3, "b3"))]
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["logits"], name="head"),
        helper.make_node("Sigmoid", ["logits"], ["prob"], name="sigmoid"),
    ]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, size, size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    TEST_SPEC.save(path)
    return path


@pytest.fixture
def conv_model(tmp_path) -> Path:
    return make_conv_model(tmp_path / "conv.onnx")


def frames(count: int = 12) -> np.ndarray:
    return np.concatenate([preprocess(f, TEST_SPEC) for f in moving_disc_frames(count)])


def agreement(reference: Path, candidate: Path, inputs: np.ndarray) -> tuple[float, float]:
    ref, cand = OnnxRuntimeBackend(reference), OnnxRuntimeBackend(candidate, spec=TEST_SPEC)
    diffs, dices = [], []
    for x in inputs:
        a, b = ref.infer(x[None]), cand.infer(x[None])
        diffs.append(float(np.abs(a - b).max()))
        dices.append(image_metrics(b >= 0.5, a >= 0.5)["dice"])
    return max(diffs), float(np.mean(dices))


def test_fp16_conversion_is_valid_and_agrees(conv_model, tmp_path):
    out = convert_fp16(conv_model, tmp_path / "fp16.onnx")
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    # Inputs and outputs stay FP32; the weights are FP16; the sigmoid runs in FP32.
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    producers = {o: n for n in model.graph.node for o in n.output}
    sigmoid = next(n for n in model.graph.node if n.op_type == "Sigmoid")
    assert producers[sigmoid.input[0]].op_type == "Cast"  # cast up to FP32 before the sigmoid
    diff, dice = agreement(conv_model, out, frames())
    assert diff < 0.01 and dice >= 0.99


@pytest.mark.parametrize("flavour,zero_point_type", [("tensorrt", onnx.TensorProto.INT8),
                                                     ("onnxruntime", onnx.TensorProto.UINT8)])
def test_int8_qdq_is_valid_agrees_and_keeps_the_head_in_float(conv_model, tmp_path, flavour, zero_point_type):
    calib = frames(16)
    out = quantize_int8(conv_model, tmp_path / f"{flavour}.onnx", calib, flavour)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: i for i in model.graph.initializer}
    act_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert act_q and all(inits[n.input[2]].data_type == zero_point_type for n in act_q)
    if flavour == "tensorrt":  # symmetric activations: every zero point is 0
        assert all(not np.any(onnx.numpy_helper.to_array(inits[n.input[2]])) for n in act_q)
    producers = {o: n for n in model.graph.node for o in n.output}
    sigmoid = next(n for n in model.graph.node if n.op_type == "Sigmoid")
    assert producers[sigmoid.input[0]].op_type == "Conv"  # head output never goes through INT8
    assert not list(tmp_path.glob("*.prep.onnx"))
    diff, dice = agreement(conv_model, out, frames())
    assert dice >= 0.98


def test_fp16_probabilities_near_1_keep_fp32_resolution(conv_model, tmp_path):
    """Score thresholds above 0.999 must mean the same on an FP16 engine: the probability leaves the
    graph from the FP32 sigmoid, not rounded to FP16 (whose steps there are 0.0005)."""
    out = convert_fp16(conv_model, tmp_path / "fp16.onnx")
    ref, cand = OnnxRuntimeBackend(conv_model), OnnxRuntimeBackend(out, spec=TEST_SPEC)
    x = frames(4) * 2.5  # brighter than any frame: logits of 7 to 12, probabilities 0.999-0.99999
    a, b = ref.infer(x[:1]), cand.infer(x[:1])
    high = a > 0.999
    assert high.sum() > 50
    assert np.abs(a - b)[high].max() < 5e-5
    assert len(np.unique(b[high])) > 20


def test_calibration_sampling_is_deterministic_and_spread_over_the_video(tmp_path):
    clip = write_video(tmp_path / "c.mp4", count=40)
    a = build_calibration_set(clip, TEST_SPEC, count=8)
    b = build_calibration_set(clip, TEST_SPEC, count=8)
    assert a.shape == (8, 3, 32, 32) and np.array_equal(a, b)
    # Spread over time: the disc moves, so first and last samples differ clearly.
    assert np.abs(a[0] - a[-1]).mean() > 0.01
    raw = sample_frames(clip, count=8)
    np.testing.assert_array_equal(a[3], preprocess(raw[3], TEST_SPEC)[0])


def test_calibration_source_errors(tmp_path):
    from polyp_live.calibration.frames import CalibrationError
    with pytest.raises(CalibrationError, match="not found"):
        sample_frames(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no decodable frames"):
        sample_frames(tmp_path / "empty")


# --- polyp-live quantize: where the INT8 model goes and how polyp-live finds it ---------------------

@pytest.fixture
def calib_video(tmp_path) -> Path:
    return write_video(tmp_path / "calib.mp4", 12)


def test_quantize_writes_beside_a_users_model_and_int8_runs_it(conv_model, calib_video, capsys):
    from polyp_live.engines.registry import load_backend
    from polyp_live.tools import quantize
    assert quantize.main(["--model", str(conv_model), "--calib", str(calib_video), "--calib-count", "8"]) == 0
    out = conv_model.with_name("conv.int8.onnx")
    assert f"wrote {out}" in capsys.readouterr().out
    backend = load_backend(conv_model, precision="int8")
    assert Path(backend.model_path) == out
    backend.close()
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
    assert agreement(conv_model, out, frames())[1] >= 0.95


def test_quantize_of_a_model_in_a_read_only_folder_goes_to_the_cache_keyed_by_its_hash(
        conv_model, calib_video, tmp_path, monkeypatch, capsys):
    import os

    from polyp_live.cache import file_sha256
    from polyp_live.engines.registry import load_backend
    from polyp_live.tools import quantize
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = str(conv_model.parent)
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != folder)  # the model's folder is read-only
    assert quantize.main(["--model", str(conv_model), "--calib", str(calib_video), "--calib-count", "8",
                          "--save-calib"]) == 0
    cached = tmp_path / "xdg" / "polyp-live" / "models" / f"conv-{file_sha256(conv_model)[:12]}"
    assert (cached / "conv.int8.onnx").is_file() and (cached / "conv.int8.json").is_file()
    assert len(list(cached.glob("calib-*.npy"))) == 1
    assert not conv_model.with_name("conv.int8.onnx").exists()
    load_backend(conv_model, precision="int8").close()
    # A changed model has another hash: the old INT8 model is not used for it.
    retrained = onnx.load(str(conv_model))
    retrained.doc_string = "retrained"
    onnx.save(retrained, str(conv_model))
    from polyp_live.core.errors import ModelLoadError
    with pytest.raises(ModelLoadError, match="no INT8 model .*polyp-live quantize --model"):
        load_backend(conv_model, precision="int8")


def test_int8_model_made_from_an_older_model_beside_it_is_refused(conv_model, calib_video):
    from polyp_live.core.errors import ModelLoadError
    from polyp_live.engines.registry import load_backend
    from polyp_live.tools import quantize
    assert quantize.main(["--model", str(conv_model), "--calib", str(calib_video), "--calib-count", "8"]) == 0
    retrained = onnx.load(str(conv_model))  # same name, other bytes
    retrained.doc_string = "retrained"
    onnx.save(retrained, str(conv_model))
    with pytest.raises(ModelLoadError, match="made from another version"):
        load_backend(conv_model, precision="int8")


def test_quantize_option_errors_exit_2_with_one_line(conv_model, capsys):
    from polyp_live.tools import quantize
    with pytest.raises(SystemExit) as exit_info:
        quantize.main(["--model", str(conv_model)])
    assert exit_info.value.code == 2 and "INT8 needs --calib" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        quantize.main(["--model", str(conv_model), "--fp16", "--out", str(conv_model)])
    assert exit_info.value.code == 2 and "is the input model" in capsys.readouterr().err
    assert quantize.main(["--model", str(conv_model.with_name("missing.onnx")), "--fp16"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "missing.onnx not found" in err
    damaged = conv_model.with_name("damaged.onnx")
    damaged.write_bytes(conv_model.read_bytes()[:100])
    TEST_SPEC.save(damaged)
    assert quantize.main(["--model", str(damaged), "--fp16"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "damaged.onnx is not a readable ONNX model" in err


def test_quantize_accepts_the_old_onnx_option(conv_model, capsys):
    from polyp_live.tools import quantize
    assert quantize.main(["--onnx", str(conv_model), "--fp16"]) == 0
    assert conv_model.with_name("conv.fp16.onnx").is_file()
    assert "--onnx is deprecated; use --model" in capsys.readouterr().err


def test_a_bad_calibration_count_or_set_is_named_in_one_line(tmp_path, conv_model):
    from polyp_live.calibration.frames import CalibrationError, calibration_for
    with pytest.raises(CalibrationError, match="--calib-count needs at least 1 frame, got 0"):
        calibration_for(tmp_path, TEST_SPEC, 0, conv_model)
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # loading it would unpickle
    (tmp_path / "text.npy").write_text("not numpy")
    for bad in (objects, tmp_path / "text.npy"):
        with pytest.raises(CalibrationError, match="is not a calibration set saved by --save-calib"):
            calibration_for(bad, TEST_SPEC, 10, conv_model)
