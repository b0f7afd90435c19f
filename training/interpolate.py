"""Weight interpolation of two exported models of one architecture (WiSE-FT, Wortsman et al., 2022).

A model fine-tuned from another moves along a path in weight space on which, in practice, accuracy
varies smoothly: ``(1 - alpha) * A + alpha * B`` trades what B gained (here: fewer false alarms on
polyp-free frames) against what A kept (segmentation Dice), without any training. The exported ONNX
files are interpolated, not the checkpoints: the exporter folds every BatchNorm into its
convolution, so each file holds the effective weight of every layer, and a fine-tuning run restarted
from an export (``train --model X.onnx``) re-parameterises BatchNorm, so its checkpoint and its
parent's are not comparable tensor by tensor while their exports are.

The result has no operating point: choose one on the validation splits (``polyp-live evaluate
--choose-operating-point --update-sidecar``) as for any new model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from polyp_live.core.errors import PolypLiveError
from polyp_live.engines.onnx_file import read_onnx
from polyp_live.core.spec import ModelSpec


class InterpolationError(PolypLiveError, ValueError):
    """The two models cannot be interpolated (another architecture or input); the message says which."""


def _structure(model: onnx.ModelProto) -> list[tuple]:
    return [(n.op_type, tuple(n.input), tuple(n.output),
             tuple((a.name, repr(onnx.helper.get_attribute_value(a))) for a in n.attribute))
            for n in model.graph.node]


def interpolate_onnx(first: str | Path, second: str | Path, alpha: float, out: str | Path) -> ModelSpec:
    """Write ``out`` = ``(1 - alpha) * first + alpha * second`` (every float weight) and its sidecar.

    Both models must have the same graph (nodes, initializer names, shapes and types) and the same
    sidecar input settings; integer initializers (shapes, axes) must be equal. The file is written
    under a partial name and renamed, so ``out`` is never half written. Returns the new spec.
    """
    if not 0.0 <= alpha <= 1.0:
        raise InterpolationError(f"alpha must lie in [0, 1], got {alpha}")
    first, second, out = Path(first), Path(second), Path(out)
    spec_a, spec_b = ModelSpec.load(first), ModelSpec.load(second)
    # How each is fed must agree; the threshold is an operating point, chosen again for the mix.
    fed = ("input_height", "input_width", "color_order", "mean", "std", "output", "input_name")
    if any(getattr(spec_a, f) != getattr(spec_b, f) for f in fed):
        raise InterpolationError(f"{first} and {second} are fed differently (their sidecars differ in input "
                                 "settings); only models of one architecture and input can be interpolated")
    a, b = read_onnx(first), read_onnx(second)
    if _structure(a) != _structure(b):
        raise InterpolationError(f"{first} and {second} are not the same graph; interpolate two exports of one "
                                 "architecture (a model and one fine-tuned from it)")
    weights_b = {t.name: t for t in b.graph.initializer}
    if set(weights_b) != {t.name for t in a.graph.initializer}:
        raise InterpolationError(f"{first} and {second} hold differently named weights; export both with "
                                 "polyp-live export")
    mixed = []
    for tensor in a.graph.initializer:
        wa, wb = numpy_helper.to_array(tensor), numpy_helper.to_array(weights_b[tensor.name])
        if wa.shape != wb.shape or wa.dtype != wb.dtype:
            raise InterpolationError(f"weight {tensor.name} is {wa.dtype}{list(wa.shape)} in {first} but "
                                     f"{wb.dtype}{list(wb.shape)} in {second}; not the same architecture")
        if np.issubdtype(wa.dtype, np.floating):
            value = ((1 - alpha) * wa.astype(np.float64) + alpha * wb.astype(np.float64)).astype(wa.dtype)
        elif not np.array_equal(wa, wb):
            raise InterpolationError(f"integer tensor {tensor.name} differs between {first} and {second}")
        else:
            value = wa
        mixed.append(numpy_helper.from_array(value, tensor.name))
    del a.graph.initializer[:]
    a.graph.initializer.extend(mixed)
    onnx.checker.check_model(a)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial.onnx")
    onnx.save(a, str(partial))
    # The folder names the run (runs/r3/model.onnx -> r3/model.onnx); the full path is this machine's.
    name_a, name_b = "/".join(first.parts[-2:]), "/".join(second.parts[-2:])
    info = {k: v for k, v in spec_a.info.items() if k not in ("decision", "metrics")}
    info["training_data"] = (f"weight interpolation: {1 - alpha:g} x {name_a} [{spec_a.info.get('training_data', '?')}]"
                             f" + {alpha:g} x {name_b} [{spec_b.info.get('training_data', '?')}]")
    info["interpolation"] = {"first": name_a, "second": name_b, "alpha": alpha}
    spec = replace(spec_a, info=info)
    spec.save(out)
    partial.replace(out)
    return spec
