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
