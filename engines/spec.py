"""The JSON sidecar that travels with every model file and tells the runtime how to feed it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


class ModelSpecError(ValueError):
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
            data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
            return cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelSpecError(f"model sidecar {path} is invalid ({exc}); re-export the model") from None

    def save(self, model_path: str | Path) -> Path:
        """Write the sidecar next to ``model_path`` and return its path."""
        path = self.sidecar_path(model_path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path
