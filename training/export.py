"""Export a checkpoint to ONNX (fixed 1x3xHxW input, one probability output) with its sidecar,
and check parity against torch on real images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
from polyp_live.core.comparator import SAME_PRECISION, Agreement, PassRule, compare
from polyp_live.core.segmenter import prepare_still
from polyp_live.core.errors import PolypLiveError
from polyp_live.core.spec import ModelSpec
from polyp_live.training.trainer import load_checkpoint, model_spec
from polyp_live.training.unetplusplus import ProbabilityModel

OPSET = 17


class ParityError(PolypLiveError):
    """The exported model disagrees with torch beyond tolerance."""


def export_onnx(checkpoint: str | Path, out: str | Path, threshold: float = 0.5, info: dict | None = None) -> ModelSpec:
    """Write ``out`` (.onnx) and its ``.json`` sidecar; returns the spec."""
    model, config = load_checkpoint(checkpoint)
    wrapped = ProbabilityModel(model).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, config.size, config.size)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The TorchScript exporter writes one self-contained file (weights inside), which is what we ship.
            torch.onnx.export(wrapped, (dummy,), str(tmp), input_names=["image"], output_names=["prob"],
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
        tmp.replace(out)
    finally:  # a full disk mid-export leaves no truncated .tmp behind
        tmp.unlink(missing_ok=True)
    meta = {"architecture": "UNet++", "encoder": config.model.encoder,
            "decoder_channels": list(config.model.decoder_channels), "aspp": config.model.aspp,
            "training_data": training_data(config), "opset": OPSET, **(info or {})}
    spec = model_spec(config.size, meta, threshold)
    spec.save(out)
    return spec


def training_data(config) -> str:
    """What the model learnt from, for the sidecar: dataset folder names, not this machine's paths."""
    text = f"{Path(config.data).name} train split"
    if config.negatives:
        text += f" + polyp-free {Path(config.negatives).name} train split"
    if config.init:
        text += f" (fine-tuned from {Path(config.init).name})"
    return text


def check_parity(checkpoint: str | Path, onnx_path: str | Path, images: list[np.ndarray],
                 rule: PassRule = SAME_PRECISION) -> Agreement:
    """Run ``images`` through torch and ONNX Runtime, each prepared as the live path prepares a still;
    raise :class:`ParityError` unless the two agree under ``rule``."""
    model, _ = load_checkpoint(checkpoint)
    backend = OnnxRuntimeBackend(onnx_path)
    inputs = [prepare_still(image, backend.spec)[0] for image in images]
    with torch.inference_mode():
        reference = [torch.sigmoid(model(torch.from_numpy(x)))[0, 0].numpy() for x in inputs]
    agreement = compare(reference, [backend.infer(x) for x in inputs], backend.spec.threshold)
    broken = rule.failures(agreement)
    if broken:
        raise ParityError(f"ONNX export disagrees with torch: {'; '.join(broken)}; do not ship {onnx_path}")
    return agreement
