"""Choose and load a backend from the model file's suffix (or an explicit ``--backend``)."""

from __future__ import annotations

import importlib
from pathlib import Path

from polyp_live.core.backend import Backend
from polyp_live.core.errors import InvalidValue, ModelLoadError
from polyp_live.engines.triton_wire import MODEL_NAME
from polyp_live.cache import artefact_path
from polyp_live.cache import candidates, file_sha256
from polyp_live.core.spec import ModelSpec
from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
from polyp_live.engines.tensorrt_backend import TensorRTBackend
from polyp_live.engines.triton_backend import TritonBackend

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch", "triton")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
TORCH_BACKEND = "polyp_live.training.torch_backend"
SUFFIXES = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt", ".pt": "torch", ".pth": "torch"}


def backend_for(model_path: str | Path, backend: str = "auto") -> str:
    """Resolve ``auto`` from the suffix; refuse unknown names and suffixes with the valid choices."""
    if backend not in BACKENDS:
        raise InvalidValue(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    suffix = Path(model_path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelLoadError(f"cannot tell the backend of model {model_path} from its suffix; use one of "
                             f"{', '.join(sorted(SUFFIXES))} or pass --backend")
    return SUFFIXES[suffix]


def int8_variant(model_path: str | Path) -> Path:
    """Where the CPU INT8 model of ``model.onnx`` (``model.int8.onnx``, made by ``polyp-live quantize``)
    is, or goes: beside a user's model in a writable folder, else in the user cache (see
    :mod:`polyp_live.cache`)."""
    path = Path(model_path)
    return artefact_path(path, f"{path.stem}.int8{path.suffix}")


def _int8_model(model_path: str | Path) -> Path:
    """The INT8 model made from ``model_path``; errors say where was looked and how to make it."""

    if not Path(model_path).is_file():
        raise ModelLoadError(f"model file {model_path} not found; pass --model with an existing .onnx")
    variant = int8_variant(model_path)
    make = f"polyp-live quantize --model {model_path} --calib DATA (python tools/quantize.py in a checkout)"
    if not variant.is_file():
        looked = " and ".join(str(p) for p in candidates(model_path, variant.name))
        raise ModelLoadError(f"no INT8 model for {model_path} (looked for {looked}); make it once with: {make}")
    made_from = ModelSpec.load(variant).info.get("source_sha256") if ModelSpec.sidecar_path(variant).is_file() else None
    if made_from and made_from != file_sha256(model_path):
        raise ModelLoadError(f"INT8 model {variant} was made from another version of {model_path}; remake it: {make}")
    return variant


def load_backend(model_path: str | Path, backend: str = "auto", threads: int = 0, precision: str = "auto",
                 server: str | None = None, triton_model: str = MODEL_NAME, server_timeout: float = 1.0,
                 server_wait: float = 0.0, notify=None) -> Backend:
    """Load ``model_path`` with the chosen backend and precision.

    ``backend="triton"`` connects to the Triton server at ``server`` instead; the model's spec comes
    from the server, and ``model_path``'s sidecar is only a fallback for servers that carry none;
    ``server_wait`` seconds are given to a server still starting or loading (``notify`` says so).
    """
    if precision not in PRECISIONS:
        raise InvalidValue(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    name = backend_for(model_path, backend)
    if name == "triton":
        if not server:
            raise InvalidValue("--backend triton needs --server grpc://HOST:PORT (the server's gRPC endpoint)")
        fallback = ModelSpec.load(model_path) if ModelSpec.sidecar_path(model_path).is_file() else None
        return TritonBackend(server, triton_model, timeout=server_timeout, fallback_spec=fallback, wait=server_wait,
                             notify=notify)
    if name == "onnxruntime":
        if precision == "int8" and ".int8" not in Path(model_path).suffixes:
            model_path = _int8_model(model_path)
        elif precision == "fp16":
            raise ModelLoadError("--precision fp16 is for TensorRT; ONNX Runtime on the CPU runs fp32 or int8")
        return OnnxRuntimeBackend(model_path, threads=threads)
    if name == "torch":
        # Named by string: the torch backend runs training checkpoints and lives with training, above
        # this layer; engines never import training.
        return importlib.import_module(TORCH_BACKEND).TorchBackend(model_path)
    return TensorRTBackend(model_path, precision="fp16" if precision == "auto" else precision)
