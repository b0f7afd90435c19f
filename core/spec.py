"""The JSON sidecar that travels with every model file and tells the runtime how to feed it."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from polyp_live.core.errors import PolypLiveError


class ModelSpecError(PolypLiveError, ValueError):
    """A sidecar is missing, unreadable or inconsistent with its model."""


@dataclass(frozen=True)
class ModelSpec:
    """How to feed a model and read its output.

    Attributes:
        input_height, input_width: the fixed network input size.
        color_order: "RGB" or "BGR", the channel order the network expects.
        mean, std: per-channel normalisation applied to pixel values scaled to [0, 1].
        output: "probability" (sigmoid inside the model) or "logits".
        threshold: default decision threshold on the probability.
        input_name: name of the model's input tensor.
        info: free-form provenance (encoder, training data, metrics, ...).
    """

    input_height: int
    input_width: int
    color_order: str = "RGB"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    output: str = "probability"
    threshold: float = 0.5
    input_name: str = "image"
    info: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("input_height", "input_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelSpecError(f"{name} must be a positive whole number, got {value!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if (not isinstance(value, (tuple, list)) or len(value) != 3
                    or not all(_is_number(v) and math.isfinite(v) for v in value)):
                raise ModelSpecError(f"{name} must be three finite numbers (one per colour channel), got {value!r}")
        if not all(v > 0 for v in self.std):
            # A zero std divides every pixel by zero: the model would see infinities and find nothing.
            raise ModelSpecError(f"std must be three positive numbers, got {self.std!r}")
        if not _is_number(self.threshold):
            raise ModelSpecError(f"threshold must be a number in (0, 1), got {self.threshold!r}")
        if not isinstance(self.input_name, str) or not self.input_name:
            raise ModelSpecError(f"input_name must be the model input's name, got {self.input_name!r}")
        if not isinstance(self.info, dict):
            raise ModelSpecError(f"info must be a JSON object, got {type(self.info).__name__}")
        _check_decision(self.info.get("decision"))
        if self.color_order not in ("RGB", "BGR"):
            raise ModelSpecError(f"color_order must be RGB or BGR, got {self.color_order!r}")
        if self.output not in ("probability", "logits"):
            raise ModelSpecError(f"output must be 'probability' or 'logits', got {self.output!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ModelSpecError(f"threshold must lie in (0, 1), got {self.threshold}")

    @staticmethod
    def sidecar_path(model_path: str | Path) -> Path:
        """``model.onnx`` -> ``model.json``; any other file (an engine) -> ``model.engine.json``."""
        path = Path(model_path)
        return path.with_suffix(".json") if path.suffix.lower() == ".onnx" else path.with_name(path.name + ".json")

    @classmethod
    def load(cls, model_path: str | Path) -> "ModelSpec":
        """Read the sidecar next to ``model_path``; errors name the file and the fix."""
        path = cls.sidecar_path(model_path)
        if not path.is_file():
            raise ModelSpecError(f"model sidecar {path} not found; export the model with polyp-live export, "
                                 "which writes it")
        try:
            data = json.loads(path.read_text())
        except (ValueError, OSError) as exc:
            raise ModelSpecError(f"model sidecar {path} is invalid: not readable JSON ({exc}); re-export the model") from None
        if not isinstance(data, dict):
            raise ModelSpecError(f"model sidecar {path} must hold a JSON object; re-export the model")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        missing = sorted({"input_height", "input_width"} - set(data))
        if unknown or missing:
            what = f"unknown field {unknown[0]!r}" if unknown else f"missing field {missing[0]!r}"
            raise ModelSpecError(f"model sidecar {path} is invalid ({what}); re-export the model")
        for name in ("mean", "std"):
            if isinstance(data.get(name), list):
                data[name] = tuple(data[name])
        try:
            return cls(**data)
        except ModelSpecError as exc:
            raise ModelSpecError(f"model sidecar {path} is invalid: {exc}; fix that field or re-export the model") \
                from None

    def save(self, model_path: str | Path) -> Path:
        """Write the sidecar next to ``model_path`` and return its path."""
        path = self.sidecar_path(model_path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_decision(decision) -> None:
    """The stored operating point (``info["decision"]``): numbers where numbers belong."""
    if decision is None:
        return
    if not isinstance(decision, dict):
        raise ModelSpecError(f"info.decision must be a JSON object, got {decision!r}")
    for name, low, high in (("score_threshold", 0.0, 1.0), ("min_area_fraction", 0.0, 1.0)):
        if name in decision:
            v = decision[name]
            if not _is_number(v) or not math.isfinite(v) or not low <= v <= high:
                raise ModelSpecError(f"info.decision.{name} must be a number in [{low:g}, {high:g}], got {v!r}")
    for name in ("k", "n"):
        if name in decision:
            v = decision[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ModelSpecError(f"info.decision.{name} must be a whole number of frames >= 1, got {v!r}")
    if decision.get("k", 1) > decision.get("n", 1) and "n" in decision:
        raise ModelSpecError(f"info.decision persistence {decision['k']}/{decision['n']} needs k <= n")
