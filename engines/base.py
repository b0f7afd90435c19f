"""The Backend protocol every inference engine implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from polyp_live.engines.spec import ModelSpec


@runtime_checkable
class Backend(Protocol):
    """A loaded model that turns one preprocessed input into a probability map.

    Attributes:
        spec: how to feed the model (from its sidecar).
        name: short description for the HUD and logs, e.g. ``onnxruntime:CPUExecutionProvider``.
    """

    spec: ModelSpec
    name: str

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 1x3xHxW input; return the float32 HxW probability map in [0, 1]."""
        ...

    def close(self) -> None:
        """Release the runtime's resources."""
        ...


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function for models that output logits."""
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
