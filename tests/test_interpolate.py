"""polyp-live interpolate: weights mixed as asked, the result runs like the model it should equal,
and every refusal names the problem without touching the inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TEST_SPEC, make_brightness_model

from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
from polyp_live.tools.interpolate import main


def probability(path, batch):
    backend = OnnxRuntimeBackend(path)
    try:
        return backend.infer(batch)
    finally:
        backend.close()


@pytest.fixture
def two_models(tmp_path):
    """Two graphs of one architecture (gain 8 and gain 4): the interpolation's weights are known."""
    from dataclasses import replace
    # Another pixel threshold in B's sidecar (an operating point, not an input setting) is no obstacle.
    return (make_brightness_model(tmp_path / "a.onnx", gain=8.0),
            make_brightness_model(tmp_path / "b.onnx", gain=4.0, spec=replace(TEST_SPEC, threshold=0.45)))


def test_interpolation_equals_the_model_with_the_interpolated_weights(tmp_path, two_models):
    a, b = two_models
    batch = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    assert main(["--models", str(a), str(b), "--alpha", "0.25", "--out", str(tmp_path / "mix.onnx")]) == 0
    reference = make_brightness_model(tmp_path / "ref.onnx", gain=0.75 * 8 + 0.25 * 4)
    np.testing.assert_allclose(probability(tmp_path / "mix.onnx", batch), probability(reference, batch), atol=1e-6)
    for alpha, end in (("0", a), ("1", b)):
        assert main(["--models", str(a), str(b), "--alpha", alpha, "--out", str(tmp_path / f"end{alpha}.onnx")]) == 0
        np.testing.assert_array_equal(probability(tmp_path / f"end{alpha}.onnx", batch), probability(end, batch))
    sidecar = json.loads((tmp_path / "mix.json").read_text())
    assert sidecar["info"]["interpolation"]["alpha"] == 0.25 and "decision" not in sidecar["info"]
    assert sidecar["input_height"] == TEST_SPEC.input_height


def test_models_of_another_graph_are_refused_in_one_line(tmp_path, two_models, capsys):
    import onnx
    a, _ = two_models
    other = onnx.load(str(a))
    other.graph.node[2].op_type = "Add"  # z = c + gain: another computation
    onnx.save(other, str(tmp_path / "other.onnx"))
    TEST_SPEC.save(tmp_path / "other.onnx")
    args = ["--models", str(a), str(tmp_path / "other.onnx"), "--alpha", "0.5", "--out", str(tmp_path / "x.onnx")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not the same graph" in err
    assert not list(tmp_path.glob("x*")) and not list(tmp_path.glob(".x*"))  # nothing half written


def test_an_existing_out_an_input_as_out_and_a_bad_alpha_are_refused(tmp_path, two_models, capsys):
    a, b = two_models
    before = a.read_bytes()
    for args, message in (
        (["--alpha", "0.5", "--out", str(b)], "is one of the inputs"),
        (["--alpha", "1.5", "--out", str(tmp_path / "y.onnx")], "alpha must lie in [0, 1]"),
        (["--alpha", "0.5", "--out", str(tmp_path / "y.txt")], "must end in .onnx"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            code = main(["--models", str(a), str(b), *args])
            raise SystemExit(code)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    (tmp_path / "z.onnx").write_bytes(b"keep")
    with pytest.raises(SystemExit):
        main(["--models", str(a), str(b), "--alpha", "0.5", "--out", str(tmp_path / "z.onnx")])
    assert "pass --force" in capsys.readouterr().err and (tmp_path / "z.onnx").read_bytes() == b"keep"
    assert a.read_bytes() == before


@pytest.mark.parametrize("damage", ["text", "truncated"])
def test_a_file_that_is_not_an_onnx_model_is_refused_in_one_line(tmp_path, two_models, damage, capsys):
    a, b = two_models
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model\n" if damage == "text" else b.read_bytes()[: len(b.read_bytes()) // 2])
    TEST_SPEC.save(bad)
    assert main(["--models", str(a), str(bad), "--alpha", "0.5", "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad} is not a readable ONNX model" in err and "Traceback" not in err
    assert not list(tmp_path.glob("x*")) and not list(tmp_path.glob(".x*"))
