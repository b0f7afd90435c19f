"""Choose and load a backend from the model file's suffix (or an explicit ``--backend``)."""

from __future__ import annotations

from pathlib import Path

from engines.base import Backend
from engines.errors import BackendUnavailableError, ModelLoadError

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
SUFFIXES = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt", ".pt": "torch", ".pth": "torch"}


def backend_for(model_path: str | Path, backend: str = "auto") -> str:
    """Resolve ``auto`` from the suffix; refuse unknown names and suffixes with the valid choices."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    suffix = Path(model_path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelLoadError(f"cannot tell the backend of model {model_path} from its suffix; use one of "
                             f"{', '.join(sorted(SUFFIXES))} or pass --backend")
    return SUFFIXES[suffix]


def load_backend(model_path: str | Path, backend: str = "auto", threads: int = 0) -> Backend:
    """Load ``model_path`` with the chosen backend."""
    name = backend_for(model_path, backend)
    if name == "onnxruntime":
        from engines.onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(model_path, threads=threads)
    if name == "torch":
        from engines.torch_backend import TorchBackend
        return TorchBackend(model_path)
    raise BackendUnavailableError("the TensorRT backend is not part of this release yet; "
                                  "run the .onnx model with --backend onnxruntime")
