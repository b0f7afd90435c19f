"""Stand-ins for the ``tensorrt`` and ``cuda.bindings.runtime`` modules.

They implement just the API surface polyp-live uses, with the signatures of the TensorRT 10/11 and
cuda-python documentation, on real host memory: "device" allocations are ctypes buffers, copies are
memmoves, and the fake engine computes a brightness rule from the bytes at its input address. So
buffer sizes, tensor addresses, copy directions and the call order are all exercised without a GPU.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
import types

import numpy as np


class FakeCudart(types.ModuleType):
    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorNoDevice = 100

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode(enum.IntEnum):
        cudaStreamCaptureModeGlobal = 0

    def __init__(self, devices: int = 1, name: bytes = b"NVIDIA Fake GPU", cc=(8, 9)):
        super().__init__("cuda.bindings.runtime")
        self.devices, self.gpu_name, self.cc = devices, name, cc
        self.buffers: dict[int, ctypes.Array] = {}
        self.calls: list[tuple] = []
        self.capturing = None
        self.graphs: dict[int, list] = {}
        self.freed: list[int] = []

    def _ok(self, *values):
        return (self.cudaError_t.cudaSuccess, *values)

    def cudaGetErrorString(self, err):
        return self._ok(b"fake error")

    def cudaGetDeviceCount(self):
        return self._ok(self.devices)

    def cudaGetDeviceProperties(self, device):
        return self._ok(types.SimpleNamespace(name=self.gpu_name, major=self.cc[0], minor=self.cc[1]))

    def _alloc(self, nbytes, kind):
        buf = (ctypes.c_char * nbytes)()
        ptr = ctypes.addressof(buf)
        self.buffers[ptr] = buf
        self.calls.append((kind, nbytes))
        return self._ok(ptr)

    def cudaMalloc(self, nbytes):
        return self._alloc(nbytes, "cudaMalloc")

    def cudaMallocHost(self, nbytes):
        return self._alloc(nbytes, "cudaMallocHost")

    def cudaFree(self, ptr):
        self.freed.append(ptr)
        return self._ok()

    cudaFreeHost = cudaFree

    def cudaStreamCreate(self):
        return self._ok(4242)

    def cudaStreamDestroy(self, stream):
        self.calls.append(("cudaStreamDestroy",))
        return self._ok()

    def cudaStreamSynchronize(self, stream):
        self.calls.append(("cudaStreamSynchronize",))
        return self._ok()

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        assert stream == 4242
        self.calls.append(("cudaMemcpyAsync", kind.name, nbytes))
        ctypes.memmove(int(dst), int(src), nbytes)
        return self._ok()

    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing = []
        self.calls.append(("cudaStreamBeginCapture",))
        return self._ok()

    def cudaStreamEndCapture(self, stream):
        graph = len(self.graphs) + 1
        self.graphs[graph] = self.capturing
        self.capturing = None
        return self._ok(graph)

    def cudaGraphInstantiate(self, graph, flags):
        return self._ok(graph * 100)

    def cudaGraphLaunch(self, graph_exec, stream):
        self.calls.append(("cudaGraphLaunch",))
        for work in self.graphs[graph_exec // 100]:
            work()
        return self._ok()

    def cudaGraphExecDestroy(self, graph_exec):
        return self._ok()

    def cudaGraphDestroy(self, graph):
        return self._ok()


def _view(ptr: int, shape, dtype) -> np.ndarray:
    count = int(np.prod(shape))
    pointer = ctypes.cast(ptr, ctypes.POINTER(np.ctypeslib.as_ctypes_type(np.dtype(dtype))))
    return np.ctypeslib.as_array(pointer, (count,)).reshape(shape)


def make_fake_tensorrt(cudart: FakeCudart, version: str = "11.0.0", size: int = 32, parse_ok: bool = True):
    """A ``tensorrt`` module. Version 11 has no BuilderFlag.FP16/INT8 (as in the real 11.0)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    trt.built_from = []

    class Logger:
        WARNING = 2

        def __init__(self, severity=2):
            pass

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 1

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class MemoryPoolType(enum.Enum):
        WORKSPACE = 0

    class DataType(enum.Enum):
        FLOAT = 0

    if version.startswith("10"):
        trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")

    def nptype(dtype):
        return np.float32

    class Network:
        def __init__(self, flags):
            self.flags = flags

    class Parser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else 2

        def parse_from_file(self, path):
            trt.built_from.append(path)
            import onnx
            onnx.load(path)  # the graph handed to TensorRT must be a valid ONNX file
            return parse_ok

        def get_error(self, i):
            return f"In node {i} (importConv): UNSUPPORTED_NODE: fake parser error {i}"

    class TimingCache:
        def serialize(self):
            return b"cache"

    class Config:
        def __init__(self):
            self.pools = {}

        def set_memory_pool_limit(self, pool, nbytes):
            self.pools[pool] = nbytes

        def create_timing_cache(self, data):
            return TimingCache()

        def set_timing_cache(self, cache, ignore_mismatch):
            return True

        def set_flag(self, flag):  # a correct build path never calls this on TensorRT 11
            raise AssertionError("builder flags are gone in TensorRT 11; precision must come from the graph")

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            trt.calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            trt.calls.append(("build_serialized_network", network.flags))
            return json.dumps({"fake_engine": True, "size": size}).encode()

    class Engine:
        def __init__(self, blob):
            self.size = json.loads(blob)["size"]
            self.names = ["image", "prob"]
            self.num_io_tensors = 2

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_shape(self, name):
            return (1, 3, self.size, self.size) if name == "image" else (1, 1, self.size, self.size)

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "image" else TensorIOMode.OUTPUT

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses = engine, {}

        def set_tensor_address(self, name, ptr):
            trt.calls.append(("set_tensor_address", name))
            self.addresses[name] = ptr
            return True

        def _run(self):
            s = self.engine.size
            x = _view(self.addresses["image"], (1, 3, s, s), np.float32)
            out = _view(self.addresses["prob"], (1, 1, s, s), np.float32)
            out[...] = 1 / (1 + np.exp(-8 * (x.mean(axis=1, keepdims=True) - 0.5)))

        def execute_async_v3(self, stream_handle):
            assert stream_handle == 4242
            trt.calls.append(("execute_async_v3",))
            if cudart.capturing is not None:
                cudart.capturing.append(self._run)  # captured, not executed
            else:
                self._run()
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return Engine(blob)

    for name, value in dict(Logger=Logger, NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
                            TensorIOMode=TensorIOMode, MemoryPoolType=MemoryPoolType, DataType=DataType,
                            nptype=nptype, Builder=Builder, OnnxParser=Parser, Runtime=Runtime).items():
        setattr(trt, name, value)
    return trt


def install(monkeypatch, cudart: FakeCudart, trt=None) -> None:
    """Put the stand-ins where ``import tensorrt`` and ``from cuda.bindings import runtime`` look."""
    cuda_pkg = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda_pkg.bindings = bindings
    monkeypatch.setitem(sys.modules, "cuda", cuda_pkg)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    if trt is not None:
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
    else:
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as if not installed
