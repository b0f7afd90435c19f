"""Host the project's model behind one Triton model with PyTriton (``polyp-live-serve``).

Clients send the resized uint8 ROI (see :mod:`polyp_live.engines.triton_wire`); the server
normalises it with the shared :func:`~polyp_live.core.preprocess.normalize` and runs the
project's own backend (ONNX Runtime on the CPU, TensorRT or torch where present), so a served
frame gets exactly the arithmetic of a local one. Triton's dynamic batcher groups the requests of
several rooms; the backends take one image at a time, so a batch runs as a loop over its images.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyp_live.core.backend import Backend
from polyp_live.core.errors import BackendUnavailableError, ServeError
from polyp_live.engines.orphan_guard import OrphanGuard
from polyp_live.core.preprocess import normalize
from polyp_live.engines.triton_wire import (INPUT_DTYPE, INPUT_NAME, MODEL_NAME, OUTPUT_DTYPE, OUTPUT_NAME,
                                            SPEC_PARAMETER, spec_to_parameter)
from polyp_live.engines.registry import load_backend


@dataclass(frozen=True)
class ServeConfig:
    """What to serve and where.

    Attributes:
        model: the model file, loaded through :func:`polyp_live.engines.registry.load_backend`.
        backend, precision, threads: passed to ``load_backend``.
        model_name: the Triton model name clients ask for.
        host: address the endpoints listen on (default loopback; 0.0.0.0 = every interface).
        http_port, grpc_port, metrics_port: Triton's three endpoints.
        max_batch: the largest batch the dynamic batcher forms.
        max_queue_delay_us: how long a request may wait in the queue for others to batch with.
        ready_timeout: seconds to wait for the model to load before giving up.
        workspace: where PyTriton puts its model store and its copy of Triton (default: a fresh
            folder under ~/.cache/pytriton, removed on a clean stop).
        verbose: print Triton's own log.
    """

    model: Path
    backend: str = "auto"
    precision: str = "auto"
    threads: int = 0
    model_name: str = MODEL_NAME
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    max_queue_delay_us: int = 2000
    ready_timeout: float = 120.0
    workspace: Path | None = None
    verbose: bool = False


class BatchRunner:
    """The inference callable: uint8 ``[N, H, W, 3]`` BGR -> float16 ``[N, H, W]`` probabilities.

    Thread-free and Triton-free, so it is tested on its own. Triton has already checked dtype and
    shape against the model config; the check here guards direct callers.
    """

    def __init__(self, backend: Backend):
        self.backend = backend
        self.spec = backend.spec

    def __call__(self, images: np.ndarray) -> np.ndarray:
        h, w = self.spec.input_height, self.spec.input_width
        if images.dtype != INPUT_DTYPE or images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(f"input {INPUT_NAME!r} must be uint8 [batch, {h}, {w}, 3], "
                             f"got {images.dtype} {list(images.shape)}")
        out = np.empty((len(images), h, w), OUTPUT_DTYPE)
        for i, image in enumerate(images):
            out[i] = self.backend.infer(normalize(image, self.spec)[None])
        return out


def python_library_dir() -> str | None:
    """The running interpreter's ``LIBDIR`` when it holds a shared ``libpython``, else None.

    PyTriton's Python-backend stub links ``libpython3.X.so.1.0`` and finds the system's copy first.
    When this interpreter (pyenv, a venv over a self-built Python) is a different patch release, the
    stub then runs the system's C runtime under this interpreter's standard library and model load
    fails (``'_thread.RLock' object has no attribute '_recursion_count'``). Putting LIBDIR first on
    the server's ``LD_LIBRARY_PATH`` makes the stub load the matching library.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if not libdir or not ldlibrary.endswith(".so"):
        return None  # a static interpreter: nothing to match, the stub uses the system library
    return libdir if any(Path(libdir).glob(f"{ldlibrary}*")) else None


