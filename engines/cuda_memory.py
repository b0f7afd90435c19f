"""CUDA memory and streams from NVIDIA's cuda-python, as in TensorRT's own Python samples.

Small classes that free what they allocate, and one :func:`cuda_call` that turns CUDA error codes
into exceptions. Imported only by the TensorRT path.
"""

from __future__ import annotations

import ctypes

import numpy as np

from polyp_live.core.errors import PolypLiveError, BackendUnavailableError


class CudaError(PolypLiveError, RuntimeError):
    """A CUDA runtime call failed; the message names the call and CUDA's error string."""


def import_cudart():
    """The CUDA runtime bindings, under either of cuda-python's module layouts."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise BackendUnavailableError("cuda-python is not installed: pip install 'polyp-live[tensorrt]' "
                                          "(or pip install cuda-python)") from None
    return cudart


def cuda_call(result, what: str = "CUDA call"):
    """Unpack a cuda-python ``(err, *values)`` tuple, raising :class:`CudaError` on failure."""
    cudart = import_cudart()
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(err)
        raise CudaError(f"{what} failed: {text.decode() if isinstance(text, bytes) else text}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def gpu_info(device: int = 0) -> dict:
    """Name and compute capability of a GPU; raises when there is none."""
    cudart = import_cudart()
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        raise BackendUnavailableError("no NVIDIA GPU found (or no CUDA driver); TensorRT needs one. "
                                      "Use the ONNX Runtime backend on this machine")
    props = cuda_call(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00").strip(), "compute_capability": f"{props.major}.{props.minor}"}


class HostDeviceBuffer:
    """A pinned host array and a device allocation of the same size, for one tensor."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        cudart = import_cudart()
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        host_ptr = cuda_call(cudart.cudaMallocHost(self.nbytes), "cudaMallocHost")
        pointer = ctypes.cast(host_ptr, ctypes.POINTER(np.ctypeslib.as_ctypes_type(self.dtype)))
        self.host = np.ctypeslib.as_array(pointer, (int(np.prod(self.shape)),)).reshape(self.shape)
        self._host_ptr = host_ptr
        self.device = cuda_call(cudart.cudaMalloc(self.nbytes), "cudaMalloc")

    def free(self) -> None:
        cudart = import_cudart()
        if self.device is not None:
            cuda_call(cudart.cudaFree(self.device), "cudaFree")
            cuda_call(cudart.cudaFreeHost(self._host_ptr), "cudaFreeHost")
            self.device = None


class Stream:
    """A CUDA stream as a context manager."""

    def __init__(self):
        self.cudart = import_cudart()
        self.handle = cuda_call(self.cudart.cudaStreamCreate(), "cudaStreamCreate")

    def upload(self, buf: HostDeviceBuffer) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda_call(self.cudart.cudaMemcpyAsync(buf.device, buf._host_ptr, buf.nbytes, kind, self.handle), "cudaMemcpyAsync")

    def download(self, buf: HostDeviceBuffer) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(self.cudart.cudaMemcpyAsync(buf._host_ptr, buf.device, buf.nbytes, kind, self.handle), "cudaMemcpyAsync")

    def synchronize(self) -> None:
        cuda_call(self.cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            cuda_call(self.cudart.cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CudaGraph:
    """Captures one enqueue on a stream and replays it with a single launch."""

    def __init__(self, stream: Stream, enqueue):
        cudart = stream.cudart
        self.stream, self.cudart = stream, cudart
        cuda_call(cudart.cudaStreamBeginCapture(stream.handle, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal),
                  "cudaStreamBeginCapture")
        try:
            enqueue()
        finally:
            self.graph = cuda_call(cudart.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture")
        self.exec = cuda_call(cudart.cudaGraphInstantiate(self.graph, 0), "cudaGraphInstantiate")

    def launch(self) -> None:
        cuda_call(self.cudart.cudaGraphLaunch(self.exec, self.stream.handle), "cudaGraphLaunch")

    def close(self) -> None:
        if self.exec is not None:
            cuda_call(self.cudart.cudaGraphExecDestroy(self.exec), "cudaGraphExecDestroy")
            cuda_call(self.cudart.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
            self.exec = None
