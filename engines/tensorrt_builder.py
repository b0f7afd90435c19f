"""ONNX -> TensorRT engine, one code path for TensorRT 10.x and 11.x.

Precision lives in the ONNX graph (FP16 conversion, INT8 Q/DQ from calibration), and the network is
created strongly typed, so no ``BuilderFlag.FP16``/``INT8`` and no calibrator class is used:
TensorRT 11 removed both. The engine gets a sidecar holding the model spec plus what it was built
with (TensorRT version, GPU, compute capability, precision, input shape, source ONNX sha256).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path

from polyp_live.engines.cuda_memory import gpu_info
from polyp_live.core.errors import MissingFile, InvalidValue, PolypLiveError, BackendUnavailableError
from polyp_live.core.spec import ModelSpec
from polyp_live.cache import artefact_path
from polyp_live.engines.precision import GRAPH_REVISION, convert_fp16, quantize_int8

PRECISIONS = ("fp32", "fp16", "int8")
# Lowest compute capability with native support for each precision.
MIN_CC = {"fp32": (3, 0), "fp16": (5, 3), "int8": (6, 1)}
INSTALL_HINT = ("TensorRT is not installed: pip install 'polyp-live[tensorrt]' (TensorRT wheels come from "
                "NVIDIA's index: pip install --extra-index-url https://pypi.nvidia.com tensorrt)")


class EngineBuildError(PolypLiveError, RuntimeError):
    """The ONNX could not be parsed or TensorRT could not build an engine."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailableError(INSTALL_HINT) from None
    return trt


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_metadata(trt, precision: str, spec: ModelSpec, onnx_path: str | Path) -> dict:
    """What an engine is tied to; the backend compares it with the running machine."""
    return {"tensorrt_version": trt.__version__, **gpu_info(), "precision": precision,
            "input_shape": [1, 3, spec.input_height, spec.input_width], "source_onnx": str(onnx_path),
            "source_onnx_sha256": sha256(onnx_path)}


def check_precision_supported(precision: str, info: dict) -> None:
    if precision not in PRECISIONS:
        raise InvalidValue(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    major, minor = (int(v) for v in info["compute_capability"].split("."))
    if (major, minor) < MIN_CC[precision]:
        need = ".".join(map(str, MIN_CC[precision]))
        raise EngineBuildError(f"{precision} needs compute capability {need} or newer; {info['gpu']} has "
                               f"{info['compute_capability']}. Use --precision fp32")


def precision_graph(onnx_path: Path, precision: str, workdir: Path, calibration=None) -> Path:
    """The ONNX graph that carries ``precision`` (the input itself for fp32)."""
    if precision == "fp16":
        return convert_fp16(onnx_path, workdir / "fp16.onnx")
    if precision == "int8":
        if calibration is None:
            raise InvalidValue("--precision int8 needs --calib (a video, image folder, dataset or .npy calibration set)")
        return quantize_int8(onnx_path, workdir / "int8.onnx", calibration, flavour="tensorrt")
    return onnx_path


def build_engine(onnx_path: str | Path, out: str | Path, precision: str = "fp16", calibration=None,
                 workspace_mb: int = 0, timing_cache: str | Path | None = None, log=print) -> dict:
    """Build and write ``out`` and its sidecar; returns the engine metadata."""
    trt = import_tensorrt()
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.is_file():
        raise MissingFile(f"ONNX model {onnx_path} not found; export one with polyp-live export")
    spec = ModelSpec.load(onnx_path)
    meta = engine_metadata(trt, precision, spec, onnx_path)
    check_precision_supported(precision, meta)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # TensorRT 11 keeps the flag but is always strongly typed
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory() as tmp:
        graph = precision_graph(onnx_path, precision, Path(tmp), calibration)
        log(f"parsing {graph.name} ({precision})")
        if not parser.parse_from_file(str(graph)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise EngineBuildError(f"TensorRT cannot parse {onnx_path} ({len(errors)} errors):\n  " + "\n  ".join(errors))
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    cache = None
    if timing_cache:
        data = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)
    log("building the engine (minutes on first build)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path}; see the log above")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_bytes(bytes(serialized))
    tmp_out.replace(out)
    if cache is not None:
        Path(timing_cache).write_bytes(bytes(cache.serialize()))
    replace(spec, info={**spec.info, "engine": meta}).save(out)
    return meta


def cached_engine_path(onnx_path: str | Path, precision: str, trt_version: str, info: dict) -> Path:
    """Cached engine of ``onnx_path``, named for GPU, compute capability, TensorRT version, precision and
    the revision of the precision graphs (:data:`~polyp_live.engines.precision.GRAPH_REVISION`).

    Beside a user's ONNX in a writable folder, else in the user cache keyed by the ONNX's sha256
    (:mod:`polyp_live.cache`): the bundled model's folder in site-packages is not ours to write.
    """
    gpu = "".join(ch if ch.isalnum() else "-" for ch in info["gpu"].lower()).strip("-")
    cc = info["compute_capability"].replace(".", "")
    onnx_path = Path(onnx_path)
    return artefact_path(onnx_path, f"{onnx_path.stem}.{gpu}-sm{cc}-trt{trt_version}-{precision}-g{GRAPH_REVISION}.engine")
