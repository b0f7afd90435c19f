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
import pytest

from conftest import ROOT, TEST_SPEC, decode, make_brightness_model, write_video
from polyp_live.realtime.cli import main


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


# Damaged and truncated files, literal file names and stalled streams: see test_sources.py.


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
    with pytest.raises(SystemExit) as info:
        main(["--headless", "--source", str(clip), "--model", str(brightness_model), "--roi", "1,2,3"])
    assert info.value.code == 2 and "argument --roi: '1,2,3' is not auto, full or x,y,w,h" in capsys.readouterr().err


def test_a_path_that_exists_but_is_no_source_is_named_as_such_not_as_missing(capsys, brightness_model):
    code, err = run_cli(capsys, "--source", "/dev/null", "--model", str(brightness_model))
    assert code == 1 and "'/dev/null' is not a file, folder or device polyp-live reads" in error_line(err)


def test_unknown_recording_container(capsys, clip, brightness_model, tmp_path):
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--record", str(tmp_path / "o.gif"))
    assert code == 1 and "o.gif" in error_line(err)


def test_a_recording_path_that_is_a_folder_is_refused_before_the_run(capsys, clip, brightness_model, tmp_path):
    (tmp_path / "out.mp4").mkdir()
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--record",
                        str(tmp_path / "out.mp4"))
    assert code == 2 and "is a folder; give a file name" in error_line(err) and "summary" not in err
    assert not list(tmp_path.glob(".*partial*")) and not any((tmp_path / "out.mp4").iterdir())  # nothing left


def test_two_outputs_on_one_path_are_refused_before_the_run(capsys, clip, brightness_model, tmp_path):
    out = tmp_path / "run.mp4"
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--record", str(out),
                        "--stats-json", str(out))
    assert code == 2 and "--stats-json" in error_line(err) and "is also --record" in err and not out.exists()


def test_a_mask_folder_holding_masks_is_refused_before_the_run(capsys, clip, brightness_model, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "000000.png").write_bytes(b"an earlier run's mask")
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--save-masks", str(masks))
    assert code == 2 and "already holds masks" in error_line(err) and "summary" not in err
    assert [p.name for p in masks.iterdir()] == ["000000.png"] and (masks / "000000.png").read_bytes() == b"an earlier run's mask"


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
    assert "not installed" in line and "pip install 'polyp-live[tensorrt]'" in line  # the extra survives printing


# ---- issue 8: nothing overwritten, every message one line, every option checked -----------------

def _image_folder(folder: Path, count: int = 3, size=(160, 120)) -> dict[Path, bytes]:
    from conftest import moving_disc_frames
    folder.mkdir()
    for i, frame in enumerate(moving_disc_frames(count, size)):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), frame)
    return {p: p.read_bytes() for p in folder.iterdir()}


def test_an_output_that_is_or_writes_into_the_source_is_refused_before_the_first_frame(capsys, tmp_path,
                                                                                         brightness_model):
    clip = write_video(tmp_path / "same.mp4", count=10)
    original = clip.read_bytes()
    link = tmp_path / "link.mp4"
    link.symlink_to(clip)
    for output in (["--record", str(clip)], ["--record", str(link)], ["--stats-json", str(clip)],
                   ["--stats-json", str(brightness_model)]):
        code, err = run_cli(capsys, "--source", str(link), "--model", str(brightness_model), "--max-frames", "3",
                            *output)
        assert code == 2 and "which this run reads" in error_line(err), (output, err)
    assert clip.read_bytes() == original
    folder = tmp_path / "imgs"
    images = _image_folder(folder)
    for source in (str(folder), str(folder / "*.png")):
        for output in (["--save-masks", str(folder)], ["--record", str(folder / "out.mp4")],
                       ["--save-masks", str(tmp_path / "imgs" / ".." / "imgs")]):
            code, err = run_cli(capsys, "--source", source, "--model", str(brightness_model), *output)
            assert code == 2 and "would write into the source image folder" in error_line(err), (source, output)
    assert {p: p.read_bytes() for p in folder.iterdir()} == images  # nothing added, nothing changed


def test_messages_are_printed_as_text_not_as_markup(capsys, tmp_path, brightness_model, monkeypatch):
    code, err = run_cli(capsys, "--source", "/tmp/x[/].mp4", "--model", str(brightness_model))
    assert code == 1 and "video file /tmp/x[/].mp4 not found" in error_line(err)
    monkeypatch.setitem(sys.modules, "torch", None)
    checkpoint = tmp_path / "m[1].pt"
    checkpoint.write_bytes(b"not used")
    code, err = run_cli(capsys, "--source", str(write_video(tmp_path / "c.mp4", count=3)), "--model", str(checkpoint))
    assert code == 1 and "pip install 'polyp-live[train]'" in error_line(err)


