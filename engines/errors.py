"""Errors the engines raise; each message names the input and the fix."""


class ModelLoadError(RuntimeError):
    """A model file is missing, not loadable, or does not match its sidecar."""


class BackendUnavailableError(RuntimeError):
    """The requested backend's runtime is not installed or cannot run here."""
