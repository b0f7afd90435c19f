"""Choose and load a backend from the model file's suffix (or an explicit ``--backend``)."""

from __future__ import annotations

from pathlib import Path

from polyp_live.engines.base import Backend
from polyp_live.engines.errors import ModelLoadError

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch", "triton")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
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


def int8_variant(model_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx`` (the CPU INT8 model written by tools/quantize.py)."""
    path = Path(model_path)
    return path.with_name(f"{path.stem}.int8{path.suffix}")


def load_backend(model_path: str | Path, backend: str = "auto", threads: int = 0, precision: str = "auto",
                 server: str | None = None, triton_model: str = "polyp", server_timeout: float = 1.0) -> Backend:
    """Load ``model_path`` with the chosen backend and precision.

    ``backend="triton"`` connects to the Triton server at ``server`` instead; the model's spec comes
    from the server, and ``model_path``'s sidecar is only a fallback for servers that carry none.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    name = backend_for(model_path, backend)
    if name == "triton":
        from polyp_live.engines.spec import ModelSpec
        from polyp_live.engines.triton_backend import TritonBackend
        if not server:
            raise ValueError("--backend triton needs --server grpc://HOST:PORT (the server's gRPC endpoint)")
        fallback = ModelSpec.load(model_path) if ModelSpec.sidecar_path(model_path).is_file() else None
        return TritonBackend(server, triton_model, timeout=server_timeout, fallback_spec=fallback)
    if name == "onnxruntime":
        from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
        if precision == "int8" and ".int8" not in Path(model_path).suffixes:
            variant = int8_variant(model_path)
            if not variant.is_file():
                raise ModelLoadError(f"no INT8 model {variant} beside {model_path}; create it with "
                                     f"python tools/quantize.py --onnx {model_path} --calib DATA")
            model_path = variant
        elif precision == "fp16":
            raise ModelLoadError("--precision fp16 is for TensorRT; ONNX Runtime on the CPU runs fp32 or int8")
        return OnnxRuntimeBackend(model_path, threads=threads)
    if name == "torch":
        from polyp_live.engines.torch_backend import TorchBackend
        return TorchBackend(model_path)
    from polyp_live.engines.tensorrt_backend import TensorRTBackend
    return TensorRTBackend(model_path, precision="fp16" if precision == "auto" else precision)
