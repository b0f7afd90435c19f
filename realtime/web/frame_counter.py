"""A frame number drawn into the picture as black and white cells, and read back from it.

The web view's tests and glass-to-glass benchmark need to know which source frame a browser is
painting. The number survives H.264 and JPEG because each bit is a 16x16 cell, read at its centre;
the page's ``live.js`` reads the same layout (keep the two in step).
"""

from __future__ import annotations

import numpy as np

BITS = 16
CELL = 16
MARGIN = 8


def counter_origin(shape: tuple[int, ...]) -> tuple[int, int]:
    """(x, y) of the first cell: the bottom-left corner, clear of the HUD and the field of view."""
    return MARGIN, shape[0] - MARGIN - CELL


def draw_counter(image: np.ndarray, number: int) -> np.ndarray:
    """Draw ``number`` (mod 2**16) into ``image`` in place, most significant bit first; returns it."""
    x0, y0 = counter_origin(image.shape)
    for bit in range(BITS):
        on = (number >> (BITS - 1 - bit)) & 1
        x = x0 + bit * CELL
        image[y0:y0 + CELL, x:x + CELL] = 255 if on else 0
    return image


def read_counter(image: np.ndarray) -> int:
    """The number :func:`draw_counter` drew (after lossy coding: each cell's centre against mid-grey)."""
    x0, y0 = counter_origin(image.shape)
    number = 0
    for bit in range(BITS):
        x = x0 + bit * CELL + CELL // 2
        value = float(np.mean(image[y0 + CELL // 2 - 2:y0 + CELL // 2 + 2, x - 2:x + 2]))
        number = (number << 1) | int(value > 128)
    return number
