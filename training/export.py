"""Export a checkpoint to ONNX (fixed 1x3xHxW input, one probability output) with its sidecar,
and check parity against torch on real images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
from polyp_live.engines.preprocess import preprocess
from polyp_live.engines.spec import ModelSpec
from polyp_live.training.metrics import image_metrics
from polyp_live.training.trainer import load_checkpoint, model_spec
from polyp_live.training.unetplusplus import ProbabilityModel

OPSET = 17


class ParityError(RuntimeError):
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
                 max_abs: float = 1e-3, min_dice: float = 0.99) -> dict[str, float]:
    """Run ``images`` through torch and ONNX Runtime via the shared preprocessing; raise on mismatch."""
    model, _ = load_checkpoint(checkpoint)
    backend = OnnxRuntimeBackend(onnx_path)
    worst_diff, dices = 0.0, []
    with torch.inference_mode():
        for image in images:
            x = preprocess(image, backend.spec)
            ref = torch.sigmoid(model(torch.from_numpy(x)))[0, 0].numpy()
            got = backend.infer(x)
            worst_diff = max(worst_diff, float(np.abs(ref - got).max()))
            dices.append(image_metrics(got >= backend.spec.threshold, ref >= backend.spec.threshold)["dice"])
    result = {"images": len(images), "max_abs_diff": worst_diff, "min_mask_dice": float(min(dices)),
              "mean_mask_dice": float(np.mean(dices))}
    if worst_diff > max_abs or result["min_mask_dice"] < min_dice:
        raise ParityError(f"ONNX export disagrees with torch: max abs diff {worst_diff:.2e} (limit {max_abs:g}), "
                          f"min mask Dice {result['min_mask_dice']:.4f} (limit {min_dice}); do not ship {onnx_path}")
    return result
