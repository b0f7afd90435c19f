"""Files shipped inside the package (the bundled model and demo clip), found through importlib.resources."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

BUNDLED_MODEL_NAME = "polyp-unetpp-lite0-256.onnx"


def bundled_model() -> Path:
    """Path of the shipped ONNX model (its ``.json`` sidecar lies beside it)."""
    return Path(str(files("polyp_live.engines") / "models" / BUNDLED_MODEL_NAME))


def demo_clip() -> Path:
    """Path of the bundled 720p demo clip."""
    return Path(str(files("polyp_live.realtime") / "assets" / "demo.mp4"))
