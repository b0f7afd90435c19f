"""Issue 20's counting, memory, serving-address and old-library cases, each against what it produced."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from conftest import FakeBackend, moving_disc_frames
from polyp_live.core.config import PipelineConfig, RoiConfig, SourceConfig
from polyp_live.realtime.live_source import CameraSource
from polyp_live.arguments import quiet_native_logs
from polyp_live.realtime.pipeline import Pipeline
from polyp_live.realtime.stats import LatencyHistogram, PipelineStats


class FastCapture:
    """A VideoCapture stand-in that delivers ``count`` frames as fast as it is read, then fails."""

    def __init__(self, count: int):
        self.frames = list(moving_disc_frames(count))
        self.sent = 0

    def isOpened(self):
        return True

    def set(self, *_):
        return True

    def get(self, prop):
        return {5: 1000.0, 3: 160, 4: 120}.get(prop, 0)  # CAP_PROP_FPS 5, WIDTH 3, HEIGHT 4

    def read(self):
        if self.sent >= len(self.frames):
            return False, None
        self.sent += 1
        return True, self.frames[self.sent - 1].copy()

    def release(self):
        pass


def test_frames_replaced_in_the_capture_slot_count_as_captured_and_dropped():
    capture = FastCapture(400)
    source = CameraSource("fake", capture_factory=lambda target: capture)
    config = PipelineConfig(source=SourceConfig(reconnect_timeout=0.0), roi=RoiConfig(mode="full"))
    pipeline = Pipeline(config, source, FakeBackend(delay=0.01))
    try:
        pipeline.run()
    except Exception:  # noqa: BLE001 - the device "fails" after its 400 frames: a lost signal, then no reconnect
        pass
    counters = pipeline.stats.summary()["counters"]
    # The device thread outran the reader: most frames were replaced in the slot before a read.
    assert counters["dropped"] > 0
    # Every frame the device delivered is accounted for, shown or dropped; at most the newest one,
    # still in the slot when the device stopped, is neither.
    assert capture.sent - 1 <= counters["frames_in"] <= capture.sent
    assert counters["frames_in"] == counters["frames_out"] + counters["dropped"]


def test_stage_percentiles_come_from_a_bounded_histogram_within_one_percent():
    rng = np.random.default_rng(3)
    values = rng.lognormal(np.log(0.02), 0.5, 20000)
    h = LatencyHistogram()
    for v in values:
        h.add(float(v))
    for q in (50, 95, 99):
        assert h.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.01)
    assert h.max == values.max() and h.count == len(values)
    stats = PipelineStats()
    size = stats.histograms["inference"].counts.nbytes
    for v in values:
        stats.record("inference", float(v))
    # Memory does not grow with the run: no raw samples, the same bins.
    assert stats.samples["inference"] == [] and stats.histograms["inference"].counts.nbytes == size
    row = stats.summary()["stages_ms"]["inference"]
    assert row["count"] == 20000 and row["mean"] == pytest.approx(1000 * values.mean())
    assert row["p95"] == pytest.approx(1000 * np.percentile(values, 95), rel=0.01)
    kept = PipelineStats(keep_samples=True)
    kept.record("inference", 0.5)
    assert kept.samples["inference"] == [0.5]


def test_a_single_sample_and_the_extremes_of_the_range():
    h = LatencyHistogram()
    h.add(0.0123)
    assert h.percentile(50) == pytest.approx(0.0123, rel=0.01) and h.percentile(99) <= 0.0123
    h.add(0.0)
    h.add(5000.0)  # beyond the top bin: still counted, the maximum exact
    assert h.count == 3 and h.max == 5000.0 and h.percentile(0) <= 1e-5  # the bottom bin: 0 to 10 us


def test_native_log_silencing_works_with_opencv_4_which_lacks_cv2_utils_logging(monkeypatch):
    calls = []
    fake = types.ModuleType("cv2")
    fake.setLogLevel = calls.append  # OpenCV 4.x: a plain function, no cv2.utils.logging
    monkeypatch.setitem(sys.modules, "cv2", fake)
    quiet_native_logs(False)
    quiet_native_logs(True)
    assert calls == [0, 4]


def test_the_inference_server_listens_on_loopback_unless_told_otherwise():
    from polyp_live.tools import serve
    assert serve.build_parser().parse_args([]).host == "127.0.0.1"
    assert serve.build_parser().parse_args(["--host", "0.0.0.0"]).host == "0.0.0.0"


def png_bomb(path, side: int = 20000) -> None:
    """A valid grey PNG of side x side pixels (400 MP at 20000) that compresses to a few hundred kB."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    packer = zlib.compressobj(1)
    row = b"\x00" * (side + 1)  # filter byte + a row of black
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.mark.parametrize("position", ["first", "later"])
def test_an_image_bomb_in_an_image_folder_is_skipped_and_counted(tmp_path, capsys, brightness_model, position):
    import cv2
    from polyp_live.core.readers import image_dimensions
    from test_bad_input import run_cli
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = list(moving_disc_frames(3))
    names = ["a.png", "b.png", "c.png"]
    bomb = names.pop(0 if position == "first" else 1)
    for name, image in zip(names, frames):
        cv2.imwrite(str(folder / name), image)
    png_bomb(folder / bomb)
    assert image_dimensions((folder / bomb).read_bytes()[:64]) == (20000, 20000)
    code, err = run_cli(capsys, "--source", str(folder), "--model", str(brightness_model),
                        "--stats-json", str(tmp_path / "s.json"))
    counters = __import__("json").loads((tmp_path / "s.json").read_text())["counters"]
    assert code == 0 and counters["corrupt"] == 1 and counters["frames_out"] == 2


