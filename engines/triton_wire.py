"""The contract between polyp-live clients and a Triton model: tensor names, dtypes, shapes, spec.

Both servers (PyTriton through ``polyp-live-serve``, or a stock Triton with the repository that
:mod:`polyp_live.engines.triton_repository` writes) expose the same model:

- input ``image``: uint8 ``[batch, H, W, 3]``, BGR as OpenCV delivers it, already resized to the
  model size with :func:`polyp_live.core.preprocess.resize_for_model` (196 kB at 256x256, a
  quarter of the float32 tensor); the server applies the model's colour order and normalisation.
- output ``probability``: float16 ``[batch, H, W]`` in [0, 1]. Float16 rather than uint8: its step
  near 0.5 is 0.0005 instead of 0.004, so the temporal smoothing and the hysteresis thresholds see
  the same values as a local backend, for 128 kB per answer at 256x256.
- model config parameter ``polyp_live_spec``: the model's sidecar as JSON, so a client needs no
  local copy of the model to know its input size and default threshold.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from polyp_live.core.spec import ModelSpec

MODEL_NAME = "polyp"
INPUT_NAME = "image"
OUTPUT_NAME = "probability"
INPUT_DTYPE = np.uint8
OUTPUT_DTYPE = np.float16
INPUT_TRITON_TYPE = "UINT8"
OUTPUT_TRITON_TYPE = "FP16"
SPEC_PARAMETER = "polyp_live_spec"


def spec_to_parameter(spec: ModelSpec) -> str:
    """The sidecar as one JSON string (the value of the ``polyp_live_spec`` config parameter)."""
    return json.dumps(asdict(spec), separators=(",", ":"))


def spec_from_parameter(text: str) -> ModelSpec:
    """Inverse of :func:`spec_to_parameter`; raises ``ValueError``/``TypeError`` on a bad string."""
    data = json.loads(text)
    data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
    return ModelSpec(**data)


def denormalize(batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Exact inverse of :func:`~polyp_live.core.preprocess.normalize`: float32 1x3xHxW -> uint8 HxWx3 BGR.

    Lets a remote backend take the input the live path prepares for local backends. Normalising
    loses nothing that rounding cannot restore: the float32 error is about 1e-4 of a grey level.
    """
    chw = batch[0] if batch.ndim == 4 else batch
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    pixels = np.clip(np.rint((chw * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return np.ascontiguousarray(pixels[..., ::-1] if spec.color_order == "RGB" else pixels)


def as_wire_image(batch: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Any input a backend may receive -> the uint8 ``[1, H, W, 3]`` BGR request tensor.

    Accepts the resized uint8 HxWx3 (or 1xHxWx3) BGR image, which is what a caller honouring
    ``backend.wants_uint8`` passes, or the normalised float32 1x3xHxW batch of the local backends.
    """
    h, w = spec.input_height, spec.input_width
    if batch.dtype == np.uint8:
        image = batch[None] if batch.ndim == 3 else batch
        if image.shape != (1, h, w, 3):
            raise ValueError(f"expected a uint8 {h}x{w}x3 BGR image at the model size, got shape {batch.shape}; "
                             "resize it with polyp_live.core.preprocess.resize_for_model")
        return np.ascontiguousarray(image)
    if batch.dtype == np.float32 and batch.shape in ((1, 3, h, w), (3, h, w)):
        return denormalize(batch, spec)[None]
    raise ValueError(f"expected a uint8 {h}x{w}x3 image or a float32 1x3x{h}x{w} batch, "
                     f"got shape {batch.shape} dtype {batch.dtype}")