def summary(exc: BaseException) -> str:
    """One line for an error that may carry a whole traceback: its last ``...Error: ...`` line, else its first."""
    lines = [line.strip() for line in str(exc).replace("\\n", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return (errors[-1] if errors else lines[0] if lines else type(exc).__name__)[:240]


def check_numpy_abi() -> None:
    """Refuse numpy 2 under PyTriton 0.7 with the fix, instead of serving empty answers.

    PyTriton 0.7's Python-backend stub is compiled against the numpy 1 ABI; under numpy 2 every
    output tensor reaches the client with zero bytes (seen here with 0.7.0 and numpy 2.4).
    """
    from importlib.metadata import version

    pytriton_version = tuple(int(p) for p in version("nvidia-pytriton").split(".")[:2] if p.isdigit())
    if int(np.__version__.split(".")[0]) >= 2 and pytriton_version <= (0, 7):
        raise BackendUnavailableError(f"PyTriton {version('nvidia-pytriton')} needs numpy<2 but numpy {np.__version__} "
                                      "is installed; serve from its own environment: python -m venv .venv-serve && "
                                      ".venv-serve/bin/pip install -e '.[serve]'")


class ModelServer:
    """A running PyTriton server hosting one model; a context manager.

    ``with ModelServer(config) as server:`` loads the backend, starts Triton, binds the model and
    returns once the model answers readiness over gRPC; leaving the block stops Triton and frees the
    backend, on every exit path.
    """

    def __init__(self, config: ServeConfig):
        self.config = config
        self.backend: Backend | None = None
        self._triton = None
        # Triton's own log goes to a file unless --verbose; error messages point at it.
        self.log_path = None if config.verbose else Path(tempfile.gettempdir()) / f"polyp-live-serve-{config.grpc_port}.log"
        self._saved_library_path: str | None = None
        self._patched_env = False
        # Ends tritonserver and its stub if this process is killed outright (they would hold the ports).
        self._guard = OrphanGuard()

    # ---- endpoints ---------------------------------------------------------------------------

    def _client_host(self) -> str:
        return "127.0.0.1" if self.config.host in ("0.0.0.0", "::", "") else self.config.host

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self._client_host()}:{self.config.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host()}:{self.config.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host()}:{self.config.metrics_port}/metrics"

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "ModelServer":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        try:
            from pytriton.decorators import batch
            from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
            from pytriton.triton import Triton, TritonConfig
        except ImportError:
            raise BackendUnavailableError("serving needs PyTriton: pip install 'polyp-live[serve]'") from None

        check_numpy_abi()
        cfg = self.config
        if cfg.workspace is not None and Path(cfg.workspace).exists():
            raise ServeError(f"--workspace {cfg.workspace} already exists; PyTriton needs a new folder")
        if not cfg.verbose:
            logging.getLogger("pytriton").setLevel(logging.WARNING)
        self.backend = load_backend(cfg.model, cfg.backend, threads=cfg.threads, precision=cfg.precision)
        spec = self.backend.spec
        runner = BatchRunner(self.backend)

        @batch
        def infer_func(**inputs):
            return {OUTPUT_NAME: runner(inputs[INPUT_NAME])}

        self._check_ports_free()
        self._patch_library_path()
        triton_config = TritonConfig(http_address=cfg.host, http_port=cfg.http_port, grpc_address=cfg.host,
                                     grpc_port=cfg.grpc_port, metrics_address=cfg.host,
                                     metrics_port=cfg.metrics_port, log_verbose=1 if cfg.verbose else 0,
                                     log_file=self.log_path, exit_on_error=True,
                                     # No NVIDIA driver: skip GPU metrics, whose NVML probe only prints an error.
                                     allow_gpu_metrics=None if Path("/dev/nvidiactl").exists() else False)
        self._triton = Triton(config=triton_config, workspace=cfg.workspace)
        self._triton.bind(
            model_name=cfg.model_name, infer_func=infer_func,
            inputs=[Tensor(name=INPUT_NAME, dtype=INPUT_DTYPE, shape=(spec.input_height, spec.input_width, 3))],
            outputs=[Tensor(name=OUTPUT_NAME, dtype=OUTPUT_DTYPE, shape=(spec.input_height, spec.input_width))],
            config=ModelConfig(max_batch_size=cfg.max_batch,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=cfg.max_queue_delay_us)),
            strict=True)
        self._attach_spec(spec_to_parameter(spec))
        self._guard.start()
        try:
            self._triton.run()
        except Exception as exc:  # PyTriton raises its own types for a server that will not start
            raise ServeError(f"Triton did not start ({summary(exc)}); {self._log_hint()}") from None
        self._wait_ready()

    def _check_ports_free(self) -> None:
        # Triton would fail on a taken port, and PyTriton would then talk to whatever holds it.
        cfg = self.config
        for option, port in (("--http-port", cfg.http_port), ("--grpc-port", cfg.grpc_port),
                             ("--metrics-port", cfg.metrics_port)):
            with socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET) as s:
                # As Triton does: a port left in TIME_WAIT by a killed server is free, a listener is not.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((cfg.host, port))
                except OSError as exc:
                    raise ServeError(f"port {port} on {cfg.host} is not free ({exc.strerror}); choose another "
                                     f"{option} or stop what holds it") from None

    def _attach_spec(self, spec_json: str) -> None:
        """Put the sidecar into the generated config.pbtxt as the ``polyp_live_spec`` parameter.

        PyTriton's public ModelConfig has no free parameters; its generated Triton config carries
        ``backend_parameters`` as config parameters, so the spec rides along there. Should a PyTriton
        release move this, clients fall back to their local sidecar (``--model``) and say so.
        """
        for model in getattr(self._triton._model_manager, "models", []):
            if model.model_name == self.config.model_name:
                model._get_triton_model_config().backend_parameters[SPEC_PARAMETER] = spec_json

    def _wait_ready(self) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        address = self.grpc_url.removeprefix("grpc://")
        deadline = time.monotonic() + self.config.ready_timeout
        last = "no answer"
        with grpcclient.InferenceServerClient(address) as client:
            while time.monotonic() < deadline:
                try:
                    if client.is_model_ready(self.config.model_name, client_timeout=2.0):
                        return
                    last = "model not ready"
                except InferenceServerException as exc:
                    last = exc.message() or str(exc)
                if not self.alive():
                    break
                time.sleep(0.2)
        raise ServeError(f"model {self.config.model_name!r} not ready on {self.grpc_url} within "
                         f"{self.config.ready_timeout:g} s ({last}); {self._log_hint()}")

    def alive(self) -> bool:
        """True while Triton and the model's proxy process both run."""
        return self._triton is not None and self._triton.is_alive()

    def wait(self, stop: threading.Event, poll: float = 0.5) -> None:
        """Serve until ``stop`` is set; raise :class:`ServeError` if Triton dies on its own."""
        while not stop.wait(poll):
            if not self.alive():
                raise ServeError(f"Triton stopped unexpectedly; {self._log_hint()}")

    def _log_hint(self) -> str:
        return f"Triton's log: {self.log_path}" if self.log_path else "see Triton's log above"

    def close(self) -> None:
        """Stop Triton and free the backend. Safe to call twice."""
        try:
            if self._triton is not None:
                self._triton.stop()
        except Exception:  # noqa: BLE001 - a server that never came up fails to stop; the start error matters
            pass
        finally:
            self._triton = None
            self._guard.stop()
            if self.backend is not None:
                self.backend.close()
                self.backend = None
            self._restore_library_path()

    def _patch_library_path(self) -> None:
        # PyTriton starts tritonserver with a copy of os.environ; there is no other way in.
        libdir = python_library_dir()
        if libdir is None:
            return
        self._saved_library_path = os.environ.get("LD_LIBRARY_PATH")
        parts = [libdir] + [p for p in (self._saved_library_path or "").split(os.pathsep) if p and p != libdir]
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(parts)
        self._patched_env = True

    def _restore_library_path(self) -> None:
        if not self._patched_env:
            return
        if self._saved_library_path is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = self._saved_library_path
        self._patched_env = False
