"""Errors the live pipeline raises; the CLI turns each into one line and a non-zero exit."""


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
    """Base class: the message names the input and what to do."""


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


class UsageError(PolypLiveError):
    """Options that cannot work together or with this model or source; exit 2 like a parse error."""
