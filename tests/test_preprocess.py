"""The one shared preprocessing: every consumer uses the same function."""

from __future__ import annotations

import numpy as np
import pytest

import polyp_live.engines.preprocess as pre
from polyp_live.engines.spec import ModelSpec, ModelSpecError

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


def test_every_consumer_uses_the_shared_preprocessing():
    import polyp_live.calibration.frames as frames
    import polyp_live.realtime.segmenter as segmenter
    assert segmenter.preprocess is pre.preprocess
    assert segmenter.resize_for_model is pre.resize_for_model
    assert frames.preprocess is pre.preprocess
    try:
        import polyp_live.training.dataset as dataset
        import polyp_live.training.evaluation as evaluation
        import polyp_live.training.trainer as trainer
    except ImportError:
        pytest.skip("training needs torch (the [train] extra)")
    assert trainer.normalize is pre.normalize
    assert dataset.resize_for_model is pre.resize_for_model
    import polyp_live.training.frame_evaluation as frame_evaluation
    # Evaluation prepares images with the live path's own Segmenter (field of view, then preprocess).
    assert evaluation.Segmenter is segmenter.Segmenter and frame_evaluation.Segmenter is segmenter.Segmenter


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
