"""Representative frames for calibration, drawn deterministically and spread over the source."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from polyp_live.engines.preprocess import preprocess
from polyp_live.engines.spec import ModelSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class CalibrationError(ValueError):
    """The calibration source gives no usable frames; the message names it."""


def _evenly(n_total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``n_total`` (all of them when there are fewer)."""
    if n_total <= count:
        return list(range(n_total))
    return sorted({int(round(i)) for i in np.linspace(0, n_total - 1, count)})


def sample_frames(source: str | Path, count: int = 500, split: str = "train",
                  name: str = "calibration source") -> list[np.ndarray]:
    """BGR frames from a video, an image folder or a dataset split (``images/`` + ``splits/``).

    ``name`` is what the errors call the source: the calibration source, or the option that gave it.
    """
    path = Path(source)
    if (path / "images").is_dir():
        from polyp_live.training.dataset import read_pair, scan, split_stems
        samples = scan(path)
        stems = split_stems(path, split, samples)
        return [read_pair(samples[stems[i]])[0] for i in _evenly(len(stems), count)]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        frames = [cv2.imread(str(files[i]), cv2.IMREAD_COLOR) for i in _evenly(len(files), count)]
        frames = [f for f in frames if f is not None]
    elif path.is_file():
        cap = cv2.VideoCapture(str(path))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        frames = []
        for index in _evenly(total, count):
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            if ok:
                frames.append(frame)
        cap.release()
    else:
        raise CalibrationError(f"{name} {source} not found; pass a video, an image folder or a dataset folder")
    if not frames:
        raise CalibrationError(f"{name} {source} yields no decodable frames")
    return frames


def build_calibration_set(source: str | Path, spec: ModelSpec, count: int = 500, split: str = "train") -> np.ndarray:
    """N x 3 x H x W float32 network inputs, through the one shared preprocessing."""
    return np.concatenate([preprocess(f, spec) for f in sample_frames(source, count, split)])


def save_calibration_set(batch: np.ndarray, path: str | Path) -> Path:
    """Store a calibration set for reuse (``.npy``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, batch)
    tmp.replace(path)
    return path


def calibration_for(source: str | Path, spec: ModelSpec, count: int, model: str | Path,
                    save: str | None = None) -> tuple[np.ndarray, Path | None]:
    """The calibration set of ``--calib SOURCE`` (a saved ``.npy`` is loaded as it is).

    Args:
        save: ``None`` keeps nothing; a path stores the set there; ``""`` stores it in the model's
            cache folder (:func:`polyp_live.cache.model_cache_dir`), named after the source and count.

    Returns:
        The N x 3 x H x W set and where it was saved (None when it was not).
    """
    source = Path(source)
    if source.suffix == ".npy":
        return load_calibration_set(source), None
    if count < 1:
        raise CalibrationError(f"--calib-count needs at least 1 frame, got {count}")
    batch = build_calibration_set(source, spec, count)
    if save is None:
        return batch, None
    if save:
        target = Path(save)
    else:
        from polyp_live.cache import model_cache_dir
        target = model_cache_dir(model) / f"calib-{source.resolve().name}-{len(batch)}.npy"
    return batch, save_calibration_set(batch, target)


def load_calibration_set(path: str | Path) -> np.ndarray:
    """A calibration set saved by :func:`save_calibration_set`, checked to be N x 3 x H x W."""
    if not Path(path).is_file():
        raise CalibrationError(f"calibration set {path} not found; make one with --save-calib")
    try:
        data = np.load(path)  # allow_pickle stays off: a set is plain numbers
    except (ValueError, OSError, EOFError) as exc:
        raise CalibrationError(f"{path} is not a calibration set saved by --save-calib ({type(exc).__name__}); "
                               "pass a video, an image folder or a dataset folder instead") from None
    if not isinstance(data, np.ndarray) or data.ndim != 4 or data.shape[1] != 3:
        raise CalibrationError(f"calibration set {path} has shape {getattr(data, 'shape', None)}; "
                               "expected N x 3 x H x W")
    return data
