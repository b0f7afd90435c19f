"""Start training from an exported ONNX model, whose BatchNorm layers were folded into its convolutions.

The exporter folds every Conv-BN pair into one Conv (``W' = W * g / s``, ``b' = beta - mu * g / s``),
so the ONNX file holds convolution weights and biases only. They are copied into the torch model in
the order the convolutions run (checked by shape), which reproduces the exported function exactly
with an identity BatchNorm. An identity BatchNorm would not survive training, where BatchNorm
normalises by batch statistics, so each BatchNorm is then re-expressed around the statistics of its
convolution's output on real training images: running mean ``m`` and variance ``v`` from those
images, ``gamma = sqrt(v + eps)`` and ``beta = m + b'``. In eval mode that is still exactly the
exported function; in train mode batch statistics are close to ``m`` and ``v``, so fine-tuning starts
from the exported model instead of from a perturbed one.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn

from polyp_live.core.errors import PolypLiveError
from polyp_live.engines.onnx_file import read_onnx


class WarmStartError(PolypLiveError, ValueError):
    """The ONNX model does not match the architecture being trained."""


def _conv_call_order(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str | None]]:
    """(conv name, the BatchNorm that directly follows it or None) in execution order."""
    calls: list[tuple[str, str]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n, kind=type(m).__name__: calls.append((kind, n)))
             for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    pairs = []
    for i, (kind, name) in enumerate(calls):
        if kind == "Conv2d":
            nxt = calls[i + 1] if i + 1 < len(calls) else None
            pairs.append((name, nxt[1] if nxt and nxt[0] == "BatchNorm2d" else None))
    return pairs


def load_folded_onnx(model: nn.Module, onnx_path, calibration: np.ndarray | torch.Tensor) -> int:
    """Copy an exported model's weights into ``model`` (eval-mode equivalent) and re-centre its BatchNorms.

    Args:
        model: the torch UNet++ of the same architecture (encoder, decoder widths, ASPP).
        onnx_path: the exported model (``polyp-live export`` output): its path, or the ``onnx.ModelProto``
            a caller has already read (the trainer reads it first to check it).
        calibration: normalised training images, N x 3 x H x W float32, for the BatchNorm statistics.

    Returns:
        The number of convolutions copied. Heads that exist only in training (deep supervision) keep
        their fresh initialisation.
    """
    from onnx import numpy_helper

    graph = (onnx_path if hasattr(onnx_path, "graph") else read_onnx(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    onnx_convs = [n for n in graph.node if n.op_type == "Conv"]
    x = torch.as_tensor(np.asarray(calibration, np.float32))
    was_training = model.training
    model.eval()
    modules = dict(model.named_modules())
    pairs = _conv_call_order(model, x[:1])
    # Deep-supervision heads run in training only; the exported graph has the final head alone.
    pairs = [p for p in pairs if not p[0].startswith("aux")]
    if len(pairs) != len(onnx_convs):
        raise WarmStartError(f"{onnx_path} has {len(onnx_convs)} convolutions, the model {len(pairs)}; "
                             "train with the encoder and decoder widths of the model you start from")
    with torch.no_grad():
        for (conv_name, bn_name), node in zip(pairs, onnx_convs):
            _copy_folded(modules, conv_name, bn_name, node, inits, onnx_path)
        _recentre_batchnorms(model, modules, pairs, x)
    model.train(was_training)
    return len(pairs)


def _copy_folded(modules: dict, conv_name: str, bn_name: str | None, node, inits: dict, onnx_path) -> None:
    """One exported convolution (its BatchNorm folded in) into the model's convolution, with that
    BatchNorm set to the identity and carrying the folded bias."""
    conv = modules[conv_name]
    weight = inits.get(node.input[1])
    bias = inits.get(node.input[2]) if len(node.input) > 2 else None
    if weight is None or tuple(weight.shape) != tuple(conv.weight.shape):
        raise WarmStartError(f"{onnx_path}: convolution {node.name or node.input[1]} has shape "
                             f"{None if weight is None else weight.shape}, model's {conv_name} "
                             f"{tuple(conv.weight.shape)}; the architectures differ")
    conv.weight.copy_(torch.from_numpy(weight.copy()))
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias
    if bn_name is None:
        if conv.bias is None:
            raise WarmStartError(f"{conv_name} has no bias and no BatchNorm; cannot place the folded bias")
        conv.bias.copy_(torch.from_numpy(bias.copy()))
        return
    if conv.bias is not None:
        conv.bias.zero_()
    bn = modules[bn_name]
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)  # 1 / sqrt(var + eps) == 1: an identity BatchNorm
    bn.weight.fill_(1.0)
    bn.bias.copy_(torch.from_numpy(bias.copy()))


def _recentre_batchnorms(model: nn.Module, modules: dict, pairs: list, x: torch.Tensor) -> None:
    """Give each BatchNorm the statistics of its convolution's output on ``x`` under the exported
    function (one pass), keeping that function: the running statistics become real ones."""
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [modules[c].register_forward_hook(
                 lambda mod, i, out, c=c: stats.__setitem__(c, (out.mean((0, 2, 3)), out.var((0, 2, 3)))))
             for c, b in pairs if b is not None]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    for conv_name, bn_name in pairs:
        if bn_name is None:
            continue
        bn = modules[bn_name]
        mean, var = stats[conv_name]
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.bias.add_(mean)
        bn.weight.copy_(torch.sqrt(var + bn.eps))
