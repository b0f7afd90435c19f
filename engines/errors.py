"""Errors the engines raise; each message names the input and the fix."""


class ModelLoadError(RuntimeError):
    """A model file is missing, not loadable, or does not match its sidecar."""


class BackendUnavailableError(RuntimeError):
    """The requested backend's runtime is not installed or cannot run here."""


class ServerUnreachableError(BackendUnavailableError):
    """An inference server cannot be reached, or does not serve the requested model, at start."""


class InferenceUnavailable(RuntimeError):
    """A remote inference request failed for a transient reason (server lost, timed out, restarting).

    The live path keeps video flowing, marks the annotation as missing and calls ``infer`` again
    later; the backend reconnects with backoff and ``backend.status`` says what it is doing.
    """


class InferenceRejected(RuntimeError):
    """The inference server refused a request as malformed (wrong shape or dtype): not transient."""


class ServeError(RuntimeError):
    """The inference server cannot start or stopped unexpectedly; the message names the fix."""
