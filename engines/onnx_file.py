"""Reading an ONNX model file, with a one-line error for a file that is not one."""

from __future__ import annotations

from pathlib import Path

from polyp_live.core.errors import ModelLoadError


def read_onnx(path: str | Path):
    """The ``onnx.ModelProto`` in ``path``.

    Raises:
        ModelLoadError: the file is missing, or its bytes are not an ONNX model (a truncated copy, a
            text file renamed .onnx); onnx itself raises a protobuf DecodeError with a traceback.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model {path} not found; pass an exported .onnx file")
    try:
        return onnx.load(str(path))
    except (DecodeError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{path} is not a readable ONNX model ({type(exc).__name__}: the file is damaged or "
                             "not a model); pass a .onnx file written by polyp-live export") from None
