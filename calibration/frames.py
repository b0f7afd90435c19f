"""Representative frames for calibration, drawn deterministically and spread over the source."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyp_live.core.errors import PolypLiveError, SourceError
from polyp_live.core.datasets import read_pair, scan, split_stems
from polyp_live.core.spec import ModelSpec
from polyp_live.core.readers import IMAGE_SUFFIXES, read_whole_image
from polyp_live.core.segmenter import prepare_still
from polyp_live.cache import model_cache_dir
from polyp_live.realtime.video_file import VideoFileSource


class CalibrationError(PolypLiveError, ValueError):
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
        samples = scan(path)
        stems = split_stems(path, split, samples)
        return [read_pair(samples[stems[i]])[0] for i in _evenly(len(stems), count)]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        # The live path's reader: a JPEG cut short is skipped, not filled with grey rows.
        frames = [read_whole_image(files[i]) for i in _evenly(len(files), count)]
        frames = [f for f in frames if f is not None]
    elif path.is_file():
        frames = video_frames(path, count, name)
    else:
        raise CalibrationError(f"{name} {source} not found; pass a video, an image folder or a dataset folder")
    if not frames:
        raise CalibrationError(f"{name} {source} yields no decodable frames")
    return frames


def video_frames(path: Path, count: int, name: str = "calibration source") -> list[np.ndarray]:
    """``count`` frames spread evenly over a video, read in order by the live path's reader (no
    seeking: a seek lands on keyframes or between them, depending on the file), so a damaged frame
    is skipped here as it is skipped live, and positions are counted in the file, not in pictures."""
    source = VideoFileSource(str(path))
    try:
        source.open()
        total = source.frame_count or _count_frames(source)
        wanted, frames = set(_evenly(total, count)), []
        last = max(wanted, default=-1)
        while source.last_index < last and (frame := source.read()) is not None:
            if source.last_index in wanted:
                frames.append(frame)
    except SourceError as exc:
        detail = str(exc).removeprefix(f"video file {path} ")
        raise CalibrationError(f"{name} {path} yields no decodable frames: {detail}") from None
    finally:
        source.close()
    return frames


def _count_frames(source: VideoFileSource) -> int:
    """Frames in a file whose header gives no length: read once to the end, then start again."""
    while source.read() is not None:
        pass
    total = source.last_index + 1
    source.rewind()
    return total


def build_calibration_set(source: str | Path, spec: ModelSpec, count: int = 500, split: str = "train") -> np.ndarray:
    """N x 3 x H x W float32 network inputs, prepared as the live path prepares each frame: the field
    of view cut out, then the one shared preprocessing (whole frames would calibrate the margins
    the model never sees)."""
    return np.concatenate([prepare_still(f, spec)[0] for f in sample_frames(source, count, split)])


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
