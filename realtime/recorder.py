"""Annotated-video recording (H.264 through PyAV, in its own thread) and per-frame mask export.

Recordings are H.264 (libx264, ``superfast`` preset, or ``ultrafast`` when WebRTC viewers share the
encoder, CRF 23, 4:2:0) in MP4, Matroska or QuickTime.
Each frame carries its capture time as its timestamp, so a recording lasts as long as what it
recorded even when frames were dropped or a camera delivered them irregularly. MP4 and MOV are
written fragmented (a fragment per one-second GOP) and Matroska in clusters, flushed as they are
written, so a process killed outright still leaves a file that plays up to its last fragment.

The file is written under a hidden partial name and renamed over the destination only once it has
been finalised, so an earlier recording at the destination is never replaced by a broken one. A
write failure (a full disk) stops the recording: the partial file is cut back to its last complete
fragment, which plays, and the error names the number of frames it holds.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.errors import OutputError, UsageError
from polyp_live.realtime.queues import WAIT

CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
FRAGMENTED = {"mp4", "mov"}
CLOSE_TIMEOUT = 60.0  # seconds the encoder may take to write out its queue when the run ends


# Encoders whose packets a WebRTC viewer can be sent as they are (libx264: Annex B, SPS/PPS in extradata).
SHAREABLE_CODECS = ("libx264",)


def exact_fps(fps: float) -> Fraction:
    """Snap NTSC-style rates to their exact rational (29.97 -> 30000/1001) so they survive the container."""
    for base in (24, 30, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.01:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def check_writable_dir(path: Path, what: str) -> None:
    """Create ``path`` if needed and prove it is writable, or raise OutputError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".polyp-live-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{what} folder {path} is not writable ({exc.strerror}); choose another location") from None


def partial_path(path: Path) -> Path:
    """Where a recording is written until it is finalised: ``.NAME.partial.SUFFIX`` beside it."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def check_record_path(path: str | Path) -> Path:
    """Refuse an unsupported container or an unwritable folder before the first frame."""
    path = Path(path)
    if path.suffix.lower() not in CONTAINERS:
        raise OutputError(f"cannot record to {path}: use one of {', '.join(sorted(CONTAINERS))}")
    if path.is_dir():
        # Found here, not after the run: the finished recording could not be renamed onto a folder.
        raise UsageError(f"--record {path} is a folder; give a file name such as {path / 'out.mp4'}")
    check_writable_dir(path.parent if str(path.parent) else Path("."), "recording")
    return path


def check_masks_folder(path: str | Path) -> Path:
    """Refuse a ``--save-masks`` path that is a file, or a folder already holding masks.

    Masks are named after their frames (``000041.png``); a second run into the same folder would
    replace some of the first run's and leave others, a set that belongs to neither run.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--save-masks {path} is a file; give a folder")
    if path.is_dir() and any(path.glob("*.png")):
        raise UsageError(f"--save-masks {path} already holds masks; choose a new or empty folder "
                         "(nothing is overwritten)")
    return path


def count_decodable(path: Path) -> int:
    """Video packets a demuxer reads back from ``path`` (0 when it cannot be opened)."""
    import av
    try:
        with av.open(str(path)) as container:
            return sum(1 for p in container.demux(video=0) if p.size)
    except (av.error.FFmpegError, OSError, IndexError):
        return 0


def yuv420_frame(av, image: np.ndarray, buffer: np.ndarray | None) -> tuple[object, np.ndarray]:
    """(``av.VideoFrame`` in yuv420p, the buffer to pass next time) of a BGR image with even sizes.

    OpenCV's I420 conversion is several times faster than swscale's from bgr24; the buffer is reused
    (``from_ndarray`` copies it into the encoder's frame), so no frame allocates one.
    """
    shape = (image.shape[0] * 3 // 2, image.shape[1])
    if buffer is None or buffer.shape != shape:
        buffer = np.empty(shape, np.uint8)
    cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420, dst=buffer)
    return av.VideoFrame.from_ndarray(buffer, format="yuv420p"), buffer


