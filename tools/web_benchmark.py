"""Glass-to-glass added by the browser view: ``polyp-live benchmark-web``.

Every frame of a clip made from the demo carries its number drawn as black and white cells
(:mod:`polyp_live.realtime.web.frame_counter`). The live product runs it in ``--realtime`` with
``--web`` while 0, 1 or 4 headless Chromium pages watch; the pages read the number of each frame they
paint and report the paint time (``?measure=1``), the server pairs it with the time the pipeline
published that frame (``/glass.json``). Reported per run: the browser's added delay p50/p95/p99 per
transport (WebRTC, MJPEG), and the pipeline's own figures (output FPS, dropped frames, video delay and
annotation delay p95) so that viewers can be seen to cost the pipeline nothing.

Both ends run on one machine with one clock, so "added" is paint time minus publish time exactly;
what the local window adds over publishing (one ``imshow``, well under a frame) is not subtracted.
Run it on an otherwise idle machine: the figures in ``docs/PERFORMANCE.md`` come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from polyp_live.realtime.web.frame_counter import CELL, MARGIN, draw_counter

VIEWER_COUNTS = (0, 1, 4)


def counter_clip(source: str, out: Path, count: int, size: tuple[int, int] | None = None, band: int = 0,
                 start: int = 0) -> Path:
    """Frames ``start .. start+count-1`` of ``source`` (resized to ``size``), each with its number drawn.

    ``band`` adds that many black rows under the picture so the number sits outside the endoscope
    image (the field-of-view detection then ignores it). The number drawn is the frame's index in
    the new clip. Written as MJPEG-in-AVI at high quality so the cells survive exactly.
    """
    capture = cv2.VideoCapture(source)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    writer = None
    try:
        for index in range(count):
            ok, frame = capture.read()
            if not ok:
                raise ValueError(f"{source} has fewer than {start + count} frames")
            if size is not None:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            if band:
                frame = cv2.copyMakeBorder(frame, 0, band, 0, 0, cv2.BORDER_CONSTANT, value=0)
            draw_counter(frame, index)
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps,
                                         (frame.shape[1], frame.shape[0]))
                writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
            writer.write(frame)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return out


COUNTER_BAND = CELL + 2 * MARGIN   # rows under the picture that hold the counter and its margins
