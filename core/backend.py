"""The one contract every inference engine fulfils: :class:`Backend`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from polyp_live.core.spec import ModelSpec


class Backend:
    """A loaded model that turns one preprocessed input into a probability map.

    Subclasses load the model in ``__init__`` (setting :attr:`spec` and :attr:`name`) and implement
    :meth:`_run`; this class checks every input against the spec, times each run
    (:attr:`last_infer_s`), turns logits into probabilities once, and closes on ``with`` exit. What
    the live path needs to know about a backend is declared here, not guessed:

    Attributes:
        spec: how to feed the model (from its sidecar).
        name: the runtime for the HUD and logs, e.g. ``onnxruntime:CPU``.
        model_path: the model file (None for a remote model).
        model_name: the model's name when there is no file (a Triton model).
        precision: fp32, fp16 or int8.
        status: "" while all is well; otherwise a state line for the HUD ("inference server lost ...").
        wants_uint8: the backend normalises itself and takes the resized uint8 HxWx3 BGR crop (a
            remote server: a quarter of the bytes); otherwise the float32 1x3xHxW batch.
        outputs_logits: :meth:`_run` returns logits when the spec says so (a local model); a remote
            server answers probabilities already.
        last_infer_s: seconds the last :meth:`infer` spent in the model.
    """

    spec: ModelSpec
    name: str = ""
    model_path: Path | None = None
    model_name: str = ""
    precision: str = "fp32"
    status: str = ""
    wants_uint8: bool = False
    outputs_logits: bool = True
    last_infer_s: float = 0.0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one input; return the float32 HxW probability map in [0, 1].

        Raises:
            ValueError: the input's shape or dtype is not what the model takes (the message says both).
        """
        self.check_input(batch)
        t = time.perf_counter()
        out = self._run(batch)
        self.last_infer_s = time.perf_counter() - t
        return self.to_probability(out)

    def check_input(self, batch: np.ndarray) -> None:
        """Refuse an input the model cannot take, naming what it takes."""
        h, w = self.spec.input_height, self.spec.input_width
        accepted = [((1, 3, h, w), np.float32)]
        if self.wants_uint8:
            accepted += [((h, w, 3), np.uint8), ((1, h, w, 3), np.uint8)]
        if not any(batch.shape == shape and batch.dtype == dtype for shape, dtype in accepted):
            wanted = " or ".join(f"{np.dtype(d).name} {'x'.join(map(str, s))}" for s, d in accepted)
            raise ValueError(f"{self.name or type(self).__name__} takes {wanted}, not "
                             f"{batch.dtype} {'x'.join(map(str, batch.shape))}; prepare frames with the Segmenter")

    def to_probability(self, out: np.ndarray) -> np.ndarray:
        """The model's output as a float32 HxW probability map (sigmoid applied once, for logits)."""
        prob = np.asarray(out).reshape(out.shape[-2:]).astype(np.float32, copy=False)
        return sigmoid(prob) if self.outputs_logits and self.spec.output == "logits" else prob

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """The model itself on one checked input: its raw output (any shape ending in H x W)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime's resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function for models that output logits."""
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