def test_stats_json_into_a_folder_or_an_unwritable_place_is_refused_before_the_first_frame(capsys, clip, tmp_path,
                                                                                            brightness_model):
    out = tmp_path / "rec.mp4"
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--record", str(out),
                        "--stats-json", str(tmp_path))
    assert code == 2 and "is a folder" in error_line(err)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--record", str(out),
                        "--stats-json", str(blocker / "stats.json"))
    assert code == 1 and "--stats-json" in error_line(err) and "cannot be written" in err
    assert not out.exists()  # refused before the first frame


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to simulate a full disk")
def test_stats_json_on_a_full_disk_is_one_line_and_exit_1(capsys, clip, tmp_path, brightness_model):
    stats = tmp_path / "stats.json"
    stats.symlink_to("/dev/full")  # every write fails with ENOSPC
    out = tmp_path / "rec.mp4"
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--record", str(out),
                        "--stats-json", str(stats))
    assert code == 1
    assert "cannot write --stats-json" in error_line(err) and "No space left on device" in err
    assert "Traceback" not in err
    assert len(decode(out)[0]) == 30  # the recording itself is intact


@pytest.mark.parametrize("args", [
    ["--threshold", "0.4", "--threshold-low", "0.6"], ["--roi", "0,0,0,0"], ["--roi", "a,b"],
    ["--smoothing-strength", "1.5"], ["--smoothing-strength", "1"], ["--precision", "fp16"], ["--fps", "-1"],
    ["--reconnect-timeout", "-2"], ["--fps", "inf"], ["--fps", "nan"], ["--max-frames", "many"],
    ["--server-timeout", "-1"], ["--server-timeout", "inf"],
])
def test_invalid_option_values_exit_2_with_one_line(capsys, clip, brightness_model, args):
    with pytest.raises(SystemExit) as info:
        main(["--headless", "--quiet", "--source", str(clip), "--model", str(brightness_model), *args])
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("polyp-live: error:")
    assert args[0] in errors[0] or args[-2] in errors[0]


def test_a_switch_off_threshold_above_the_models_switch_on_threshold_exits_2(capsys, clip, brightness_model):
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--threshold-low", "0.7")
    assert code == 2 and "--threshold-low 0.7 must not be above the switch-on threshold 0.5" in error_line(err)


FAKE_SLOW_ONNXRUNTIME = '''
"""Stands in for onnxruntime: announces itself, takes three seconds, then becomes the real module."""
import os, pathlib, sys, time
pathlib.Path(os.environ["POLYP_TEST_IMPORTING"]).touch()
time.sleep(3)
here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
del sys.modules["onnxruntime"]
import onnxruntime as _real
sys.modules["onnxruntime"] = _real
'''


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_heavy_imports_exits_cleanly_without_a_wrong_diagnosis(tmp_path, clip, brightness_model,
                                                                                    signum):
    fake = tmp_path / "fake" / "onnxruntime"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_SLOW_ONNXRUNTIME)
    importing = tmp_path / "importing"
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'fake'}{os.pathsep}{ROOT}", POLYP_TEST_IMPORTING=str(importing))
    env.pop("DISPLAY", None)
    proc = subprocess.Popen([sys.executable, "-m", "polyp_live.realtime.cli", "--headless", "--quiet",
                             "--source", str(clip), "--model", str(brightness_model)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not importing.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert importing.exists(), "onnxruntime was never imported"
        proc.send_signal(signum)  # lands inside the (slow) import of onnxruntime
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + int(signum), err
    assert f"stopped by {signal.Signals(signum).name}" in err
    assert "Traceback" not in err and "not installed" not in err and "error" not in err


def test_threads_above_the_core_count_are_capped_with_a_warning(capsys, clip, brightness_model):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--threads", "1000",
                        "--max-frames", "2")
    assert code == 0
    assert f"warning: --threads 1000 is more than the {cores} CPU cores available; using {cores}" in err


def test_opencv_and_ffmpeg_chatter_is_silent_unless_verbose(tmp_path, brightness_model):
    def stderr_lines(*extra):
        proc = _start(["--source", "97", "--reconnect-timeout", "0", "--model", str(brightness_model), *extra],
                      tmp_path)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        return [line for line in err.splitlines() if line.strip()]

    quiet = stderr_lines()
    assert len(quiet) == 1 and quiet[0].startswith("polyp-live: error: cannot open camera 97"), quiet
    loud = stderr_lines("--verbose")
    if len(loud) == 1:
        pytest.skip("this OpenCV build logs nothing for a missing camera")
    assert loud[-1].startswith("polyp-live: error:")


def test_finalised_is_not_claimed_when_nothing_was_recorded(tmp_path, brightness_model):
    clip = write_video(tmp_path / "long.mp4", count=30)
    proc = _start(["--source", str(clip), "--model", str(brightness_model), "--loop", "--realtime"], tmp_path)
    time.sleep(3)  # let it run (not a timing assertion: the outcome is the same in any phase)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "finalised" not in err and "recording" not in err


def test_an_odd_sized_source_is_recorded_padded_to_even_as_the_readme_says(capsys, tmp_path, brightness_model):
    folder = tmp_path / "odd"
    _image_folder(folder, count=4, size=(17, 9))
    out = tmp_path / "odd.mp4"
    assert run_cli(capsys, "--source", str(folder), "--model", str(brightness_model), "--record", str(out),
                   "--min-area", "0", "--no-hud")[0] == 0
    frames, _, size = decode(out)
    assert len(frames) == 4 and size == (18, 10)
    assert "one black" in (ROOT / "docs" / "usage.md").read_text()  # the options page the README links
