"""Where derived artefacts (INT8 models, TensorRT engines, calibration sets) are written and found.

A model the user points at in a folder they can write gets its artefacts beside it, as
``MODEL.int8.onnx`` or ``MODEL.<gpu>-sm<cc>-trt<version>-<precision>.engine``, so they travel with it.
The bundled model, and any model in a folder this user cannot write (site-packages, a read-only
share), gets them in the user cache folder instead, in a subfolder named after the model and the
first 12 hex digits of its sha256: a changed model never meets an artefact made from the old one.

The cache folder is platformdirs' ``user_cache_dir("polyp-live")``: ``$XDG_CACHE_HOME/polyp-live``,
by default ``~/.cache/polyp-live`` on Linux.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from polyp_live.resources import bundled_model

KEY_DIGITS = 12


def cache_root() -> Path:
    """The user cache folder of polyp-live (not created here)."""
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("polyp-live", appauthor=False))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, remembered while the file's size and mtime stay the same."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_cache_dir(model: str | Path) -> Path:
    """``<cache>/models/<model stem>-<sha256[:12]>``: the cache subfolder of one model file's bytes."""
    model = Path(model)
    return cache_root() / "models" / f"{model.stem}-{file_sha256(model)[:KEY_DIGITS]}"


def is_bundled(model: str | Path) -> bool:
    """True for a file in the package's own model folder (never written into, even when writable)."""
    try:
        return Path(model).resolve().parent == bundled_model().resolve().parent
    except OSError:
        return False


def writes_beside(model: str | Path) -> bool:
    """Whether artefacts of ``model`` belong beside it: a user's model in a folder they can write."""
    folder = Path(model).resolve().parent
    return not is_bundled(model) and os.access(folder, os.W_OK | os.X_OK)


def artefact_path(model: str | Path, name: str) -> Path:
    """Where the derived file ``name`` of ``model`` is read from, and written to when absent.

    An existing file beside the model wins (it was made there on purpose), then the cache; a new
    file goes beside a writable user model, else into the model's cache folder (writers create it).
    """
    model = Path(model)
    beside = model.with_name(name)
    if not is_bundled(model) and beside.is_file():
        return beside
    cached = model_cache_dir(model) / name
    return cached if cached.is_file() or not writes_beside(model) else beside


def candidates(model: str | Path, name: str) -> list[Path]:
    """Every place :func:`artefact_path` looks, in order (for messages that say where was looked)."""
    model = Path(model)
    places = [] if is_bundled(model) else [model.with_name(name)]
    return places + [model_cache_dir(model) / name]
