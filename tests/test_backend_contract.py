"""The one backend contract (core/backend.py): input checks, timing, probabilities, closing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import TEST_SPEC
from dataclasses import replace

from polyp_live.core.backend import Backend
from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
from polyp_live.realtime.output import describe_backend


class Constant(Backend):
    name = "constant"

    def __init__(self, value: float, spec=TEST_SPEC, wait: float = 0.0):
        self.spec, self.value, self.wait, self.closed = spec, value, wait, False

    def _run(self, batch):
        time.sleep(self.wait)
        return np.full((1, 1, 32, 32), self.value, np.float32)

    def close(self):
        self.closed = True


def test_inputs_of_the_wrong_shape_or_dtype_are_refused_naming_what_the_model_takes():
    backend = Constant(0.3)
    assert backend.infer(np.zeros((1, 3, 32, 32), np.float32)).shape == (32, 32)
    with pytest.raises(ValueError, match=r"takes float32 1x3x32x32, not float64 1x3x32x32"):
        backend.infer(np.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match=r"not uint8 32x32x3"):
        backend.infer(np.zeros((32, 32, 3), np.uint8))      # only a backend that wants uint8 takes that
    backend.wants_uint8 = True
    assert backend.infer(np.zeros((32, 32, 3), np.uint8)).shape == (32, 32)


def test_logits_become_probabilities_once_and_each_run_is_timed():
    logits = Constant(0.0, spec=replace(TEST_SPEC, output="logits"), wait=0.02)
    out = logits.infer(np.zeros((1, 3, 32, 32), np.float32))
    assert out.dtype == np.float32 and np.allclose(out, 0.5)
    assert 0.02 <= logits.last_infer_s < 0.5
    logits.outputs_logits = False        # a server that answers probabilities already
    assert np.allclose(logits.infer(np.zeros((1, 3, 32, 32), np.float32)), 0.0)


def test_a_backend_is_a_context_manager_and_declares_what_the_hud_shows(brightness_model):
    with Constant(0.1) as backend:
        pass
    assert backend.closed
    with OnnxRuntimeBackend(brightness_model) as ort:
        info = describe_backend(ort)
        assert (info.model, info.precision, info.backend) == ("bright", "fp32", "onnxruntime:CPU")
        assert ort.model_path == brightness_model and ort.status == "" and not ort.wants_uint8
    assert ort.session is None


def test_one_comparator_measures_max_difference_and_mask_dice_and_judges_by_precision():
    from polyp_live.core.comparator import SAME_PRECISION, compare, rule_for
    reference = [np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)]
    reference[0][:2] = 0.9                      # a polyp on the top half of the first map
    close = [r + 0.0005 for r in reference]     # float rounding only
    shrunk = [r.copy() for r in reference]
    shrunk[0][1] = 0.2                          # half the polyp lost
    agreement = compare(reference, close, 0.5)
    assert agreement.images == 2 and agreement.max_abs_diff == pytest.approx(0.0005, abs=1e-6)
    assert agreement.mean_dice == agreement.min_dice == 1.0 and SAME_PRECISION.passes(agreement)
    lossy = compare(reference, shrunk, 0.5)
    assert lossy.min_dice == pytest.approx(2 / 3) and lossy.mean_dice == pytest.approx((2 / 3 + 1) / 2)
    assert SAME_PRECISION.failures(lossy) == ["max abs diff 7.00e-01 > 0.001", "mean mask Dice 0.8333 < 0.99",
                                              "worst image's mask Dice 0.6667 < 0.99"]
    assert not rule_for("int8").passes(lossy) and rule_for("int8").min_mean_dice == 0.98
    with pytest.raises(ValueError, match="not the same inputs"):
        compare(reference, close[:1], 0.5)
