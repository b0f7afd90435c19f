"""Datasets: segmentation sets (``images/`` and ``masks/`` of matching stems) and polyp-free sets
(``images/`` only: every mask is empty by definition).

Images are decoded, cropped to their field of view as the live path crops it
(:func:`realtime.roi.detect_fov` with the live defaults, so the model trains on what it is served),
resized once (through the shared :func:`engines.preprocess.resize_for_model`) and cached as a
``.npz`` keyed by the file list and size, so CPU epochs are not spent on decoding the originals.
The cache holds each resized image as a JPEG at quality 95 and each mask bit-packed, so the caches
of Kvasir-SEG and the negatives together take tens of MB and can be copied to a GPU machine
(``--cache DIR``). Every problem with the data is found before training starts and names the
offending file.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp_live.engines.preprocess import resize_for_model
from polyp_live.engines.spec import ModelSpec
from polyp_live.realtime.config import RoiConfig
from polyp_live.realtime.sources import read_whole_image
from polyp_live.realtime.roi import detect_fov

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class DatasetError(ValueError):
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


def crop_to_fov(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The field of view of one still and its mask, cropped as ``polyp-live --roi auto`` crops a frame.

    Training on whole images while the live path (and ``tools/evaluate.py``) serves the crop would
    teach the model black margins and scope-guide panels it is never shown.
    """
    x, y, w, h = detect_fov(image, RoiConfig().brightness)
    return image[y:y + h, x:x + w], mask[y:y + h, x:x + w]


def load_split(root: str | Path, split: str, spec: ModelSpec, cache_dir: str | Path | None = None,
               seed: int = 0, negatives: bool = False) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Load one split resized to the model size: (stems, images Nx H x W x 3 uint8, masks N x H x W uint8 0/1).

    Each image is cropped to its field of view first (:func:`crop_to_fov`). ``negatives`` reads a
    polyp-free set (see :func:`scan`); its masks are all zero.
    """
    samples = scan(root, negatives=negatives)
    stems = split_stems(root, split, samples, seed=seed)
    if not stems:
        raise DatasetError(f"split {split!r} of {root} is empty")
    # "fov": caches of whole images (written before the crop) are not reused.
    key = hashlib.sha1(repr((str(Path(root).resolve()), stems, spec.input_height, spec.input_width,
                             negatives, "fov")).encode()).hexdigest()[:12]
    name = f"{Path(root).resolve().name}-{split}-{spec.input_height}x{spec.input_width}-{key}.npz"
    cache = Path(cache_dir) / name if cache_dir else None
    if cache is not None and cache.is_file():
        return stems, *_read_cache(cache, spec)
    images, masks = [], []
    for stem in stems:
        image, mask = crop_to_fov(*read_pair(samples[stem]))
        images.append(resize_for_model(image, spec))
        mask_u8 = mask.astype(np.uint8) * 255
        masks.append((resize_for_model(np.dstack([mask_u8] * 3), spec)[..., 0] >= 128).astype(np.uint8))
    images_arr, masks_arr = np.stack(images), np.stack(masks)
    if cache is not None:
        _write_cache(cache, images_arr, masks_arr)
        # What training sees is what the cache gives back (JPEG at quality 95), on first and later runs.
        return stems, *_read_cache(cache, spec)
    return stems, images_arr, masks_arr


def _write_cache(cache: Path, images: np.ndarray, masks: np.ndarray) -> None:
    encoded = [cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].ravel() for im in images]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, jpeg=np.concatenate(encoded), offsets=offsets, masks=np.packbits(masks.astype(bool), axis=-1),
             shape=np.asarray(masks.shape, np.int64))
    tmp.replace(cache)  # never a half-written cache


def _read_cache(cache: Path, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(cache)
    n, h, w = (int(v) for v in data["shape"])
    if (h, w) != (spec.input_height, spec.input_width):
        raise DatasetError(f"cache {cache} holds {w}x{h} images, not {spec.input_width}x{spec.input_height}; "
                           "delete it to rebuild")
    jpeg, offsets = data["jpeg"], data["offsets"]
    images = np.stack([cv2.imdecode(jpeg[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR) for i in range(n)])
    masks = np.unpackbits(data["masks"], axis=-1, count=w).astype(np.uint8)
    return images, masks
