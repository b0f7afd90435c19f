"""Polyp image sets on disk: ``images/`` and ``masks/`` of matching stems, fixed ``splits/``, and
polyp-free sets (``images/`` only: every mask is empty by definition).

Read here once for every layer: training, evaluation, calibration, the demo and the figures. Every
image goes through :func:`~polyp_live.core.readers.read_whole_image`, so a file the live path
refuses is refused here too, naming the file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.errors import PolypLiveError
from polyp_live.core.readers import IMAGE_SUFFIXES, read_whole_image


class DatasetError(PolypLiveError, ValueError):
    """The dataset folder cannot be used as it is; the message names the file and the problem."""


@dataclass(frozen=True)
class Sample:
    stem: str
    image: Path
    mask: Path | None  # None: a polyp-free frame, its mask is empty


def _index(folder: Path) -> dict[str, Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES] if folder.is_dir() else []
    return {p.stem: p for p in sorted(files)}


def scan(root: str | Path, negatives: bool = False) -> dict[str, Sample]:
    """Pair images and masks by stem; refuse empty folders and unpaired files.

    With ``negatives`` the folder holds polyp-free frames: ``images/`` only, and every sample's
    ``mask`` is ``None`` (an empty mask).
    """
    root = Path(root)
    if negatives:
        if not (root / "images").is_dir():
            raise DatasetError(f"{root / 'images'} not found; a polyp-free set needs an images/ subfolder")
        images = _index(root / "images")
        if not images:
            raise DatasetError(f"{root / 'images'} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return {s: Sample(s, p, None) for s, p in images.items()}
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise DatasetError(f"{root / sub} not found; a dataset folder needs images/ and masks/ subfolders")
    images, masks = _index(root / "images"), _index(root / "masks")
    if not images:
        raise DatasetError(f"{root / 'images'} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for stem, path in images.items():
        if stem not in masks:
            raise DatasetError(f"image {path} has no mask; expected {root / 'masks' / stem}.<ext>")
    for stem, path in masks.items():
        if stem not in images:
            raise DatasetError(f"mask {path} has no image; expected {root / 'images' / stem}.<ext>")
    return {s: Sample(s, images[s], masks[s]) for s in images}


def split_stems(root: str | Path, split: str, samples: dict[str, Sample],
                ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> list[str]:
    """Stems of one split: from ``splits/<split>.txt``, or a seeded ratio split when there is no ``splits/``.

    A ``splits/`` folder without this split's file is an error, not a reason to draw a random
    split: that could put images of the fixed splits (val, test) into another one.
    """
    path = Path(root) / "splits" / f"{split}.txt"
    if not path.is_file() and path.parent.is_dir() and any(path.parent.glob("*.txt")):
        raise DatasetError(f"{path} not found, though {path.parent} holds fixed splits; add {split}.txt "
                           f"there or choose another split")
    if path.is_file():
        stems = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        unknown = [s for s in stems if s not in samples]
        if unknown:
            raise DatasetError(f"{path} lists {unknown[0]!r}, which has no image and mask pair")
        return stems
    names = {"train": 0, "val": 1, "test": 2}
    if split not in names:
        raise DatasetError(f"unknown split {split!r} and no {path}; use train, val or test")
    stems = sorted(samples)
    random.Random(seed).shuffle(stems)
    n = len(stems)
    # Small folders still get one validation and one test image each (when they have three).
    n_val = max(1 if n >= 3 else 0, int(round(ratios[1] * n)))
    n_test = max(1 if n >= 3 else 0, int(round(ratios[2] * n)))
    n_train = n - n_val - n_test
    bounds = [0, n_train, n_train + n_val, n]
    return sorted(stems[bounds[names[split]]:bounds[names[split] + 1]])


def read_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image (BGR uint8) and its mask (bool, binarised at 128); sizes must match."""
    # The live path's reader: a JPEG cut short is refused, not trained on with invented grey rows.
    image = read_whole_image(Path(sample.image))
    if image is None:
        raise DatasetError(f"cannot decode image {sample.image} (damaged or cut short); replace or remove it")
    if sample.mask is None:
        return image, np.zeros(image.shape[:2], bool)
    mask = read_whole_image(Path(sample.mask), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DatasetError(f"cannot decode mask {sample.mask} (damaged or cut short); replace or remove it")
    if mask.shape != image.shape[:2]:
        raise DatasetError(f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                           f"{image.shape[1]}x{image.shape[0]}; masks must match their images")
    return image, mask >= 128
