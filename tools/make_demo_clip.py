#!/usr/bin/env python3
"""Build the bundled demo clip from a few Kvasir-SEG test-split images and polyp-free test frames.

Each still gets a few seconds of smooth synthetic camera motion (pan, zoom, rotation, slight
focus blur) and is placed in an endoscope-style field of view with black margins and on-screen
text, at 1280x720 and 29.97 FPS. Polyp scenes alternate with polyp-free ones (HyperKvasir frames,
CC BY 4.0), so the demo shows the ordinary frames staying quiet as well as polyps outlined.
Test-split images only: the shipped model never trained on them.

Example:
    polyp-live make-demo --data ../shared/data/kvasir-seg --negatives ../shared/data/negatives \
        --out realtime/assets/demo.mp4
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.errors import InvalidValue
from polyp_live.arguments import (DEFAULT_DATA, DEFAULT_NEGATIVES, check_dataset, check_output_file, command_parser,
                                  printable, refuse_overwriting_inputs)
from polyp_live.core.errors import PolypLiveError
from polyp_live.core.datasets import read_pair, scan, split_stems

WIDTH, HEIGHT = 1280, 720
FPS = 30000 / 1001


def fov_mask(width: int, height: int, fov_w: int, fov_h: int, corner: int) -> np.ndarray:
    """An octagonal field of view centred in the frame, as many video processors draw it."""
    x0, y0 = (width - fov_w) // 2, (height - fov_h) // 2
    x1, y1 = x0 + fov_w, y0 + fov_h
    poly = np.array([[x0 + corner, y0], [x1 - corner, y0], [x1, y0 + corner], [x1, y1 - corner],
                     [x1 - corner, y1], [x0 + corner, y1], [x0, y1 - corner], [x0, y0 + corner]], np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [poly], 255)
    return mask


def camera_path(t: float, seed: int) -> tuple[float, float, float, float, float]:
    """Smooth (zoom, angle, dx, dy, blur) at normalised time t in [0, 1]."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * math.pi, 4)
    zoom = 1.05 + 0.2 * (0.5 - 0.5 * math.cos(math.pi * t))
    angle = 8 * math.sin(2 * math.pi * 0.5 * t + phase[0])
    dx = 0.06 * math.sin(2 * math.pi * 0.7 * t + phase[1])
    dy = 0.05 * math.sin(2 * math.pi * 0.5 * t + phase[2])
    blur = max(0.0, 1.2 * math.sin(2 * math.pi * 0.8 * t + phase[3]))
    return zoom, angle, dx, dy, blur


