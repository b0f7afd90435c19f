"""Every bad input: a one-line message naming the input and the fix, a non-zero exit, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, TEST_SPEC, decode, make_brightness_model, write_video
from polyp_live.realtime.cli import main
from polyp_live.realtime.sources import VideoFileSource


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["--headless", "--quiet", *args])
    err = capsys.readouterr().err
    return code, " ".join(err.split())


def error_line(err: str) -> str:
    assert "polyp-live: error:" in err, err
    return err.split("polyp-live: error:")[1]


def test_missing_video_file(capsys, tmp_path, brightness_model):
    code, err = run_cli(capsys, "--source", str(tmp_path / "nope.mp4"), "--model", str(brightness_model))
    assert code == 1
    assert "nope.mp4 not found" in error_line(err) and "--source" in err


def test_file_with_zero_decodable_frames(capsys, tmp_path, brightness_model):
    bogus = tmp_path / "empty.mp4"
    bogus.write_bytes(b"\x00" * 4096)
    out = tmp_path / "out.mp4"
    code, err = run_cli(capsys, "--source", str(bogus), "--model", str(brightness_model), "--record", str(out))
    assert code == 1
    line = error_line(err)
    assert "empty.mp4" in line and ("no decodable video frames" in line or "cannot be opened as video" in line)
    assert not out.exists()  # no frame was ever produced, so no empty file is left behind


class FlakyCapture:
    """A cv2.VideoCapture stand-in whose reads fail at given positions (corrupt frames)."""

    def __init__(self, frames: int, bad: set[int]):
        self.frames, self.bad, self.pos = frames, bad, 0

    def isOpened(self):
        return True

    def read(self):
        if self.pos >= self.frames:
            return False, None
        self.pos += 1
        if self.pos - 1 in self.bad:
            return False, None
        return True, np.full((8, 8, 3), self.pos, np.uint8)

    def grab(self):
        return False

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_FRAME_COUNT: self.frames,
                cv2.CAP_PROP_POS_FRAMES: self.pos, cv2.CAP_PROP_FRAME_WIDTH: 8, cv2.CAP_PROP_FRAME_HEIGHT: 8}.get(prop, 0)

    def set(self, prop, value):
        self.pos = int(value)

    def release(self):
        pass


def test_corrupt_frames_in_the_middle_are_skipped_counted_and_the_run_continues(tmp_path):
    path = tmp_path / "flaky.mp4"
    path.write_bytes(b"x")
    source = VideoFileSource(str(path), capture_factory=lambda p: FlakyCapture(10, {3, 4, 7}))
    with source:
        got = []
        while (image := source.read()) is not None:
            got.append(int(image[0, 0, 0]))
    assert got == [1, 2, 3, 6, 7, 9, 10]
    assert source.corrupt_frames == 3


def test_corrupt_frames_are_reported_in_the_stats(tmp_path, brightness_model, monkeypatch):
    path = tmp_path / "flaky.mp4"
    path.write_bytes(b"x")
    import polyp_live.realtime.sources as sources
    monkeypatch.setattr(sources.cv2, "VideoCapture", lambda p: FlakyCapture(10, {2, 5}))
    stats = tmp_path / "s.json"
    assert main(["--headless", "--quiet", "--source", str(path), "--model", str(brightness_model),
                 "--roi", "full", "--stats-json", str(stats)]) == 0
    summary = json.loads(stats.read_text())
    assert summary["counters"]["corrupt"] == 2 and summary["counters"]["frames_out"] == 8


def test_camera_that_does_not_exist(capsys, brightness_model):
    code, err = run_cli(capsys, "--source", "/dev/video97", "--model", str(brightness_model))
    assert code == 1
    assert "/dev/video97 does not exist" in error_line(err)


def test_camera_index_that_cannot_be_opened(capsys, brightness_model):
    code, err = run_cli(capsys, "--source", "97", "--model", str(brightness_model), "--reconnect-timeout", "0")
    assert code == 1
    assert "cannot open camera 97" in error_line(err) and "busy" in err


def test_missing_model(capsys, clip, tmp_path):
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(tmp_path / "none.onnx"))
    assert code == 1 and "none.onnx not found" in error_line(err)


def test_model_that_is_not_onnx(capsys, clip, tmp_path):
    bad = tmp_path / "text.onnx"
    bad.write_text("this is not a model")
    TEST_SPEC.save(bad)
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(bad))
    assert code == 1 and "text.onnx is not a loadable ONNX model" in error_line(err)


def test_model_without_sidecar(capsys, clip, tmp_path):
    model = make_brightness_model(tmp_path / "m.onnx")
    (tmp_path / "m.json").unlink()
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(model))
    assert code == 1 and "sidecar" in error_line(err) and "m.json not found" in err


def test_model_input_shape_the_sidecar_does_not_describe(capsys, clip, tmp_path):
    model = make_brightness_model(tmp_path / "m.onnx", size=64)  # sidecar still says 32x32
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(model))
    assert code == 1
    line = error_line(err)
    assert "input shape [1, 3, 64, 64]" in line and "describes [1, 3, 32, 32]" in line


def test_output_folder_not_writable(capsys, clip, brightness_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model),
                        "--record", str(blocker / "out.mp4"))
    assert code == 1 and "recording folder" in error_line(err) and "not writable" in err
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model),
                        "--save-masks", str(blocker / "masks"))
    assert code == 1 and "--save-masks folder" in error_line(err)


def test_unknown_option_values(capsys, clip, brightness_model):
    for args in (["--overlay", "sparkles"], ["--smoothing", "magic"], ["--backend", "tpu"], ["--threshold", "2"]):
        with pytest.raises(SystemExit) as info:
            main(["--headless", "--source", str(clip), "--model", str(brightness_model), *args])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"polyp-live: error: argument {args[0]}:" in err
        assert "invalid choice" in err or "is not between 0 and 1" in err
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--roi", "1,2,3")
    assert code == 1 and "--roi '1,2,3' is not valid" in error_line(err)


def test_unknown_recording_container(capsys, clip, brightness_model, tmp_path):
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--record", str(tmp_path / "o.gif"))
    assert code == 1 and "o.gif" in error_line(err)


def _start(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DISPLAY", None)
    return subprocess.Popen([sys.executable, "-m", "polyp_live.realtime.cli", "--headless", "--quiet", *args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_recording_is_playable_after_ctrl_c_or_sigterm(tmp_path, brightness_model, signum):
    clip = write_video(tmp_path / "long.mp4", count=30)
    out = tmp_path / "rec.mp4"
    proc = _start(["--source", str(clip), "--model", str(brightness_model), "--loop", "--realtime",
                   "--record", str(out)], tmp_path)
    partial = tmp_path / ".rec.partial.mp4"
    deadline = time.monotonic() + 30
    while not partial.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + int(signum), err
    assert "recording is finalised" in err
    frames, fps, size = decode(out)
    assert len(frames) >= 10 and size == (160, 120) and fps == pytest.approx(29.97, abs=0.005)
    assert not partial.exists()


def test_precision_int8_picks_the_int8_model_or_says_how_to_make_it(capsys, clip, brightness_model, tmp_path):
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--precision", "int8")
    assert code == 1 and "no INT8 model" in error_line(err) and "tools/quantize.py" in err
    import shutil
    shutil.copy(brightness_model, tmp_path / "bright.int8.onnx")
    shutil.copy(brightness_model.with_suffix(".json"), tmp_path / "bright.int8.json")
    stats = tmp_path / "s.json"
    assert run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--precision", "int8",
                   "--stats-json", str(stats))[0] == 0
    assert json.loads(stats.read_text())["counters"]["frames_out"] == 30


def test_tensorrt_backend_without_tensorrt_names_the_install(capsys, clip, brightness_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--backend", "tensorrt")
    assert code == 1
    line = error_line(err)
    assert "not installed" in line and "pip install" in line
