"""TensorRT backend: a serialized engine run with execute_async_v3 and CUDA-graph replay.

Named I/O tensors (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``), device addresses set
once with ``set_tensor_address``, pinned host buffers, one stream. After a warm-up run the enqueue is
captured in a CUDA graph and replayed, which removes per-launch CPU overhead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyp_live.core.backend import Backend
from polyp_live.engines.cuda_memory import CudaGraph, HostDeviceBuffer, Stream, gpu_info
from polyp_live.core.errors import ModelLoadError
from polyp_live.core.spec import ModelSpec
from polyp_live.engines.tensorrt_builder import build_engine, cached_engine_path, import_tensorrt


def check_engine_matches(spec: ModelSpec, engine_path: Path, trt_version: str, info: dict) -> None:
    """Refuse an engine built for another TensorRT or GPU, naming the rebuild command."""
    meta = spec.info.get("engine")
    if not meta:
        raise ModelLoadError(f"engine {engine_path} has no build metadata in its sidecar; rebuild it with polyp-live build-engine")
    problems = []
    if meta.get("tensorrt_version") != trt_version:
        problems.append(f"TensorRT {meta.get('tensorrt_version')} (running {trt_version})")
    if meta.get("gpu") != info["gpu"] or meta.get("compute_capability") != info["compute_capability"]:
        problems.append(f"GPU {meta.get('gpu')} sm_{meta.get('compute_capability')} "
                        f"(running {info['gpu']} sm_{info['compute_capability']})")
    if problems:
        rebuild = (f"polyp-live build-engine --model {meta.get('source_onnx', 'MODEL.onnx')} "
                   f"--precision {meta.get('precision', 'fp16')} --out {engine_path}")
        raise ModelLoadError(f"engine {engine_path} was built for {' and '.join(problems)}; rebuild it: {rebuild}")


class TensorRTBackend(Backend):
    """Runs a ``.engine``; given an ``.onnx`` it builds (once) and caches an engine beside it.

    Args:
        model_path: ``.engine``/``.plan`` with its sidecar, or ``.onnx`` with its sidecar.
        precision: for ``.onnx`` input, the precision to build (fp32, fp16, int8).
        calibration: for int8 builds, the calibration set (N x 3 x H x W).
        cuda_graph: replay a captured CUDA graph after the first run.
    """

    def __init__(self, model_path: str | Path, precision: str = "fp16", calibration=None, cuda_graph: bool = True):
        trt = import_tensorrt()
        info = gpu_info()
        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} not found; pass --model with an existing .engine or .onnx")
        if path.suffix.lower() == ".onnx":
            engine_path = cached_engine_path(path, precision, trt.__version__, info)
            if not engine_path.is_file():
                if precision == "int8" and calibration is None:
                    raise ModelLoadError(f"an INT8 engine needs calibration frames; build it first: polyp-live build-engine "
                                         f"--model {path} --precision int8 --calib DATA --out {engine_path}")
                build_engine(path, engine_path, precision, calibration)
            path = engine_path
        self.spec = ModelSpec.load(path)
        check_engine_matches(self.spec, path, trt.__version__, info)
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"TensorRT could not deserialize {path}; rebuild it with polyp-live build-engine")
        self.stream, self.inputs, self.outputs, self.graph = None, {}, {}, None
        try:
            self._bind(path)
        except BaseException:
            self.close()   # pinned and device buffers and the stream are freed, not leaked
            raise
        self.use_graph, self.runs = cuda_graph, 0
        self.name = f"tensorrt:{self.spec.info['engine']['precision']}"
        self.model_path, self.precision = path, str(self.spec.info["engine"]["precision"])

    def _bind(self, path: Path) -> None:
        """The execution context, the stream and one pinned host + device buffer per tensor."""
        trt = self.trt
        self.context = self.engine.create_execution_context()
        self.stream = Stream()
        self.inputs, self.outputs = {}, {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            buf = (self.inputs if is_input else self.outputs)[name] = HostDeviceBuffer(shape, dtype)  # owned at once
            self.context.set_tensor_address(name, int(buf.device))
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise ModelLoadError(f"engine {path} has {len(self.inputs)} inputs and {len(self.outputs)} outputs; "
                                 "polyp-live needs one of each")
        self.input = next(iter(self.inputs.values()))
        self.output = next(iter(self.outputs.values()))
        expected = (1, 3, self.spec.input_height, self.spec.input_width)
        if self.input.shape != expected:
            raise ModelLoadError(f"engine {path} takes input shape {self.input.shape} but its sidecar describes {expected}")

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        np.copyto(self.input.host, batch, casting="same_kind")
        self.stream.upload(self.input)
        if self.graph is not None:
            self.graph.launch()
        else:
            self._enqueue()
            # The first run flushes TensorRT's deferred work; capturing before it is not allowed.
            if self.use_graph and self.runs >= 1:
                try:
                    self.graph = CudaGraph(self.stream, self._enqueue)
                except Exception:  # some engines cannot be captured: keep plain enqueues
                    self.use_graph = False
        self.stream.download(self.output)
        self.stream.synchronize()
        self.runs += 1
        return self.output.host.reshape(self.output.shape[-2:]).astype(np.float32)  # a copy: the buffer is reused

    def close(self) -> None:
        """Free the CUDA graph, the buffers and the stream. Safe after a failed constructor, and twice."""
        if self.graph is not None:
            self.graph.close()
            self.graph = None
        for buf in [*self.inputs.values(), *self.outputs.values()]:
            buf.free()
        self.inputs, self.outputs = {}, {}
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self.context = self.engine = None
