"""The web view's two encoders: one JPEG per picture for every MJPEG viewer, one H.264 stream for every
WebRTC viewer.

Each runs on a thread of its own, only while someone watches, and reads the newest picture the
pipeline published to its :class:`~polyp_live.realtime.view.LiveView`; the pipeline never waits for
it, and it never waits for a viewer. However many viewers there are, each picture is encoded once.
An MJPEG viewer that falls behind takes the newest JPEG when it is ready again. An H.264 stream cannot
skip a picture (the next ones are coded against it), so a WebRTC viewer that falls behind jumps to
the newest keyframe (one per second, and one at once for a new viewer). A run that records sends its
recorder's H.264 packets instead (:class:`RecordingTap`): one encoder for the file and every viewer.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from fractions import Fraction
from typing import Callable

import cv2
import numpy as np

from polyp_live.realtime.recorder import yuv420_frame
from polyp_live.realtime.view import LiveView, Picture

IDLE_WAIT = 0.2          # seconds an encoder sleeps between checks while nobody watches
JPEG_QUALITY = 80
H264_BITRATE_PER_PIXEL = 4.0  # ~3.7 Mbit/s at 720p30: an endoscope picture's fine texture stays legible
RING = 90                # H.264 packets kept for viewers that are behind (3 s at 30 FPS)
MAX_BEHIND = 3           # packets a WebRTC viewer may lag before it jumps to the newest keyframe
WEB_NICENESS = 10        # the web view's threads yield the CPU to capture, inference and recording


def yield_to_the_pipeline(step: int = WEB_NICENESS) -> None:
    """Lower the calling thread's scheduling priority (Linux: per thread) so the web view, which may
    drop pictures, never takes CPU time the pipeline, which may not, needs. Best effort elsewhere."""
    if not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except OSError:
        pass


class Watched:
    """What every shared stream keeps: how many viewers watch it (work is done only for someone) and
    the failure, if any, for the main thread (``WebView.failure``)."""

    def __init__(self):
        self.viewers = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def add_viewer(self, n: int = 1) -> None:
        with self._lock:
            self.viewers = max(0, self.viewers + n)


class PictureEncoder(Watched):
    """A thread that encodes each new picture while ``viewers > 0``; subclasses implement :meth:`encode`.

    Args:
        view: where the pictures come from.
        on_new: called (on the encoder thread) after each encoded picture, e.g. to wake the web server.
    """

    name = "encoder"

    def __init__(self, view: LiveView, on_new: Callable[[], None] = lambda: None):
        super().__init__()
        self.view = view
        self.on_new = on_new
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"polyp-live-web-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        seq = -1
        yield_to_the_pipeline()
        try:
            while not self._closing.is_set():
                if self.viewers <= 0:
                    self._closing.wait(IDLE_WAIT)
                    continue
                picture = self.view.wait_newer(seq, IDLE_WAIT)
                if picture is None:
                    continue
                seq = picture.seq
                self.encode(picture)
                self.on_new()
        except Exception as exc:  # reaches the main thread through WebView.error
            self.error = exc

    def encode(self, picture: Picture) -> None:
        raise NotImplementedError

    def close(self, timeout: float = 2.0) -> None:
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class JpegEncoder(PictureEncoder):
    """The newest picture as JPEG bytes, shared by every MJPEG viewer and the snapshot."""

    name = "jpeg"

    def __init__(self, view: LiveView, on_new: Callable[[], None] = lambda: None, quality: int = JPEG_QUALITY):
        super().__init__(view, on_new)
        self.quality = quality
        self._newest: tuple[int, bytes] | None = None

    def encode(self, picture: Picture) -> None:
        ok, data = cv2.imencode(".jpg", picture.image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for a {picture.image.shape} picture")
        with self._lock:
            self._newest = (picture.seq, data.tobytes())

    def newest(self) -> tuple[int, bytes] | None:
        """(picture number, JPEG bytes) of the newest encoded picture, or None before the first."""
        with self._lock:
            return self._newest


class PacketRing:
    """The H.264 packets every WebRTC viewer reads, each from its own position, and the keyframe requests.

    A stream's encoder hands each packet to :meth:`keep` and asks :meth:`take_keyframe_request` before each
    picture; a new viewer starts at the newest keyframe and asks for one at once; a viewer that is
    behind skips ahead to a newer keyframe (:meth:`next_packet`).
    """

    def __init__(self):
        self._ring_lock = threading.Lock()
        self._ring: deque = deque(maxlen=RING)   # (number, av.Packet, keyframe)
        self._count = 0
        self._want_key = True

    def request_keyframe(self) -> None:
        """The next picture is coded as a keyframe (a viewer joined or fell behind)."""
        self._want_key = True

    def take_keyframe_request(self) -> bool:
        """Whether a keyframe was asked for since the last call (the request is then taken)."""
        wanted, self._want_key = self._want_key, False
        return wanted

    def keep(self, packet, keyframe: bool) -> None:
        """Add the encoder's next packet for the viewers."""
        with self._ring_lock:
            self._count += 1
            self._ring.append((self._count, packet, keyframe))

    def next_packet(self, position: int | None) -> tuple[int, object] | None:
        """The packet a viewer at ``position`` (its last packet's number; None: not started) sends next.

        A new viewer starts at the newest keyframe; a viewer more than :data:`MAX_BEHIND` packets
        behind jumps to a newer keyframe when there is one, and one is asked for when the packet it
        needs has left the ring. Returns (number, packet), or None when there is nothing to send yet.
        """
        with self._ring_lock:
            ring = list(self._ring)
        if not ring:
            return None
        newest = ring[-1][0]
        keys = [(n, p) for n, p, key in ring if key and (position is None or n > position)]
        if position is None or newest - position > MAX_BEHIND or position + 1 < ring[0][0]:
            if keys:
                return keys[-1]
            self.request_keyframe()
            if position is None or position + 1 < ring[0][0]:
                return None
        if position + 1 > newest:
            return None
        n, packet, _ = ring[position + 1 - ring[0][0]]
        return n, packet


