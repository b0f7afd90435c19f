"""The preview window, owned by the main thread. Keys: q/Esc quit, space pause, o overlay, s snapshot."""

from __future__ import annotations

import os
import queue
import sys
import time
from pathlib import Path

import cv2

from polyp_live.realtime.render import signal_lost_screen

WINDOW = "polyp-live"


def display_available() -> bool:
    """True when a window can be opened (an X11/Wayland display on Linux; assumed elsewhere)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Window:
    """Shows the newest rendered frame and turns key presses into pipeline controls."""

    def __init__(self, pipeline, snapshot_dir: str = "."):
        self.pipeline = pipeline
        self.snapshot_dir = Path(snapshot_dir)
        self.current = None
        self.sized = False
        # OpenCV's Qt build ships no fonts; point it at the system's to keep stderr quiet.
        for fonts in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts"):
            if os.path.isdir(fonts):
                os.environ.setdefault("QT_QPA_FONTDIR", fonts)
                break
        # Resizable, aspect kept, no Qt toolbar: the image is the interface.
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)

    def tick(self) -> None:
        """Show what is new and handle one key press; called from the main thread's loop."""
        p = self.pipeline
        if not (p.controls.paused.is_set() and p.source.live):  # a paused live view holds its frame
            try:
                self.current = p.display_q.get_nowait()
            except queue.Empty:
                pass
        if self.current is not None and not self.sized:
            cv2.resizeWindow(WINDOW, self.current.shape[1], self.current.shape[0])
            self.sized = True
        if p.status and p.source.live:
            cv2.imshow(WINDOW, signal_lost_screen(self.current, p.source.size, p.status))
        elif self.current is not None:
            cv2.imshow(WINDOW, self.current)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            p.stop.set()
        elif key == ord(" "):
            if p.controls.paused.is_set():
                p.controls.paused.clear()
            else:
                p.controls.paused.set()
        elif key == ord("o"):
            p.controls.overlay = not p.controls.overlay
        elif key == ord("s") and self.current is not None:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            path = self.snapshot_dir / f"polyp-live-{time.strftime('%Y%m%d-%H%M%S')}.png"
            cv2.imwrite(str(path), self.current)
            p.status = f"saved {path}"

    def close(self) -> None:
        cv2.destroyWindow(WINDOW)
        cv2.waitKey(1)
