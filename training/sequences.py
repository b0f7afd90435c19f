"""Synthetic colonoscopy sequences with ground truth, from still images of a polyp set and a polyp-free set.

Public polyp data is stills; the live path runs on video. Each still is held for a number of frames
with smooth camera motion (the same motion as the demo clip) inside an endoscope-style field of view,
and its mask moves with it, so temporal smoothing, the persistence of the presence decision and
flicker can be measured against a known truth. Polyp and polyp-free stills come in a seeded random
order, so polyps appear and disappear as in a procedure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.errors import InvalidValue
from polyp_live.core.datasets import read_pair, scan, split_stems


@dataclass(frozen=True)
class SequenceSpec:
    """How a sequence is rendered.

    Attributes:
        width, height: frame size (default 720x576, a PAL endoscopy processor's output).
        frames_per_image: how long each still is held (15 = half a second at 30 fps).
        seed: order of the stills and their motion.
    """

    width: int = 720
    height: int = 576
    frames_per_image: int = 15
    seed: int = 0


def _camera(t: float, rng_seed: int) -> tuple[float, float, float, float]:
    """Smooth (zoom, angle, dx, dy) at normalised time t in [0, 1]: a slow push with a little sway."""
    rng = np.random.default_rng(rng_seed)
    phase = rng.uniform(0, 2 * np.pi, 3)
    zoom = 1.0 + 0.15 * t
    angle = 6 * np.sin(np.pi * t + phase[0])
    dx = 0.04 * np.sin(np.pi * t + phase[1])
    dy = 0.04 * np.sin(np.pi * t + phase[2])
    return zoom, angle, dx, dy


def render_still(image: np.ndarray, mask: np.ndarray, spec: SequenceSpec, seed: int):
    """Yield (frame BGR, mask bool) for one still held for ``spec.frames_per_image`` frames."""
    h, w = spec.height, spec.width
    fh, fw = int(h * 0.92), int(w * 0.80)
    x0, y0 = (w - fw) // 2 + int(0.06 * w), (h - fh) // 2
    fov = np.zeros((h, w), np.uint8)
    c = int(0.12 * fw)
    poly = np.array([[x0 + c, y0], [x0 + fw - c, y0], [x0 + fw, y0 + c], [x0 + fw, y0 + fh - c],
                     [x0 + fw - c, y0 + fh], [x0 + c, y0 + fh], [x0, y0 + fh - c], [x0, y0 + c]], np.int32)
    cv2.fillPoly(fov, [poly], 1)
    src = cv2.resize(image, (fw, fh), interpolation=cv2.INTER_AREA)
    src_mask = cv2.resize(mask.astype(np.uint8), (fw, fh), interpolation=cv2.INTER_NEAREST)
    n = spec.frames_per_image
    for i in range(n):
        zoom, angle, dx, dy = _camera(i / max(1, n - 1), seed)
        matrix = cv2.getRotationMatrix2D((fw / 2, fh / 2), angle, zoom)
        matrix[:, 2] += (dx * fw, dy * fh)
        moved = cv2.warpAffine(src, matrix, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        moved_mask = cv2.warpAffine(src_mask, matrix, (fw, fh), flags=cv2.INTER_NEAREST,
                                    borderMode=cv2.BORDER_REFLECT_101)
        frame = np.zeros((h, w, 3), np.uint8)
        frame[y0:y0 + fh, x0:x0 + fw] = moved
        full_mask = np.zeros((h, w), np.uint8)
        full_mask[y0:y0 + fh, x0:x0 + fw] = moved_mask
        frame[fov == 0] = 0
        full_mask[fov == 0] = 0
        cv2.putText(frame, f"{i:03d}", (12, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (220, 220, 220), 1, cv2.LINE_AA)
        yield frame, full_mask.astype(bool)


def write_sequence(out: str | Path, spec: SequenceSpec, data: str | Path | None = None,
                   negatives: str | Path | None = None, split: str = "test", limit: int = 0) -> dict:
    """Render a split of a polyp set and/or a polyp-free set to ``out/frames/*.jpg`` and ``out/masks/*.png``.

    Returns (and writes as ``out/sequence.json``) the list of stills with their first frame.
    """
    out = Path(out)
    stills: list[tuple[str, str, object]] = []
    for kind, root in (("polyp", data), ("polyp-free", negatives)):
        if root:
            samples = scan(root, negatives=kind == "polyp-free")
            stems = split_stems(root, split, samples)
            stills += [(kind, s, samples[s]) for s in stems]
    if not stills:
        raise InvalidValue("nothing to render: give a polyp set, a polyp-free set or both")
    order = np.random.default_rng(spec.seed).permutation(len(stills))
    stills = [stills[i] for i in order][: limit or None]
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    index, listing = 0, []
    for k, (kind, stem, sample) in enumerate(stills):
        image, mask = read_pair(sample)
        listing.append({"first_frame": index, "kind": kind, "stem": stem})
        for frame, frame_mask in render_still(image, mask, spec, spec.seed * 100003 + k):
            name = f"{index:06d}"
            cv2.imwrite(str(out / "frames" / f"{name}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
            cv2.imwrite(str(out / "masks" / f"{name}.png"), frame_mask.astype(np.uint8) * 255)
            index += 1
    meta = {"frames": index, "fps": 30.0, "frames_per_image": spec.frames_per_image, "split": split,
            "width": spec.width, "height": spec.height, "seed": spec.seed,
            "sources": {"polyp": str(data or ""), "polyp-free": str(negatives or "")}, "stills": listing}
    (out / "sequence.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta
