"""The one error base, :class:`PolypLiveError`, and the errors every layer shares.

Errors of one layer only (a dataset, an engine build, a figure) live beside their code and derive
from :class:`PolypLiveError` too, so a command catches user errors with one ``except`` clause.
:class:`InferenceUnavailable` is not among them: it is the transient "try again later" of a remote
backend, which the live path handles frame by frame.
"""

from __future__ import annotations

import numpy as np


def printable(text: object) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``): a newline or a terminal
    escape sequence in a file name can neither split a one-line error nor rewrite the terminal."""
    out = []
    for ch in str(text):
        code = ord(ch)
        if code < 32 or code == 127 or 0x80 <= code < 0xA0:
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    return "".join(out)


class PolypLiveError(RuntimeError):
    """The one base of every error a user can cause or fix: its message names the input and what to do.

    Commands print it as one line and exit non-zero (2 for :class:`UsageError`); anything else that
    escapes is a bug, and shows as one.
    """


class SourceError(PolypLiveError):
    """A source cannot be opened or read, or was lost for longer than the reconnect timeout."""


class OutputError(PolypLiveError):
    """A recording, mask folder or stats file cannot be written."""


class InferenceLost(PolypLiveError):
    """File mode: the inference server stayed unreachable past the reconnect timeout.

    A file is annotated frame by frame; pushing the rest through unannotated would finish "successfully"
    with frames the model never saw, so the run stops instead (the recording so far is finalised).
    """


class StageError(PolypLiveError):
    """A pipeline stage failed; carries the stage name."""

    def __init__(self, stage: str, exc: BaseException):
        self.stage, self.exc = stage, exc
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, MemoryError):
            detail = "out of memory; close other programs, lower the source resolution or raise the memory limit"
        super().__init__(f"{stage} stage failed: {detail}" if not isinstance(exc, PolypLiveError) else detail)


class InvalidValue(PolypLiveError, ValueError):
    """A value given by the user (an option, a setting, a control) that cannot work; the message says
    which values can. Still a ValueError, for code that validates values in bulk."""


class MissingFile(PolypLiveError, FileNotFoundError):
    """A file the user named (or a default one) does not exist; the message says how to make or find it."""


class UsageError(PolypLiveError):
    """Options that cannot work together or with this model or source; exit 2 like a parse error."""

class ModelLoadError(PolypLiveError):
    """A model file is missing, not loadable, or does not match its sidecar."""


class ModelOutputError(ModelLoadError):
    """A model's first output is not a probability map (NaN, infinite or outside [0, 1]): it would see nothing."""


def check_probability_map(prob, model: str) -> None:
    """Raise :class:`ModelOutputError` unless ``prob`` is finite and lies in [0, 1]."""
    if not np.isfinite(prob).all():
        bad = int(np.count_nonzero(~np.isfinite(prob)))
        raise ModelOutputError(f"model {model} gave {bad} NaN or infinite values on its first frame; it is broken "
                               "(re-export it, or check the sidecar's mean and std)")
    low, high = float(prob.min()), float(prob.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ModelOutputError(f"model {model} gave values in [{low:.3g}, {high:.3g}] on its first frame, not "
                               "probabilities in [0, 1]; set \"output\": \"logits\" in its sidecar if it ends "
                               "without a sigmoid")


class BackendUnavailableError(PolypLiveError):
    """The requested backend's runtime is not installed or cannot run here."""


class ServerUnreachableError(BackendUnavailableError):
    """An inference server cannot be reached, or does not serve the requested model, at start."""


class InferenceUnavailable(RuntimeError):
    """A remote inference request failed for a transient reason (server lost, timed out, restarting).

    The live path keeps video flowing, marks the annotation as missing and calls ``infer`` again
    later; the backend reconnects with backoff and ``backend.status`` says what it is doing.
    """


class InferenceRejected(PolypLiveError):
    """The inference server refused a request as malformed (wrong shape or dtype): not transient."""


class ServeError(PolypLiveError):
    """The inference server cannot start or stopped unexpectedly; the message names the fix."""
