"""HTTP MJPEG streams (``multipart/x-mixed-replace``) read part by part, so a JPEG cut short is seen.

FFmpeg's MJPEG demuxer, behind OpenCV, decodes a part that ends early (the server closed mid-image,
or sent fewer bytes than its ``Content-Length``) into a frame whose missing rows come from the
previous one, and reports success: a picture that never existed. Here each part is read whole: it is
a frame only when it holds exactly its ``Content-Length`` bytes (when given) and runs from the JPEG
start marker to the end marker; otherwise it is counted in :attr:`MjpegCapture.corrupt_frames` and
skipped, as a damaged file frame is. A response of any other type is not ours: the caller falls back
to OpenCV.
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse

import cv2
import numpy as np

READ_TIMEOUT_S = 5.0
MAX_PART_BYTES = 32 * 1024 * 1024  # a part larger than this is not a frame (a 4K JPEG is a few MB)


class NotMjpeg(Exception):
    """The URL answered, but not with a multipart MJPEG stream."""


class MjpegCapture:
    """A ``cv2.VideoCapture``-like reader of one HTTP MJPEG stream.

    Args:
        url: an ``http://`` or ``https://`` URL.
        timeout_s: limit on connecting and on each read from the socket.

    Raises:
        NotMjpeg: the server answered with another content type (let OpenCV handle it).
        OSError: the server could not be reached.
    """

    def __init__(self, url: str, timeout_s: float = 10.0):
        parts = urllib.parse.urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._conn = cls(parts.hostname, parts.port, timeout=timeout_s)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        self._conn.request("GET", path)
        self._response = self._conn.getresponse()
        kind = self._response.getheader("Content-Type", "")
        if self._response.status != 200 or not kind.lower().startswith("multipart/x-mixed-replace"):
            self.release()
            raise NotMjpeg(f"{url} answered {self._response.status} {kind or 'without a content type'}")
        boundary = ""
        for field in kind.split(";")[1:]:
            key, _, value = field.strip().partition("=")
            if key.lower() == "boundary":
                boundary = value.strip('"')
        self._boundary = boundary.removeprefix("--").encode()
        if self._conn.sock is not None:
            # As FFmpeg's read timeout: a given-up reader thread on a stalled stream ends by then.
            self._conn.sock.settimeout(READ_TIMEOUT_S)
        self._open = True
        self._pending = b""  # bytes read past a part's end (the next part's start), read again first
        self.corrupt_frames = 0
        self.size = (0, 0)

    # -- the VideoCapture surface the live source uses ----------------------------------------------

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self._open

    def set(self, *_args) -> bool:
        return False

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self.size[0])
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self.size[1])
        return 0.0  # no declared frame rate: the live source measures the intervals

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The next whole frame; damaged parts are counted and skipped. (False, None) when the stream ends."""
        while self._open:
            try:
                data = self._next_part()
            except (OSError, http.client.HTTPException, ValueError):
                data = None
            if data is None:
                self.release()
                return False, None
            image = decode_whole_jpeg(data)
            if image is None:
                self.corrupt_frames += 1
                continue
            self.size = (image.shape[1], image.shape[0])
            return True, image
        return False, None

    def release(self) -> None:
        self._open = False
        try:
            self._conn.close()
        except OSError:
            pass

    # -- parts ---------------------------------------------------------------------------------------

    def _line(self) -> bytes | None:
        if self._pending:
            cut = self._pending.find(b"\n")
            if cut >= 0:
                line, self._pending = self._pending[:cut + 1], self._pending[cut + 1:]
                return line
            line, self._pending = self._pending + self._response.fp.readline(65537), b""
            return line
        line = self._response.fp.readline(65537)
        return line if line else None

    def _read(self, n: int) -> bytes:
        head, self._pending = self._pending[:n], self._pending[n:]
        return head + (self._response.fp.read(n - len(head)) if len(head) < n else b"")

    def _next_part(self) -> bytes | None:
        """The next part's body (possibly damaged), or None when the stream ended before one began."""
        # Skip to the boundary line, then read the part's headers.
        while True:
            line = self._line()
            if line is None:
                return None
            if line.strip() and (not self._boundary or line.strip().lstrip(b"-").startswith(self._boundary)):
                break
        length = None
        while True:
            line = self._line()
            if line is None:
                return b""  # the stream ended inside the part's headers: a damaged part
            if not line.strip():
                break
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == "content-length":
                length = int(value.strip())
                if not 0 < length <= MAX_PART_BYTES:
                    raise ValueError(f"part length {length}")
        if length is not None:
            body = self._read(length)
            if len(body) < length:
                return b"SHORT" + body  # the stream ended inside the part: never a whole JPEG
            # A part shorter than its Content-Length swallows the next part's start: give that back,
            # so only the short part is lost (and counted).
            marker = body.find(b"\r\n--" + self._boundary) if self._boundary else -1
            if marker >= 0:
                self._pending = body[marker + 2:] + self._pending
                return b"SHORT" + body[:marker]
            return body
        # Without a length the part runs to the next boundary line: read lines until it.
        chunks = []
        while True:
            line = self._line()
            if line is None:
                return b"".join(chunks) + b"SHORT"
            if line.lstrip(b"-").startswith(self._boundary) and self._boundary:
                self._pending = line + self._pending
                return b"".join(chunks).rstrip(b"\r\n")
            chunks.append(line)


def decode_whole_jpeg(data: bytes) -> np.ndarray | None:
    """A BGR image from ``data`` only when it runs from the JPEG start marker to its end marker."""
    body = data.rstrip(b"\r\n")
    if not body.startswith(b"\xff\xd8") or not body.endswith(b"\xff\xd9"):
        return None
    try:
        return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None


def open_mjpeg(url: str, timeout_s: float) -> MjpegCapture | None:
    """An :class:`MjpegCapture` for ``url``, or None when it is not an MJPEG stream (or not reachable)."""
    try:
        return MjpegCapture(url, timeout_s)
    except (NotMjpeg, OSError, socket.timeout, http.client.HTTPException, ValueError):
        return None
