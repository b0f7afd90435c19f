"""Triton client backend: the live path sends each frame's ROI to an inference server over gRPC.

Everything else stays local (capture, ROI, smoothing, decision, rendering, recording). The wire
format is the resized uint8 ROI (see :mod:`polyp_live.engines.triton_wire`), so the backend sets
``wants_uint8 = True``: a caller that honours it passes the output of ``resize_for_model`` and skips
the normalisation, which the server does. ``infer`` also accepts the normalised float32 batch the
local backends take and restores the uint8 image exactly, so a caller that ignores the flag works.

Faults: at start an unreachable server or a missing model raises
:class:`~polyp_live.core.errors.ServerUnreachableError` (one line, exit 1). Mid-run, a request
that fails for a transient reason (server gone, restarting, over ``timeout``) raises
:class:`~polyp_live.core.errors.InferenceUnavailable` within ``timeout`` seconds; the backend
then reconnects with a fresh channel after a backoff (0.25 s doubling to 4 s), refusing requests
at once meanwhile so the caller's loop never blocks, and ``status`` says what it is doing. A
request the server refuses as malformed raises :class:`~polyp_live.core.errors.InferenceRejected`.
"""

from __future__ import annotations

import time

import numpy as np

from polyp_live.core.errors import InvalidValue
from polyp_live.core.backend import Backend
from polyp_live.core.errors import (BackendUnavailableError, InferenceRejected, InferenceUnavailable,
                                       ServerUnreachableError)
from polyp_live.core.spec import ModelSpec
from polyp_live.engines.triton_wire import (INPUT_NAME, INPUT_TRITON_TYPE, MODEL_NAME, OUTPUT_NAME,
                                            OUTPUT_TRITON_TYPE, SPEC_PARAMETER, as_wire_image, spec_from_parameter)

# gRPC codes that mean "the request was wrong"; every other failure is treated as transient.
REJECTED = ("StatusCode.INVALID_ARGUMENT", "StatusCode.UNIMPLEMENTED", "StatusCode.OUT_OF_RANGE")
LOST_STATUS = "inference server lost, reconnecting"
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 4.0
UNKNOWN_GRACE_S = 5.0  # a server up from the first look may register its model a moment later


