"""Errors the engines raise; each message names the input and the fix."""


class ModelLoadError(RuntimeError):
    """A model file is missing, not loadable, or does not match its sidecar."""


class ModelOutputError(ModelLoadError):
    """A model's first output is not a probability map (NaN, infinite or outside [0, 1]): it would see nothing."""


def check_probability_map(prob, model: str) -> None:
    """Raise :class:`ModelOutputError` unless ``prob`` is finite and lies in [0, 1]."""
    import numpy as np

    if not np.isfinite(prob).all():
        bad = int(np.count_nonzero(~np.isfinite(prob)))
        raise ModelOutputError(f"model {model} gave {bad} NaN or infinite values on its first frame; it is broken "
                               "(re-export it, or check the sidecar's mean and std)")
    low, high = float(prob.min()), float(prob.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ModelOutputError(f"model {model} gave values in [{low:.3g}, {high:.3g}] on its first frame, not "
                               "probabilities in [0, 1]; set \"output\": \"logits\" in its sidecar if it ends "
                               "without a sigmoid")


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
