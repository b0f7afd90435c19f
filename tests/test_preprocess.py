"""The one shared preprocessing: every consumer uses the same function."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import polyp_live.core.preprocess as pre
from polyp_live.core.spec import ModelSpec, ModelSpecError

SPEC = ModelSpec(input_height=64, input_width=96)


def test_preprocess_is_resize_then_normalize():
    image = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    x = pre.preprocess(image, SPEC)
    assert x.shape == (1, 3, 64, 96) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], pre.normalize(pre.resize_for_model(image, SPEC), SPEC))


def test_colour_order_and_normalisation():
    image = np.zeros((64, 96, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    x = pre.preprocess(image, SPEC)[0]
    assert x[0].mean() == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)  # R first for an RGB model
    assert x[2].mean() == pytest.approx((0 - 0.406) / 0.225, rel=1e-5)


def endoscope_still(path: Path) -> np.ndarray:
    """A textured picture inside wide black side margins (as an endoscope frame is), saved as PNG."""
    rng = np.random.default_rng(3)
    image = np.zeros((180, 320, 3), np.uint8)
    image[10:170, 70:250] = rng.integers(40, 220, (160, 180, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return image


def test_one_image_gives_the_same_tensor_through_training_calibration_evaluation_and_the_live_path(
        tmp_path, brightness_model):
    """Not the same function objects: the same numbers, from each consumer's own entry point."""
    from polyp_live.calibration.frames import build_calibration_set
    from polyp_live.core.config import PipelineConfig
    from polyp_live.core.segmenter import Segmenter
    from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend

    for folder in ("images", "masks", "splits"):
        (tmp_path / "set" / folder).mkdir(parents=True)
    image = endoscope_still(tmp_path / "set" / "images" / "a.png")
    cv2.imwrite(str(tmp_path / "set" / "masks" / "a.png"), np.zeros(image.shape[:2], np.uint8))
    for split in ("train", "val", "test"):
        (tmp_path / "set" / "splits" / f"{split}.txt").write_text("a\n")
    backend = OnnxRuntimeBackend(brightness_model)
    spec = backend.spec

    live = Segmenter(backend, PipelineConfig()).prepare(image).batch           # polyp-live, first frame
    calibration = build_calibration_set(tmp_path / "set" / "images", spec, count=1)
    from polyp_live.core.datasets import read_pair, scan
    still = Segmenter(backend, PipelineConfig())
    still.reset()
    evaluation = still.prepare(read_pair(scan(tmp_path / "set")["a"])[0]).batch   # evaluate: a still, afresh
    assert live.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(calibration, live)
    np.testing.assert_array_equal(evaluation, live)
    # The field of view was cut out: the whole frame would give another tensor.
    assert not np.array_equal(pre.preprocess(image, spec), live)
    try:
        from polyp_live.training.dataset import load_split
        from polyp_live.training.trainer import to_input
    except ImportError:
        pytest.skip("training needs torch (the [train] extra)")
    _, images, _ = load_split(tmp_path / "set", "train", spec, cache_dir=None)
    training = to_input(images, spec).contiguous().numpy()
    np.testing.assert_array_equal(training, live)


def test_non_image_input_is_refused():
    with pytest.raises(ValueError, match="BGR uint8"):
        pre.preprocess(np.zeros((10, 10), np.uint8), SPEC)


def test_sidecar_round_trip_and_errors(tmp_path):
    model = tmp_path / "m.onnx"
    SPEC.save(model)
    assert ModelSpec.load(model) == SPEC
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ModelSpecError, match="m.json is invalid"):
        ModelSpec.load(model)