def fit_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``image`` into ``size`` (w, h) keeping its aspect, black bars around (a size change mid-run)."""
    w, h = size
    ih, iw = image.shape[:2]
    scale = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class VideoRecorder:
    """Encodes BGR frames in a background thread; the file is complete after :meth:`close`.

    Args:
        path: the destination (.mp4, .mkv or .mov).
        fps: the source's nominal frame rate (the timestamp unit and the GOP length).
        size: (width, height) of the recording; odd sizes are padded by one black pixel, since
            4:2:0 H.264 needs even dimensions. Frames of another size are fitted with black bars.
        codec, preset, crf: the encoder settings.
        gop_s: seconds between keyframes, i.e. MP4 fragments: at most this much is lost if the
            process is killed.
        queue_size: frames waiting for the encoder.
        threads: encoder threads.
        on_encoded: called (in the encoder thread) with each frame's encoding seconds.
        clock: timestamp unit; by default one frame period of ``fps`` (exact for files). Live feeds
            pass a fine clock (1/90000 s) so irregular or faster-than-announced frames keep their times.
        packet_sink: also hands every encoded packet to this (the web view's WebRTC stream, so that
            one encoder serves the file and every viewer): ``wants_keyframe()`` is asked before each
            frame and ``put(packet, extradata)`` gets each packet before it is muxed, in the encoder
            thread. Only for :data:`SHAREABLE_CODECS`; the stream is then Constrained Baseline, the
            H.264 every browser decodes.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], codec: str = "libx264",
                 preset: str = "superfast", crf: int = 23, gop_s: float = 1.0, queue_size: int = 32, threads: int = 1,
                 on_encoded=None, clock: Fraction | None = None, packet_sink=None):
        import av  # PyAV bundles FFmpeg with libx264

        self.path = check_record_path(path)
        self.tmp = partial_path(self.path)
        self.rate = exact_fps(fps)
        self.fps = float(self.rate)
        self.size = size
        self.frames = 0            # frames in the file (after a failure: those that decode)
        self.finalised = False
        self.error: OutputError | None = None
        self.cpu_s = 0.0
        self.on_encoded = on_encoded
        self.packet_sink = packet_sink
        width, height = size[0] + size[0] % 2, size[1] + size[1] % 2
        fmt = CONTAINERS[self.path.suffix.lower()]
        options = {"flush_packets": "1"}
        if fmt in FRAGMENTED:
            options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
        else:  # Matroska: close a cluster at every keyframe, the unit a killed process can lose
            options["cluster_time_limit"] = str(int(gop_s * 1000))
        encoder = {"preset": preset, "crf": str(crf), "tune": "zerolatency",
                   "g": str(max(1, round(gop_s * self.fps))), "bf": "0"}
        if packet_sink is not None:
            if codec not in SHAREABLE_CODECS:
                raise OutputError(f"a {codec} recording cannot be shared with WebRTC viewers; use libx264")
            encoder["profile"] = "baseline"
        try:
            self.container = av.open(str(self.tmp), "w", format=fmt, options=options)
            self.stream = self.container.add_stream(codec, rate=self.rate, options=encoder)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            self.tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot open a {codec} writer for {self.path} ({exc}); check the folder and codec") from None
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.clock = clock or 1 / self.rate
        self.stream.codec_context.time_base = self.clock
        self.stream.codec_context.thread_count = threads
        self._av = av
        self._padded = (width, height) != tuple(size)
        self._last_pts = -1
        self._yuv: np.ndarray | None = None
        self._safe_size = 0        # file size after the last successful write: a fragment boundary
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="polyp-live-recorder", daemon=True)
        self._thread.start()

    # ---- producer side (the output stage) ----------------------------------------------------

    def submit(self, image: np.ndarray, time_s: float, block: bool = True) -> bool:
        """Queue one frame stamped ``time_s`` seconds after the recording's start.

        Returns False when ``block`` is False and the encoder is behind (the frame is not recorded).

        Raises:
            OutputError: the recording failed (disk full, I/O error).
        """
        if self.error is not None:
            raise self.error
        item = (image, time_s)
        if not block:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                return False
            return True
        while True:
            try:
                self._queue.put(item, timeout=WAIT)
                return True
            except queue.Full:
                if self.error is not None:
                    raise self.error
                if not self._thread.is_alive():
                    raise OutputError(f"the recorder of {self.path} stopped; restart the recording")

    # ---- encoder thread ----------------------------------------------------------------------

    def _run(self) -> None:
        cpu0 = time.thread_time()
        while True:
            item = self._queue.get()
            if item is None:
                break
            if self.error is not None:
                continue  # failed: drain what is left so the producer never blocks
            t = time.perf_counter()
            try:
                self._encode(*item)
            except (self._av.error.FFmpegError, OSError) as exc:
                self._fail(exc)
            if self.on_encoded:
                self.on_encoded(time.perf_counter() - t)
        if self.error is None:
            try:
                self._mux(self.stream.encode(None))
            except (self._av.error.FFmpegError, OSError) as exc:
                self._fail(exc)
        self.cpu_s = time.thread_time() - cpu0

    def _encode(self, image: np.ndarray, time_s: float) -> None:
        h, w = image.shape[:2]
        if (w, h) != tuple(self.size):
            image = fit_to(image, self.size)
        if self._padded:
            image = cv2.copyMakeBorder(image, 0, self.stream.height - self.size[1], 0,
                                       self.stream.width - self.size[0], cv2.BORDER_CONSTANT)
        frame, self._yuv = yuv420_frame(self._av, image, self._yuv)
        pts = max(int(round(time_s / self.clock)), self._last_pts + 1)
        frame.pts, frame.time_base = pts, self.stream.codec_context.time_base
        self._last_pts = pts
        if self.packet_sink is not None and self.packet_sink.wants_keyframe():
            frame.pict_type = self._av.video.frame.PictureType.I
        self._mux(self.stream.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:
            if self.packet_sink is not None:
                # The parameter sets go before keyframes only; reading them copies bytes, so not per frame.
                parameter_sets = self.stream.codec_context.extradata if packet.is_keyframe else None
                self.packet_sink.put(packet, parameter_sets)
            self.container.mux(packet)
            self.frames += 1
        self._safe_size = os.stat(self.tmp).st_size

    def _fail(self, exc: BaseException) -> None:
        reason = getattr(exc, "errno", None)
        self._disk_full = reason in (errno.ENOSPC, errno.EDQUOT)
        if isinstance(exc, MemoryError) or reason == errno.ENOMEM:
            self._detail = "out of memory"
        elif type(exc).__module__.startswith("av"):
            # FFmpeg's own words: its AVERROR codes are no errno (AVERROR_EXTERNAL read as "Unknown error 542398533").
            self._detail = f"FFmpeg: {getattr(exc, 'strerror', None) or exc}"
        else:
            self._detail = os.strerror(reason) if isinstance(reason, int) and reason > 0 else str(exc)
        self.error = OutputError(self._failure_message(self.frames))

    def _failure_message(self, frames: int, kept: str = "") -> str:
        if self._disk_full:
            return f"disk full while recording {self.path} after {frames} frames{kept}; free space and restart"
        return (f"cannot write the recording {self.path} after {frames} frames{kept} ({self._detail}); "
                "check the disk and restart")

    # ---- finalising --------------------------------------------------------------------------

    def close(self) -> None:
        """Encode what is queued, finalise the file and rename it over the destination. Idempotent.

        After a failure the partial file is cut back to its last complete fragment; it replaces the
        destination only when there was no file there, and ``error`` then names the frames it holds.
        """
        if self._thread is None:
            return
        deadline = time.monotonic() + CLOSE_TIMEOUT
        try:
            self._queue.put(None, timeout=CLOSE_TIMEOUT)
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            # The disk stopped answering: leave the thread and the partial file alone rather than
            # close a container that is still being written.
            self.error = OutputError(f"the recording {self.path} did not finish writing within {CLOSE_TIMEOUT:g} s; "
                                     f"what was written is in {self.tmp}; check the disk")
            self._thread = None
            return
        self._thread = None
        try:
            self.container.close()
        except (self._av.error.FFmpegError, OSError) as exc:
            if self.error is None:
                self._fail(exc)
        if self.error is None:
            if self.frames:
                os.replace(self.tmp, self.path)
                self.finalised = True
            else:
                self.tmp.unlink(missing_ok=True)  # no frame was ever produced: nothing to keep
            return
        self._salvage()

    def _salvage(self) -> None:
        try:
            with open(self.tmp, "r+b") as f:
                f.truncate(self._safe_size)  # frees space, so this works on a full disk
        except OSError:
            pass
        self.frames = count_decodable(self.tmp) if self._safe_size else 0
        kept = ""
        if self.frames == 0:
            self.tmp.unlink(missing_ok=True)
        elif self.path.exists():
            kept = f" (kept as {self.tmp}; the earlier {self.path.name} was not replaced)"
        else:
            os.replace(self.tmp, self.path)
        self.error = OutputError(self._failure_message(self.frames, kept))

    def __enter__(self) -> "VideoRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MaskWriter:
    """One PNG per frame (0 = background, 255 = polyp), named after the source frame, each write verified.

    Video frames are named by their index in the source (``000041.png``), images from a folder by
    their file's stem (``cju0qkwl35piu0993l0dewei2.png``), so a skipped or dropped frame never shifts
    the names.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        check_writable_dir(self.folder, "--save-masks")
        self.count = 0
        self._names: set[str] = set()

    def name_for(self, source_index: int, name: str | None) -> str:
        stem = name if name else f"{source_index:06d}"
        if stem in self._names and name:
            stem = f"{name}_{source_index:06d}"  # two images with one stem (a.png, a.jpg)
        return stem

    def write(self, source_index: int, mask: np.ndarray, name: str | None = None) -> Path:
        """Write and verify one mask; raises OutputError when the bytes did not all reach the disk."""
        stem = self.name_for(source_index, name)
        path = self.folder / f"{stem}.png"
        ok, data = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise OutputError(f"cannot encode mask {path}; this is a bug, please report it")
        try:
            with open(path, "wb") as f:
                f.write(data.tobytes())
            written = path.stat().st_size
        except OSError as exc:
            written, reason = -1, exc.errno
        else:
            reason = errno.ENOSPC
        if written != len(data):
            path.unlink(missing_ok=True)  # never leave a truncated PNG behind
            if reason in (errno.ENOSPC, errno.EDQUOT):
                raise OutputError(f"disk full while writing masks to {self.folder} after {self.count} masks; "
                                  "free space and restart")
            raise OutputError(f"cannot write mask {path} ({os.strerror(reason)}); check the folder and restart")
        self._names.add(stem)
        self.count += 1
        return path
