"""The preview window, owned by the main thread. Keys: q/Esc quit, space pause, o overlay, s snapshot."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cv2

from polyp_live.realtime.render import signal_lost_screen
from polyp_live.realtime.view import LiveView

WINDOW = "polyp-live"


def display_available() -> bool:
    """True when a window can be opened (an X11/Wayland display on Linux; assumed elsewhere)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Window:
    """Shows the newest rendered picture and turns key presses into view controls.

    Args:
        view: the pipeline's :class:`~polyp_live.realtime.view.LiveView`, the only thing the window
            reads or changes.
        snapshot_dir: where ``s`` saves the picture on screen.
    """

    def __init__(self, view: LiveView, snapshot_dir: str = "."):
        self.view = view
        self.snapshot_dir = Path(snapshot_dir)
        self.current = None
        self._seq = -1
        self._shown_key = None
        self.sized = False
        # OpenCV's Qt build ships no fonts; point it at the system's to keep stderr quiet.
        for fonts in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts"):
            if os.path.isdir(fonts):
                os.environ.setdefault("QT_QPA_FONTDIR", fonts)
                break
        # Resizable, aspect kept, no Qt toolbar: the image is the interface.
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)

    def frame_to_show(self):
        """What the screen shows now: the newest picture, the signal-lost screen, plus a transient message.

        Returns None when nothing changed since the last call (the screen keeps what it shows).
        """
        v = self.view
        if not (v.paused.is_set() and v.live_source):  # a paused live view holds its picture
            seq, image = v.newest()
            if seq != self._seq:
                self._seq, self.current = seq, image
        signal, message = v.signal, v.message
        key = (self._seq, signal if v.live_source else "", message)
        if key == self._shown_key:
            return None  # redrawing an unchanged picture 100 times a second would cost a core
        self._shown_key = key
        if signal and v.live_source:
            size = (self.current.shape[1], self.current.shape[0]) if self.current is not None else (640, 480)
            shown = signal_lost_screen(self.current, size, signal)
        else:
            shown = self.current
        if message and shown is not None:
            shown = shown.copy()  # the message is for the screen only, never for the recording
            scale = max(0.5, shown.shape[0] / 1000)
            cv2.putText(shown, message, (12, shown.shape[0] - 14), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 200, 255),
                        max(1, int(2 * scale)), cv2.LINE_AA)
        return shown

    def tick(self) -> None:
        """Show what is new and handle one key press; called from the main thread's loop."""
        shown = self.frame_to_show()
        if shown is not None:
            if not self.sized:
                cv2.resizeWindow(WINDOW, shown.shape[1], shown.shape[0])
                self.sized = True
            cv2.imshow(WINDOW, shown)
        self.handle_key(cv2.waitKey(1) & 0xFF)

    def handle_key(self, key: int) -> None:
        """q/Esc stop, space pause, o overlay on/off, s snapshot."""
        v = self.view
        if key in (ord("q"), 27):
            v.request_stop()
        elif key == ord(" "):
            v.control("pause")
        elif key == ord("o"):
            v.control("overlay")
        elif key == ord("s") and self.current is not None:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            path = self.snapshot_dir / f"polyp-live-{time.strftime('%Y%m%d-%H%M%S')}.png"
            if cv2.imwrite(str(path), self.current) and path.stat().st_size > 0:
                v.notify(f"saved {path}")
            else:
                v.notify(f"could not save {path}")

    def close(self) -> None:
        cv2.destroyWindow(WINDOW)
        cv2.waitKey(1)
