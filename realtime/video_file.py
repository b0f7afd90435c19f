"""A recorded video file, decoded with PyAV so that damage is seen, skipped and counted exactly.

OpenCV's reader hides what FFmpeg knows: a damaged packet ends the read loop or comes back as an
error-concealed picture (the previous image smeared with new motion), and its frame counter counts
decoded pictures, not positions in the file. Here every frame is placed by its presentation time
(AVI: by the container's index, because the AVI demuxer renumbers packets after resynchronising), so

- a packet that fails to decode, or a picture FFmpeg flags as corrupt, is skipped, and so is every
  frame after it up to the next key frame (those are predicted from the damaged one);
- the number skipped is the gap in frame numbers, so it is exact whatever the decoder did;
- a frame is never delivered twice (a timestamp at or before the last delivered one is dropped);
- a file that stops before the length its header promises says so (``ended_early``).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.errors import SourceError
from polyp_live.realtime.frame_source import FrameSource

# Intra-only codecs: every frame stands alone, so strict error detection costs nothing but the
# damaged frame itself (a partly corrupt JPEG otherwise decodes to a half-grey picture).
STRICT_CODECS = {"mjpeg", "jpeg2000", "png", "ljpeg"}


class VideoFileSource(FrameSource):
    """Every intact frame of a video file in order; damaged frames are skipped and counted.

    Args:
        path: the video file.
        max_consecutive_corrupt: demuxer errors in a row (no packet read in between) after which
            the rest of the file is taken as unreadable.
    """

    def __init__(self, path: str, max_consecutive_corrupt: int = 50):
        super().__init__()
        self.path = path
        self.description = f"video file {path}"
        self.max_consecutive_corrupt = max_consecutive_corrupt
        self.frame_count = 0  # from the header; 0 when unknown
        self._container = None
        self._stream = None
        self._frames = None

    def input_paths(self) -> list[Path]:
        return [Path(self.path)]

    # ---- opening -------------------------------------------------------------------------------

    def open(self) -> None:
        if not os.path.isfile(self.path):
            raise SourceError(f"video file {self.path} not found; check the path given to --source")
        if not os.access(self.path, os.R_OK):
            raise SourceError(f"video file {self.path} is not readable; check its permissions")
        self.close()
        import av  # noqa: PLC0415 - PyAV loads FFmpeg; only file sources need it
        try:
            self._container = av.open(self.path)
        except (av.error.FFmpegError, ValueError):
            raise SourceError(f"video file {self.path} cannot be opened as video; convert it to mp4 (H.264) "
                              "or pass another file") from None
        if not self._container.streams.video:
            self.close()
            raise SourceError(f"video file {self.path} has no video stream; pass a video file")
        stream = self._stream = self._container.streams.video[0]
        stream.thread_type = "SLICE"  # frame threading would report a damaged packet frames later
        context = stream.codec_context
        if context.name in STRICT_CODECS:
            context.options = {"err_detect": "explode"}
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self._rate = Fraction(rate) if rate and 0 < float(rate) < 1000 else Fraction(30)
        self.fps = float(self._rate)
        self.size = (context.width, context.height)
        self.frame_count = self._header_frame_count()
        self._start = stream.start_time
        self._avi_index = self._avi_timestamps()
        self._last_pts = None
        self._awaiting_key = False
        self._pending = 0  # packets read since the last delivered frame without giving one
        self.last_index = -1
        self.ended_early = None
        self._ended = False
        self._frames = self._decoded()

    def _header_frame_count(self) -> int:
        stream = self._stream
        if stream.frames:
            return int(stream.frames)
        if stream.duration and stream.time_base:
            return round(stream.duration * stream.time_base * self._rate)
        if self._container.duration:  # in AV_TIME_BASE (microseconds)
            return round(Fraction(self._container.duration, 1_000_000) * self._rate)
        return 0

    def _avi_timestamps(self) -> dict[int, int]:
        """AVI only: byte position of each frame's chunk -> its frame number, from the index."""
        if "avi" not in self._container.format.name:
            return {}
        entries = self._stream.index_entries
        return {entry.pos: entry.timestamp for entry in entries} if len(entries) else {}

    # ---- decoding ------------------------------------------------------------------------------

    def _packets(self):
        import av  # noqa: PLC0415
        failures = 0
        while failures < self.max_consecutive_corrupt:
            try:
                for packet in self._container.demux(self._stream):
                    failures = 0
                    yield packet
                return
            except av.error.EOFError:
                return
            except av.error.FFmpegError:
                failures += 1  # unreadable container data: demux again from where it stopped
                self._damage()

    def _decoded(self):
        import av  # noqa: PLC0415
        for packet in self._packets():
            if packet.size and self._avi_index and packet.pos is not None:
                # The AVI demuxer numbers packets as it meets them, so after skipping over garbage
                # every later frame would be misnumbered; the index knows where each frame starts.
                timestamp = self._avi_index.get(packet.pos - 8, self._avi_index.get(packet.pos))
                if timestamp is not None:
                    packet.pts = packet.dts = timestamp
            if packet.size:
                self._pending += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                self._damage()
                continue
            yield from frames

    def _damage(self) -> None:
        self._awaiting_key = True

    def _index(self, pts) -> int:
        if pts is None or self._stream.time_base is None:
            return self.last_index + 1
        start = self._start if self._start is not None else 0
        return round((pts - start) * self._stream.time_base * self._rate)

    def read(self) -> np.ndarray | None:
        if self._ended:
            return None
        for frame in self._frames:
            if frame.is_corrupt:
                self._damage()
                continue
            if self._awaiting_key and not frame.key_frame:
                continue  # predicted from a damaged picture
            pts = frame.pts
            if pts is not None and self._last_pts is not None and pts <= self._last_pts:
                continue  # already delivered: never twice
            index = max(self._index(pts), self.last_index + 1)
            self.corrupt_frames += index - self.last_index - 1
            self.last_index, self._last_pts = index, pts
            self._awaiting_key, self._pending = False, 0
            return to_bgr(frame)
        return self._end()

    def _end(self) -> None:
        """At the end of the file: count damage at the tail, notice a file cut short."""
        if self.last_index < 0:
            raise SourceError(f"video file {self.path} contains no decodable video frames; re-export or re-encode it")
        missing = self.frame_count - (self.last_index + 1)
        if missing > 0 and not self._ended:
            damaged = min(missing, self._pending)  # packets that were there but gave no frame
            self.corrupt_frames += damaged
            if missing > damaged and self.ended_early is None:
                self.ended_early = (f"video file {self.path} ended early: the last {missing - damaged} of its "
                                    f"{self.frame_count} frames are missing (a truncated copy?)")
        self._ended = True
        return None

    def rewind(self) -> bool:
        # Reopening is simpler and safer than seeking in a damaged file; it costs milliseconds.
        corrupt, early = self.corrupt_frames, self.ended_early
        self.open()
        self.corrupt_frames, self.ended_early = corrupt, early
        return True

    def close(self) -> None:
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None


def to_bgr(frame) -> np.ndarray:
    """A decoded PyAV frame as a BGR array.

    The common 4:2:0 case goes through OpenCV's converter, about five times faster than PyAV's
    ``to_ndarray(format="bgr24")`` here (same BT.601 conversion, rounding differs by under one grey
    level); other layouts and odd sizes go through FFmpeg's converter.
    """
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")