def parse_server(url: str) -> str:
    """``grpc://host:8001`` or ``host:8001`` -> ``host:8001``; other schemes are refused."""
    address = url.strip()
    if address.startswith(("http://", "https://")):
        raise InvalidValue(f"--server {url}: polyp-live talks gRPC; use grpc://HOST:PORT (Triton's gRPC port, "
                         "8001 by default)")
    address = address.removeprefix("grpc://").rstrip("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidValue(f"--server {url} is not HOST:PORT; use e.g. grpc://localhost:8001")
    return address


def _first_line(exc: Exception) -> str:
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    return (message or type(exc).__name__).strip().splitlines()[0][:200]


class TritonBackend(Backend):
    """A model served by Triton, behind the Backend protocol.

    Args:
        server: ``grpc://HOST:PORT`` of the Triton gRPC endpoint.
        model_name: the Triton model name.
        timeout: seconds a request (or a start-up check) may take before it counts as lost.
        fallback_spec: used when the server's model config carries no ``polyp_live_spec``
            (a repository written by hand); it must match the served input size.
        wait: seconds to wait at start for a server that is still starting or a model that is
            still loading (a room started together with its server); a model the server does not
            have at all fails at once.
        notify: called once with a line saying what it waits for.
    """

    wants_uint8 = True
    outputs_logits = False   # the server answers probabilities

    def __init__(self, server: str, model_name: str = MODEL_NAME, timeout: float = 1.0,
                 fallback_spec: ModelSpec | None = None, wait: float = 0.0, notify=None):
        try:
            import tritonclient.grpc as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError:
            raise BackendUnavailableError("--backend triton needs tritonclient: "
                                          "pip install 'polyp-live[triton-client]'") from None
        if timeout <= 0:
            raise InvalidValue(f"--server-timeout {timeout:g} must be positive, e.g. 1.0 seconds")
        self._grpc, self._server_error = grpcclient, InferenceServerException
        self.address = parse_server(server)
        self.model_name, self.timeout = model_name, timeout
        self.status = ""              # "" while healthy; shown on the HUD while the server is lost
        self.lost_requests = 0        # requests that failed transiently, over the backend's life
        self.reconnects = 0           # times the server came back after a loss
        self._backoff = BACKOFF_FIRST
        self._retry_at = 0.0
        self._lost = False
        self._client = grpcclient.InferenceServerClient(self.address)
        try:
            self._wait_until_ready(wait, notify)
            self.spec = self._fetch_spec(fallback_spec)
        except BaseException:
            self.close()
            raise
        self.name = f"triton:{model_name}@{self.address}"
        info = self.spec.info if isinstance(self.spec.info, dict) else {}
        self.precision = str(info.get("precision", "fp32"))   # what the server said it runs
        h, w = self.spec.input_height, self.spec.input_width
        self._input = grpcclient.InferInput(INPUT_NAME, [1, h, w, 3], INPUT_TRITON_TYPE)
        self._output = grpcclient.InferRequestedOutput(OUTPUT_NAME)

    def _model_state(self) -> str:
        """``"ready"``, ``"unknown"`` (the server is up and does not have the model, or not yet) or
        ``"unreachable"`` (no answer, or the server itself is still starting)."""
        try:
            if not self._client.is_server_live(client_timeout=self.timeout):
                return "unreachable"
            if self._client.is_model_ready(self.model_name, client_timeout=self.timeout):
                return "ready"
            self._client.get_model_metadata(self.model_name, client_timeout=self.timeout)
            return "loading"  # known to the server, not ready yet
        except self._server_error as exc:
            if "unknown model" in str(exc).lower():
                return "unknown"
            return "unreachable"

    def _wait_until_ready(self, wait: float, notify) -> None:
        """Wait up to ``wait`` s for a server still starting or a model still loading.

        A server that answers from the first look and lacks the model is given a short grace
        (PyTriton registers its model a moment after the server comes up), then named at once; one
        seen starting during the wait gets the whole wait to register it.
        """
        where = f"inference server {self.address}"
        start = time.monotonic()
        deadline = start + max(0.0, wait)
        announced = seen_starting = False
        while True:
            state = self._model_state()
            if state == "ready":
                return
            now = time.monotonic()
            seen_starting = seen_starting or state == "unreachable"
            if state == "unknown" and (now >= deadline or (not seen_starting and now - start >= UNKNOWN_GRACE_S)):
                raise ServerUnreachableError(f"{where} has no model {self.model_name!r}; check --triton-model "
                                             f"(polyp-live-serve serves {MODEL_NAME!r} unless told otherwise)")
            if now >= deadline:
                if state == "loading":
                    raise ServerUnreachableError(f"model {self.model_name!r} on {where} is still loading after "
                                                 f"{wait:g} s; wait for the server or raise --server-wait")
                return  # unreachable: _fetch_spec names it
            if not announced and notify is not None and state != "unknown":
                what = "to load model" if state == "loading" else "to start and serve model"
                notify(f"waiting up to {wait:g} s for {where} {what} {self.model_name!r}")
                announced = True
            time.sleep(min(0.5, max(0.0, deadline - now)))

    def _fetch_spec(self, fallback: ModelSpec | None) -> ModelSpec:
        where = f"inference server {self.address}"
        try:
            if not self._client.is_model_ready(self.model_name, client_timeout=self.timeout):
                raise ServerUnreachableError(f"model {self.model_name!r} on {where} is not ready; see the server's "
                                             "log")
            config = self._client.get_model_config(self.model_name, as_json=True,
                                                   client_timeout=self.timeout)["config"]
        except self._server_error as exc:
            raise ServerUnreachableError(f"{where} not reachable ({_first_line(exc)}); start it with "
                                         "polyp-live-serve or check --server") from None
        inputs = {t["name"]: t for t in config.get("input", [])}
        outputs = {t["name"]: t for t in config.get("output", [])}
        if (INPUT_NAME not in inputs or inputs[INPUT_NAME].get("data_type") != f"TYPE_{INPUT_TRITON_TYPE}"
                or OUTPUT_NAME not in outputs or outputs[OUTPUT_NAME].get("data_type") != f"TYPE_{OUTPUT_TRITON_TYPE}"):
            raise ServerUnreachableError(f"model {self.model_name!r} on {where} does not take uint8 {INPUT_NAME!r} and "
                                         f"answer float16 {OUTPUT_NAME!r}; serve it with polyp-live-serve or "
                                         "polyp-live-serve --triton-repository")
        dims = [int(d) for d in inputs[INPUT_NAME].get("dims", [])]
        served = tuple(dims[-3:-1]) if len(dims) >= 3 else None
        parameter = config.get("parameters", {}).get(SPEC_PARAMETER, {}).get("string_value")
        if parameter:
            try:
                spec = spec_from_parameter(parameter)
            except (ValueError, TypeError, KeyError) as exc:
                raise ServerUnreachableError(f"model {self.model_name!r} on {where} has an invalid "
                                             f"{SPEC_PARAMETER} parameter ({exc}); rewrite its repository") from None
        elif fallback is not None:
            spec = fallback
        else:
            raise ServerUnreachableError(f"model {self.model_name!r} on {where} carries no {SPEC_PARAMETER} "
                                         "parameter; pass --model with the served model's sidecar")
        if served != (spec.input_height, spec.input_width):
            raise ServerUnreachableError(f"model {self.model_name!r} on {where} takes {dims} but the spec says "
                                         f"{spec.input_height}x{spec.input_width}; pass --model with the served "
                                         "model's sidecar")
        return spec

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Send one image; return the float32 HxW probability map.

        Raises:
            InferenceUnavailable: the server is lost or slow; call again later (it reconnects).
            InferenceRejected: the server refused the request as malformed.
            ValueError: the input is neither the uint8 image nor the float32 batch at the model size.
        """
        image = as_wire_image(batch, self.spec)
        now = time.monotonic()
        if self._lost:
            if now < self._retry_at:
                self.lost_requests += 1
                raise InferenceUnavailable(self.status)
            self._reconnect()
        self._input.set_data_from_numpy(image)
        try:
            result = self._client.infer(self.model_name, [self._input], outputs=[self._output],
                                        client_timeout=self.timeout)
        except self._server_error as exc:
            if str(exc.status()) in REJECTED:
                raise InferenceRejected(f"inference server {self.address} refused the request: "
                                        f"{_first_line(exc)}") from None
            self._mark_lost(exc)
            raise InferenceUnavailable(f"{self.status} ({_first_line(exc)})") from None
        if self._lost:
            self._lost, self.status, self._backoff = False, "", BACKOFF_FIRST
            self.reconnects += 1
        try:
            prob = result.as_numpy(OUTPUT_NAME)
        except ValueError:  # an answer whose byte count does not fit its shape
            prob = None
        h, w = self.spec.input_height, self.spec.input_width
        if prob is None or prob.size != h * w:
            raise InferenceRejected(f"inference server {self.address} answered {OUTPUT_NAME!r} with "
                                    f"{0 if prob is None else prob.size} values instead of {h * w}; if it runs "
                                    "PyTriton 0.7, install numpy<2 in the server's environment")
        return prob.reshape(h, w).astype(np.float32)

    def _mark_lost(self, exc: Exception) -> None:
        self.lost_requests += 1
        if self._lost:
            self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        self._lost = True
        self._retry_at = time.monotonic() + self._backoff
        self.status = LOST_STATUS

    def _reconnect(self) -> None:
        # A fresh channel: gRPC's own reconnect backoff grows to minutes, ours stays within 4 s.
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - a broken channel may fail to close; it is dropped anyway
            pass
        self._client = self._grpc.InferenceServerClient(self.address)

    def close(self) -> None:
        """Close the gRPC channel. Safe to call twice."""
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            client.close()

