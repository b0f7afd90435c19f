"""Recordings and mask files: true durations, survival of kills and signals, full disks, source-named masks."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import ROOT, FakeBackend, decode, moving_disc_frames, write_video
import polyp_live.realtime.recorder as recorder_module
from polyp_live.realtime.cli import main
from polyp_live.core.config import OutputConfig, PipelineConfig, RoiConfig, SourceConfig
from polyp_live.core.errors import OutputError
from polyp_live.realtime.pipeline import Pipeline
from polyp_live.realtime.recorder import MaskWriter, VideoRecorder, partial_path
from polyp_live.realtime.sources import FrameSource


def av_frames(path: Path) -> tuple[int, float]:
    """(frames that decode, duration in seconds from the last frame's end) read with PyAV; stops at damage."""
    count, end = 0, 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        period = 1 / float(stream.average_rate or stream.guessed_rate or 30)
        try:
            for frame in container.decode(stream):
                count += 1
                end = max(end, float(frame.pts * frame.time_base) + period)
        except av.error.InvalidDataError:
            pass  # a truncated last fragment: what came before still counts
    return count, end


class GappySource(FrameSource):
    """A file-like source whose frames sit at every other position of a 30 FPS source (dropped or damaged)."""

    description = "gappy test source"

    def __init__(self, count: int = 30, step: int = 2):
        super().__init__()
        self.images = list(moving_disc_frames(count))
        self.step, self.fps, self.size, self._next = step, 30.0, (160, 120), 0

    def read(self):
        if self._next >= len(self.images):
            return None
        self.last_index = self._next * self.step
        self._next += 1
        return self.images[self._next - 1].copy()


def test_a_paced_recording_with_gaps_lasts_as_long_as_its_source(tmp_path):
    out = tmp_path / "gaps.mp4"
    config = PipelineConfig(source=SourceConfig(realtime=True), roi=RoiConfig(mode="full"),
                            output=OutputConfig(record=str(out)))
    Pipeline(config, GappySource(30, step=2), FakeBackend()).run()
    frames, duration = av_frames(out)
    assert frames == 30
    assert duration == pytest.approx(60 / 30, abs=1 / 30)  # 30 frames spread over 60 source frames: 2 s, not 1 s


def test_masks_are_named_after_the_source_frame(tmp_path):
    masks = tmp_path / "m"
    config = PipelineConfig(roi=RoiConfig(mode="full"), output=OutputConfig(save_masks=str(masks)))
    Pipeline(config, GappySource(5, step=3), FakeBackend()).run()
    assert sorted(p.name for p in masks.glob("*.png")) == [f"{i:06d}.png" for i in (0, 3, 6, 9, 12)]


def test_a_mask_write_that_does_not_reach_the_disk_fails_with_one_line(tmp_path, monkeypatch):
    real_open = open

    class HalfFile:
        """A file whose writes silently lose half the bytes, as a full disk may do to a PNG."""

        def __init__(self, path, mode):
            self.f = real_open(path, mode)

        def write(self, data):
            return self.f.write(data[: len(data) // 2])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    writer = MaskWriter(tmp_path / "m")
    writer.write(0, np.zeros((20, 20), np.uint8))
    monkeypatch.setattr(recorder_module, "open", HalfFile, raising=False)
    with pytest.raises(OutputError, match=r"disk full while writing masks to .* after 1 masks; free space and restart"):
        writer.write(1, np.full((20, 20), 255, np.uint8))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["000000.png"]  # no truncated PNG left


def inject_disk_full(monkeypatch, after_packets: int) -> None:
    """Make the recorder's writes fail with ENOSPC from the given packet on."""
    original = VideoRecorder._mux
    calls = {"n": 0}

    def mux(self, packets):
        packets = list(packets)
        calls["n"] += len(packets)
        if calls["n"] > after_packets:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(self, packets)

    monkeypatch.setattr(VideoRecorder, "_mux", mux)


def test_disk_full_stops_with_one_line_and_keeps_what_decodes(tmp_path, monkeypatch, capsys, clip, brightness_model):
    inject_disk_full(monkeypatch, after_packets=75)
    out = tmp_path / "rec.mp4"
    code = main(["--headless", "--quiet", "--source", str(clip), "--model", str(brightness_model), "--loop",
                 "--max-frames", "400", "--record", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    found = re.search(r"disk full while recording (\S+) after (\d+) frames; free space and restart", " ".join(err.split()))
    assert found, err
    frames, _ = av_frames(out)
    assert frames == int(found.group(2)) == 60  # two whole one-second fragments; the third was cut off
    assert not partial_path(out).exists()


def test_disk_full_never_replaces_an_earlier_recording(tmp_path, monkeypatch, capsys, clip, brightness_model):
    out = tmp_path / "rec.mp4"
    shutil.copy(clip, out)
    before = out.read_bytes()
    inject_disk_full(monkeypatch, after_packets=45)
    code = main(["--headless", "--quiet", "--source", str(clip), "--model", str(brightness_model), "--loop",
                 "--max-frames", "400", "--record", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "disk full while recording" in err and "was not replaced" in err
    assert out.read_bytes() == before
    assert av_frames(partial_path(out))[0] == 30  # what was written before the failure, kept beside it


def noisy_clip(path: Path, count: int = 60, size=(320, 240)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    rng = np.random.default_rng(0)
    for _ in range(count):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MB tmpfs (needs root and a kernel that allows the mount; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-failure tests cover the logic")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_real_full_disk_stops_the_recording_with_a_playable_file(tmp_path, small_tmpfs, capsys, brightness_model):
    clip = noisy_clip(tmp_path / "noise.avi")
    out = small_tmpfs / "rec.mp4"
    code = main(["--headless", "--quiet", "--source", str(clip), "--model", str(brightness_model), "--loop",
                 "--max-frames", "3000", "--record", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    found = re.search(r"disk full while recording \S+ after (\d+) frames; free space and restart", err)
    assert code == 1 and found, err
    frames = int(found.group(1))
    assert frames > 0 and av_frames(out)[0] == frames


def test_a_real_full_disk_stops_mask_saving(tmp_path, small_tmpfs, capsys, brightness_model):
    clip = noisy_clip(tmp_path / "noise.avi")
    masks = small_tmpfs / "masks"
    masks.mkdir()
    fs = os.statvfs(small_tmpfs)
    (small_tmpfs / "filler").write_bytes(b"\0" * (fs.f_bavail * fs.f_frsize - 48 * 1024))  # leave 48 kB
    code = main(["--headless", "--quiet", "--source", str(clip), "--model", str(brightness_model),
                 "--save-masks", str(masks), "--roi", "full"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and re.search(r"disk full while writing masks to \S+ after \d+ masks; free space and restart", err), err
    for png in (small_tmpfs / "masks").glob("*.png"):
        assert cv2.imread(str(png), cv2.IMREAD_GRAYSCALE) is not None  # every mask left is whole


def start_recording(tmp_path: Path, brightness_model: Path, out: Path) -> subprocess.Popen:
    """Start polyp-live recording a looping, paced clip; return once a fragment is on disk."""
    clip = write_video(tmp_path / "long.mp4", count=30)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DISPLAY", None)
    proc = subprocess.Popen([sys.executable, "-m", "polyp_live.realtime.cli", "--headless", "--quiet",
                             "--source", str(clip), "--model", str(brightness_model), "--loop", "--realtime",
                             "--record", str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = partial_path(out)
    deadline = time.monotonic() + 60
    first = None
    # The empty header appears at once; the first fragment follows after one GOP (one second).
    while time.monotonic() < deadline and proc.poll() is None:
        size = partial.stat().st_size if partial.exists() else 0
        first = first if first is not None or not size else size
        if first is not None and size > first + 2000:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1]
    return proc


def test_a_killed_recording_decodes_up_to_its_last_fragment(tmp_path, brightness_model):
    out = tmp_path / "rec.mp4"
    proc = start_recording(tmp_path, brightness_model, out)
    time.sleep(1.5)
    proc.kill()
    proc.communicate(timeout=20)
    frames, duration = av_frames(partial_path(out))
    assert frames >= 30 and duration >= 1.0  # at least the first whole one-second fragment


@pytest.mark.parametrize("signals, code", [((signal.SIGTERM, signal.SIGINT), 143),
                                           ((signal.SIGINT, signal.SIGINT), 130),
                                           ((signal.SIGHUP,), 129)])
def test_a_second_signal_or_a_closed_terminal_keeps_the_recording(tmp_path, brightness_model, signals, code):
    out = tmp_path / "rec.mp4"
    proc = start_recording(tmp_path, brightness_model, out)
    for i, signum in enumerate(signals):
        if i:
            time.sleep(0.03)
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "recording is finalised" in err
    frames, _, size = decode(out)
    assert len(frames) >= 30 and size == (160, 120)
    assert not partial_path(out).exists()


def test_a_live_feed_faster_than_announced_keeps_its_true_times(tmp_path):
    from fractions import Fraction

    out = tmp_path / "live.mp4"
    recorder = VideoRecorder(out, 30, (64, 48), clock=Fraction(1, 90000))  # the camera says 30, sends 60
    for i in range(60):
        recorder.submit(np.full((48, 64, 3), i * 4, np.uint8), i / 60)
    recorder.close()
    frames, duration = av_frames(out)
    assert recorder.finalised and recorder.frames == frames == 60
    assert duration == pytest.approx(1.0, abs=1 / 30)  # one second of video, not two


def x264_options(path: Path) -> dict[str, str]:
    """The encoder settings libx264 wrote into the recording's first keyframe (its 'options:' SEI)."""
    text = path.read_bytes().split(b" options: ", 1)[1].split(b"\x00", 1)[0].decode("ascii", "replace")
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


@pytest.mark.parametrize("shared, subme, deblock", [(False, "1", "1:0:0"), (True, "0", "0:0:0")])
def test_a_recording_shared_with_webrtc_viewers_is_encoded_with_the_faster_preset(tmp_path, shared, subme, deblock):
    from polyp_live.realtime.web.encoders import RecordingTap
    out = tmp_path / "out.mp4"
    config = PipelineConfig(roi=RoiConfig(mode="full"), output=OutputConfig(record=str(out)))
    pipeline = Pipeline(config, GappySource(12, step=1), FakeBackend())
    if shared:  # what --web does to a recording run: the viewers read the recorder's packets
        pipeline.view.recording_tap = RecordingTap()
    pipeline.run()
    # superfast keeps x264's deblocking filter and sub-pixel search; ultrafast turns both off
    options = x264_options(out)
    assert (options["subme"], options["deblock"]) == (subme, deblock), options
    assert av_frames(out)[0] == 12
