"""Datasets: segmentation sets (``images/`` and ``masks/`` of matching stems) and polyp-free sets
(``images/`` only: every mask is empty by definition).

Images are decoded, cropped to their field of view as the live path crops it
(:func:`core.roi.detect_fov` with the live defaults, so the model trains on what it is served),
resized once (through the shared :func:`core.preprocess.resize_for_model`) and cached as a
``.npz`` keyed by the file list and size, so CPU epochs are not spent on decoding the originals.
The cache holds each resized image as a JPEG at quality 95 and each mask bit-packed, so the caches
of Kvasir-SEG and the negatives together take tens of MB and can be copied to a GPU machine
(``--cache DIR``). Every problem with the data is found before training starts and names the
offending file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.preprocess import resize_for_model
from polyp_live.core.spec import ModelSpec
from polyp_live.core.config import RoiConfig
from polyp_live.core.datasets import DatasetError, read_pair, scan, split_stems
from polyp_live.core.roi import detect_fov



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