@pytest.mark.parametrize("name", ["a\nb.mp4", "x\x1b[31mred.mp4", "tab\there.mp4"])
def test_control_characters_in_a_path_cannot_split_or_colour_the_one_line_error(tmp_path, capsys, brightness_model,
                                                                                 name):
    from polyp_live.realtime.cli import main
    code = main(["--headless", "--quiet", "--source", str(tmp_path / name), "--model", str(brightness_model)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "\x1b" not in err and "\t" not in err
    assert repr(name)[1:-1] in err  # shown escaped, as Python writes it


def test_a_tool_error_naming_a_path_with_a_newline_stays_one_line(tmp_path, capsys):
    from polyp_live.tools import interpolate
    bad = tmp_path / "bad\nname.onnx"
    bad.write_text("not a model")
    code = interpolate.main(["--models", str(bad), str(bad), "--alpha", "0.5", "--out", str(tmp_path / "o.onnx")])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "bad\\nname." in err


def test_out_of_memory_while_loading_a_model_says_so(monkeypatch, brightness_model):
    import onnxruntime
    from polyp_live.core.errors import ModelLoadError
    from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend

    def no_memory(*_args, **_kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: std::bad_alloc")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_memory)
    with pytest.raises(ModelLoadError, match="not enough memory to load model .*bright.onnx.*ulimit"):
        OnnxRuntimeBackend(brightness_model)


def test_a_stage_that_runs_out_of_memory_is_named_so_and_ffmpeg_errors_by_ffmpeg():
    import av
    from polyp_live.core.errors import StageError
    assert "out of memory" in str(StageError("inference", MemoryError()))
    from polyp_live.realtime.recorder import VideoRecorder
    recorder = VideoRecorder.__new__(VideoRecorder)  # only the failure wording is under test
    recorder.frames, recorder.path = 12, "out.mp4"
    recorder._fail(av.error.ExternalError(-542398533, "Generic error in an external library"))
    message = str(recorder.error)
    assert "FFmpeg: Generic error in an external library" in message and "Unknown error" not in message
    assert "after 12 frames" in message