def render(image: np.ndarray, t: float, seed: int, fov: np.ndarray, fov_box, frame_no: int,
           credit: str = "Kvasir-SEG (Jha et al., 2020)") -> np.ndarray:
    x0, y0, fw, fh = fov_box
    src = cv2.resize(image, (fw, fh), interpolation=cv2.INTER_AREA)
    zoom, angle, dx, dy, blur = camera_path(t, seed)
    matrix = cv2.getRotationMatrix2D((fw / 2, fh / 2), angle, zoom)
    matrix[:, 2] += (dx * fw, dy * fh)
    moved = cv2.warpAffine(src, matrix, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if blur > 0.3:
        moved = cv2.GaussianBlur(moved, (0, 0), blur)
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    frame[y0:y0 + fh, x0:x0 + fw] = moved
    frame[fov == 0] = 0
    # On-screen text in the margins, as endoscopy processors show it.
    cv2.putText(frame, "polyp-live demo", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (230, 230, 230), 1, cv2.LINE_AA)
    cv2.putText(frame, credit, (20, 70), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 200, 200), 1, cv2.LINE_AA)
    cv2.putText(frame, f"{frame_no / FPS:06.2f}s", (WIDTH - 150, HEIGHT - 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (230, 230, 230), 1, cv2.LINE_AA)
    return frame


def main(argv=None) -> int:
    p = command_parser("make-demo", __doc__)
    p.add_argument("--data", default=DEFAULT_DATA, metavar="DIR",
                   help=f"Kvasir-SEG folder (images/, masks/, splits/); default {DEFAULT_DATA}")
    p.add_argument("--out", default="realtime/assets/demo.mp4", metavar="PATH",
                   help="clip to write (default realtime/assets/demo.mp4, the bundled clip in a checkout)")
    p.add_argument("--images", type=int, default=5, metavar="N", help="how many test-split images (default 5)")
    p.add_argument("--negatives", default=DEFAULT_NEGATIVES, metavar="DIR",
                   help=f"polyp-free frames (images/, splits/); '' for polyp scenes only (default {DEFAULT_NEGATIVES})")
    p.add_argument("--negative-images", type=int, default=2, metavar="N",
                   help="polyp-free HyperKvasir test frames placed between the polyp scenes (default 2)")
    p.add_argument("--seconds", type=float, default=3.0, metavar="S", help="seconds per image (default 3)")
    p.add_argument("--seed", type=int, default=7, metavar="N", help="picks the images and the camera paths (default 7)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (the default is the bundled clip)")
    args = p.parse_args(argv)
    if args.images < 1 or not math.isfinite(args.seconds) or args.seconds * FPS < 1 or args.negative_images < 0:
        p.error(f"--images needs at least 1, --seconds at least one frame ({1 / FPS:.3f}) and --negative-images "
                "at least 0")
    check_output_file(p, "--out", args.out, (".mp4",))
    if Path(args.out).exists() and not args.force:
        p.error(f"--out {args.out} exists (the default is the bundled demo clip); pass --force to replace it, or "
                "choose another path")
    refuse_overwriting_inputs({"--out": args.out}, [args.data, args.negatives], parser=p)
    check_dataset(p, "--data", args.data, "polyps")
    if args.negative_images:
        check_dataset(p, "--negatives", args.negatives, "negatives")
    try:
        return make_clip(args)
    except PolypLiveError as exc:
        print(f"polyp-live make-demo: error: {printable(exc)}", file=sys.stderr)
        return 2


def make_clip(args: argparse.Namespace) -> int:
    """Write the clip; the file appears whole under --out or not at all."""
    samples = scan(args.data)
    stems = split_stems(args.data, "test", samples)
    if args.images > len(stems):
        raise InvalidValue(f"--images {args.images} but {args.data} has {len(stems)} test images")
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(len(stems), size=args.images, replace=False))
    scenes = [(samples[stems[i]], stems[i], "Kvasir-SEG (Jha et al., 2020)") for i in chosen]
    if args.negatives and args.negative_images:
        neg_samples = scan(args.negatives, negatives=True)
        # HyperKvasir frames only: their terms (CC BY 4.0) allow redistribution with credit.
        neg_stems = [s for s in split_stems(args.negatives, "test", neg_samples) if s.startswith("hyperkvasir-")]
        picks = np.random.default_rng(args.seed + 1).choice(len(neg_stems), size=args.negative_images, replace=False)
        negatives = [(neg_samples[neg_stems[i]], neg_stems[i], "polyp-free: HyperKvasir (Borgli et al., 2020)")
                     for i in sorted(picks)]
        # Polyp first (the README's picture is frame 75), then alternate.
        mixed = []
        for k, scene in enumerate(scenes):
            mixed.append(scene)
            if k < len(negatives):
                mixed.append(negatives[k])
        scenes = mixed
    fov_w, fov_h = 940, 700
    fov = fov_mask(WIDTH, HEIGHT, fov_w, fov_h, corner=90)
    fov_box = ((WIDTH - fov_w) // 2, (HEIGHT - fov_h) // 2, fov_w, fov_h)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    frames_per_image = int(round(args.seconds * FPS))
    frame_no = 0
    try:
        for k, (sample, _, credit) in enumerate(scenes):
            image, _ = read_pair(sample)
            for i in range(frames_per_image):
                writer.write(render(image, i / max(1, frames_per_image - 1), args.seed + k, fov, fov_box, frame_no,
                                    credit))
                frame_no += 1
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    writer.release()
    tmp.replace(out)
    print(f"wrote {out}: {frame_no} frames, {WIDTH}x{HEIGHT} at {FPS:.3f} FPS, "
          f"{out.stat().st_size / 1e6:.1f} MB, test-split scenes {[stem for _, stem, _ in scenes]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