class H264Stream(PictureEncoder):
    """One libx264 stream of its own (baseline, zero latency, a keyframe a second) shared by every
    WebRTC viewer through :attr:`packets`, for runs that do not record: a recording run shares its
    recorder's (:class:`RecordingTap`).
    """

    name = "h264"

    def __init__(self, view: LiveView, fps: float, on_new: Callable[[], None] = lambda: None):
        super().__init__(view, on_new)
        self.packets = PacketRing()
        self.fps = fps if fps and fps > 0 else 30.0
        self._codec = None
        self._t0: float | None = None
        self._last_pts = -1
        self._yuv: np.ndarray | None = None   # the I420 buffer, reused from picture to picture

    def _open(self, width: int, height: int) -> None:
        import av
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = Fraction(1, 90000)
        codec.framerate = Fraction(round(self.fps * 1000), 1000)
        codec.bit_rate = int(H264_BITRATE_PER_PIXEL * width * height)
        codec.gop_size = max(1, round(self.fps))
        codec.profile = "Baseline"   # what every browser's WebRTC H.264 decoder takes
        codec.options = {"preset": "ultrafast", "tune": "zerolatency"}
        codec.thread_count = 1       # the pipeline's stages are the parallelism
        self._codec = codec

    def encode(self, picture: Picture) -> None:
        import av
        image = picture.image
        h, w = image.shape[0] & ~1, image.shape[1] & ~1  # 4:2:0 needs even sizes
        if self._codec is None or (self._codec.width, self._codec.height) != (w, h):
            self._open(w, h)
            self.packets.request_keyframe()
        frame, self._yuv = yuv420_frame(av, np.ascontiguousarray(image[:h, :w]), self._yuv)
        self._t0 = picture.published if self._t0 is None else self._t0
        pts = max(self._last_pts + 1, int((picture.published - self._t0) * 90000))
        self._last_pts = frame.pts = pts
        frame.time_base = Fraction(1, 90000)
        if self.packets.take_keyframe_request():
            frame.pict_type = av.video.frame.PictureType.I
        for packet in self._codec.encode(frame):
            self.packets.keep(packet, bool(packet.is_keyframe))


class RecordingTap(Watched):
    """The recorder's own packets, in :attr:`packets`, for every WebRTC viewer: a recording run encodes
    each picture once, for the file and the browsers together (a second H.264 encoder beside the
    pipeline costs the model about three frames a second on two cores; docs/PERFORMANCE.md).

    The recorder (:class:`~polyp_live.realtime.recorder.VideoRecorder`, ``packet_sink``) calls
    :meth:`wants_keyframe` before each frame and :meth:`put` with each packet, on its own thread; a
    failure here is kept in :attr:`error` for the main thread and never stops the recording.
    """

    name = "recording"

    def __init__(self, on_new: Callable[[], None] = lambda: None):
        super().__init__()
        self.packets = PacketRing()
        self.on_new = on_new

    def wants_keyframe(self) -> bool:
        """Whether the recorder should code its next frame as a keyframe (a viewer is waiting for one)."""
        return self.viewers > 0 and self.packets.take_keyframe_request()

    def put(self, packet, parameter_sets: bytes | None) -> None:
        """A copy of one of the recorder's packets, as WebRTC sends it: Annex B, with the sequence and
        picture parameter sets (which MP4 keeps out of band, in the codec's extradata) before each
        keyframe. Nothing is copied while nobody watches. Called before the packet is muxed."""
        if self.viewers <= 0 or self.error is not None:
            return
        try:
            import av
            keyframe = bool(packet.is_keyframe)
            data = bytes(packet)
            if keyframe:
                data = bytes(parameter_sets or b"") + data
                if not data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
                    raise RuntimeError("the recorder's H.264 packets are not Annex B; WebRTC cannot send them")
            copy = av.Packet(data)
            copy.pts = copy.dts = int(round(float(packet.pts * packet.time_base) * 90000))
            copy.time_base = Fraction(1, 90000)
            self.packets.keep(copy, keyframe)
            self.on_new()
        except Exception as exc:  # reaches the main thread through WebView.failure
            self.error = exc

    def start(self) -> None:
        """Nothing to start: the recorder's thread does the encoding."""

    def close(self, timeout: float = 2.0) -> None:
        """Nothing to stop: the recorder finalises its file itself."""


SharedH264 = H264Stream | RecordingTap   # what the WebRTC viewers read: its packets and its viewer count
