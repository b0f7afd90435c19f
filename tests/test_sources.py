"""Sources: damaged files are skipped and counted exactly, names are literal, stalled streams are noticed."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT
from polyp_live.realtime.cli import main
from polyp_live.realtime.sources import ImageSequenceSource, SignalLost, VideoFileSource, open_source

FRAMES = 90


# ---- damaged video files -------------------------------------------------------------------------

def numbered_frames(count: int, size=(160, 120)):
    """Frames that are all different: a bright bar steps one pixel per frame over a fixed texture."""
    w, h = size
    texture = np.random.default_rng(0).integers(30, 90, (h, w, 3), dtype=np.uint8)
    for i in range(count):
        frame = texture.copy()
        x = 10 + i
        cv2.rectangle(frame, (x, 20), (x + 6, h - 20), (230, 230, 230), -1)
        yield frame


def write_numbered(path: Path, count: int = FRAMES) -> Path:
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, 30000 / 1001, (160, 120))
    assert writer.isOpened()
    for frame in numbered_frames(count):
        writer.write(frame)
    writer.release()
    return path


def damaged_copy(clean: Path, out: Path, nbytes: int = 20_000, at: float = 0.5) -> Path:
    """``clean`` with ``nbytes`` random bytes written over it at ``at`` of its length."""
    data = bytearray(clean.read_bytes())
    start = int(len(data) * at)
    data[start:start + nbytes] = np.random.default_rng(1).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return out


def reference(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    return frames


def identify(image: np.ndarray, refs: list[np.ndarray]) -> tuple[int, float]:
    """(index, mean absolute difference) of the reference frame closest to ``image``."""
    errors = [float(np.abs(image.astype(np.int16) - ref).mean()) for ref in refs]
    best = int(np.argmin(errors))
    return best, errors[best]


def read_all(source) -> tuple[list[np.ndarray], list[int]]:
    images, indices = [], []
    with source:
        while (image := source.read()) is not None:
            images.append(image)
            indices.append(source.last_index)
    return images, indices


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_damage_in_the_middle_is_skipped_counted_exactly_and_the_intact_rest_is_delivered(tmp_path, suffix):
    clean = write_numbered(tmp_path / f"clean{suffix}")
    refs = reference(clean)
    assert len(refs) == FRAMES
    source = VideoFileSource(str(damaged_copy(clean, tmp_path / f"damaged{suffix}")))
    images, indices = read_all(source)
    found = [identify(image, refs) for image in images]
    ids = [i for i, _ in found]
    # Every delivered frame is an intact frame of the source (not an error-concealed smear) ...
    assert max(error for _, error in found) < 3.0
    # ... in order and never twice ...
    assert ids == sorted(set(ids))
    # ... the run carries on past the damage to the intact rest ...
    assert set(range(FRAMES - 10, FRAMES)) <= set(ids)
    # ... and what was skipped is counted exactly, with each frame's place in the source known.
    assert 0 < source.corrupt_frames == FRAMES - len(images)
    assert indices == ids
    assert source.ended_early is None


def test_calibration_draws_only_intact_frames_of_a_damaged_video_spread_over_it(tmp_path):
    """INT8 calibration reads a video with the live reader: no error-concealed smear calibrates the model."""
    from polyp_live.calibration.frames import sample_frames
    clean = write_numbered(tmp_path / "clean.mp4")
    refs = reference(clean)
    frames = sample_frames(damaged_copy(clean, tmp_path / "damaged.mp4"), count=8)
    found = [identify(frame, refs) for frame in frames]
    ids = [i for i, _ in found]
    assert max(error for _, error in found) < 3.0
    assert ids == sorted(set(ids)) and len(ids) >= 5
    assert ids[0] == 0 and ids[-1] == FRAMES - 1  # spread over the file's positions, to its last frame


def test_the_run_says_how_many_damaged_frames_it_skipped(tmp_path, brightness_model, capsys):
    bad = damaged_copy(write_numbered(tmp_path / "clean.mp4"), tmp_path / "damaged.mp4")
    stats = tmp_path / "s.json"
    assert main(["--headless", "--quiet", "--source", str(bad), "--model", str(brightness_model), "--roi", "full",
                 "--stats-json", str(stats)]) == 0
    counters = json.loads(stats.read_text())["counters"]
    assert counters["frames_out"] > FRAMES // 2 + 10  # well past the damage at 50 %
    assert counters["corrupt"] == FRAMES - counters["frames_out"]
    assert f"{counters['corrupt']} damaged frames skipped" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_a_truncated_file_says_it_ended_early(tmp_path, brightness_model, capsys, suffix):
    data = write_numbered(tmp_path / f"clean{suffix}").read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    source = VideoFileSource(str(cut))
    images, _ = read_all(source)
    assert 40 < len(images) < FRAMES
    assert source.ended_early and "ended early" in source.ended_early
    assert main(["--headless", "--quiet", "--source", str(cut), "--model", str(brightness_model)]) == 0
    assert "ended early" in " ".join(capsys.readouterr().err.split())


def test_looping_a_damaged_file_never_repeats_within_a_pass(tmp_path):
    clean = write_numbered(tmp_path / "clean.avi")
    refs = reference(clean)
    source = VideoFileSource(str(damaged_copy(clean, tmp_path / "damaged.avi")))
    passes = []
    with source:
        for _ in range(2):
            images = []
            while (image := source.read()) is not None:
                images.append(image)
            passes.append([identify(image, refs)[0] for image in images])
            assert source.rewind()
    assert passes[0] == passes[1] == sorted(set(passes[0]))
    assert passes[0][-1] == FRAMES - 1


# ---- names are literal ------------------------------------------------------------------------------

def test_an_existing_file_whose_name_looks_like_a_glob_is_that_file(tmp_path, brightness_model):
    clip = write_numbered(tmp_path / "proc [final].mp4", count=12)
    stats = tmp_path / "s.json"
    assert main(["--headless", "--quiet", "--source", str(clip), "--model", str(brightness_model),
                 "--stats-json", str(stats)]) == 0
    assert json.loads(stats.read_text())["counters"]["frames_out"] == 12

    image = tmp_path / "scan [1]?.png"
    cv2.imwrite(str(image), next(numbered_frames(1)))
    cv2.imwrite(str(tmp_path / "scan 1x.png"), next(numbered_frames(1)))  # what the glob would also match
    source = open_source(str(image))
    assert isinstance(source, ImageSequenceSource) and source.files == [image]
    # A pattern that is not an existing path is still a glob.
    assert len(open_source(str(tmp_path / "scan*.png")).files) == 2


# ---- stalled streams ----------------------------------------------------------------------------------

class StallingMjpegServer:
    """A local HTTP server sending a multipart MJPEG stream that stalls with its connection open.

    The first connection gets ``frames`` JPEGs, then nothing; later connections get ``later_frames``
    (``None``: not even the HTTP headers, so the client's open blocks). Every stalled handler
    holds its connection open until :meth:`close`.
    """

    def __init__(self, frames: int = 20, later_frames: int | None = None, fps: float = 25.0):
        self.connected = threading.Event()
        self.release = threading.Event()
        self.connections = 0
        jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))[1].tobytes()
        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n"
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.connections += 1
                count = frames if outer.connections == 1 else later_frames
                outer.connected.set()
                try:
                    if count is not None:
                        self.send_response(200)
                        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                        self.end_headers()
                        for _ in range(count):
                            self.wfile.write(part)
                            self.wfile.flush()
                            time.sleep(1 / fps)
                except OSError:
                    return
                outer.release.wait(60)  # stalled: the connection stays open, nothing is sent

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(**kwargs) -> StallingMjpegServer:
        servers.append(StallingMjpegServer(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_a_stream_that_stalls_with_its_connection_open_is_reported_lost(server_factory):
    server = server_factory(frames=20)
    source = open_source(server.url)
    outcome = {}

    def consume():
        try:
            with source:
                for _ in range(1000):
                    source.read()
                    outcome["frames"] = outcome.get("frames", 0) + 1
        except SignalLost as exc:
            outcome["lost"] = str(exc)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    # A hang guard, not a timing measurement: OpenCV alone would block for about 30 s.
    reader.join(15)
    assert not reader.is_alive(), "the read blocked on a stalled stream instead of reporting signal loss"
    assert outcome.get("frames", 0) >= 10 and "no frame for" in outcome.get("lost", "")
    assert not server.release.is_set()  # the server still held the connection open


def _start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DISPLAY", None)
    return subprocess.Popen([sys.executable, "-m", "polyp_live.realtime.cli", "--headless", "--quiet", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_stalled_stream_shows_signal_lost_and_gives_up_after_the_reconnect_timeout(tmp_path, brightness_model,
                                                                                         server_factory):
    server = server_factory(frames=20, later_frames=None)  # reconnecting finds a server that never answers
    proc = _start_cli(["--source", server.url, "--model", str(brightness_model), "--reconnect-timeout", "1"], tmp_path)
    try:
        _, err = proc.communicate(timeout=40)  # hang guard; OpenCV's own timeouts alone took over 45 s
    finally:
        proc.kill()
    err = " ".join(err.split())
    assert proc.returncode == 1, err
    assert "signal lost" in err
    assert "lost and not back within --reconnect-timeout 1 s" in err
    assert "Traceback" not in err


def test_sigterm_while_a_stream_is_opening_stops_at_once_with_143(tmp_path, brightness_model, server_factory):
    server = server_factory(frames=None, later_frames=None)  # accepts the connection, never answers
    proc = _start_cli(["--source", server.url, "--model", str(brightness_model)], tmp_path)
    try:
        assert server.connected.wait(60), "the command never connected to the stream"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)  # hang guard; before the fix this took 27 s
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err and "error" not in err


def test_a_truncated_jpeg_is_a_damaged_frame_not_a_frame_with_invented_grey_rows(tmp_path):
    from polyp_live.realtime.sources import ImageSequenceSource
    image = np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    (tmp_path / "a.jpg").write_bytes(data)
    (tmp_path / "b.jpg").write_bytes(data[: len(data) // 2])  # libjpeg would decode it, bottom half grey
    (tmp_path / "c.jpg").write_bytes(data)
    source = ImageSequenceSource(str(tmp_path))
    with source:
        names = []
        while (frame := source.read()) is not None:
            names.append(source.last_name)
            assert frame.shape == (120, 160, 3)
    assert names == ["a", "c"] and source.corrupt_frames == 1


class CountingMjpegServer:
    """An MJPEG server whose frame i is a uniform grey of level 20 * (i + 1), so a frame shows which part it
    came from. Part ``short`` is sent with half its bytes under a full Content-Length (the connection then
    carries on with the next part), and the stream ends in the middle of part ``cut``."""

    def __init__(self, frames: int = 10, short: int | None = 3, cut: int | None = 8, with_length: bool = True,
                 images: list[np.ndarray] | None = None):
        # images: send these instead (all whole unless short/cut name one), then close the stream.
        images = images if images is not None else [np.full((48, 64, 3), 20 * (i + 1), np.uint8) for i in range(frames)]
        jpegs = [cv2.imencode(".jpg", image)[1].tobytes() for image in images]
        cut_short = cut is not None
        cut = len(jpegs) - 1 if cut is None else cut

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for i, jpeg in enumerate(jpegs[:cut + 1]):
                        damaged = i == short or (i == cut and cut_short)
                        body = jpeg[:len(jpeg) // 2] if damaged else jpeg
                        head = b"--frame\r\nContent-Type: image/jpeg\r\n"
                        if with_length:
                            head += b"Content-Length: %d\r\n" % len(jpeg)
                        self.wfile.write(head + b"\r\n" + body + (b"" if i == cut and cut_short else b"\r\n"))
                        self.wfile.flush()
                        time.sleep(0.02)
                except OSError:
                    return

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("with_length", [True, False])
def test_a_jpeg_cut_short_in_an_mjpeg_stream_is_a_damaged_frame_not_a_patched_one(with_length):
    server = CountingMjpegServer(with_length=with_length)
    try:
        source = open_source(server.url)
        source.open()
        levels = []
        with pytest.raises(SignalLost):
            while True:
                image = source.read()
                levels.append(int(round(float(image.mean()))))
                time.sleep(0.005)  # slower than nothing, faster than the server: every frame is read
        source.close()
    finally:
        server.close()
    # Every whole part is shown, in order; the short part and the one the stream ended in are
    # skipped and counted, never shown as a picture patched from another frame.
    assert levels == [20 * (i + 1) for i in range(8) if i != 3]
    assert source.corrupt_frames == 2
