"""End-to-end behaviour of the live pipeline on generated clips and models."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from conftest import FakeBackend, decode, write_video
from polyp_live.realtime.cli import main
from polyp_live.core.config import PipelineConfig, RoiConfig, SmoothingConfig, SourceConfig, OutputConfig
from polyp_live.core.errors import SourceError, StageError
from polyp_live.realtime.pipeline import Pipeline
from polyp_live.realtime.sources import FrameSource, SignalLost, VideoFileSource


def run_cli(*args: str) -> int:
    return main(["--headless", "--quiet", *args])


def test_every_frame_reaches_the_recording_at_the_source_rate(tmp_path, clip, brightness_model):
    out = tmp_path / "out.mp4"
    stats = tmp_path / "stats.json"
    assert run_cli("--source", str(clip), "--model", str(brightness_model), "--record", str(out),
                   "--stats-json", str(stats)) == 0
    src_frames, src_fps, src_size = decode(clip)
    frames, fps, size = decode(out)
    assert len(frames) == len(src_frames) == 30
    assert size == src_size
    assert fps == pytest.approx(29.97, abs=0.005)
    summary = json.loads(stats.read_text())
    assert summary["counters"]["frames_out"] == 30
    assert summary["counters"]["dropped"] == 0
    for stage in ("capture", "preprocess", "inference", "postprocess", "render", "write", "encode",
                  "video_delay", "annotation_delay"):
        assert summary["stages_ms"][stage]["count"] == 30
        assert summary["stages_ms"][stage]["p50"] <= summary["stages_ms"][stage]["p99"]


def test_masks_match_an_independent_reference(tmp_path, clip, brightness_model):
    masks = tmp_path / "masks"
    assert run_cli("--source", str(clip), "--model", str(brightness_model), "--save-masks", str(masks),
                   "--roi", "full", "--smoothing", "none", "--min-area", "0", "--no-fill-holes",
                   "--threshold", "0.5", "--threshold-low", "0.5") == 0
    frames, _, _ = decode(clip)
    files = sorted(masks.glob("*.png"))
    assert len(files) == len(frames)
    for frame, file in zip(frames, files):
        # Reference: the brightness rule on the 32x32 resized frame, scaled back up.
        # (the shared resize: Gaussian pyramid halvings, then bilinear)
        small = frame
        while small.shape[0] >= 64 and small.shape[1] >= 64:
            small = cv2.pyrDown(small)
        small = cv2.resize(small, (32, 32), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
        ref_small = (small.mean(axis=2) > 0.5).astype(np.uint8) * 255
        ref = cv2.resize(ref_small, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR) >= 128
        got = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE) > 0
        assert got.shape == ref.shape
        assert ref.any()
        assert np.mean(got == ref) > 0.999


def test_realtime_shows_every_frame_and_skips_inference_instead_of_growing_latency(tmp_path):
    clip = write_video(tmp_path / "fast.mp4", count=60, fps=30)
    config = PipelineConfig(source=SourceConfig(realtime=True), roi=RoiConfig(mode="full"))
    pipeline = Pipeline(config, VideoFileSource(str(clip)), FakeBackend(delay=0.1))
    stats = pipeline.run().summary()
    counters = stats["counters"]
    assert counters["frames_in"] == 60
    assert counters["frames_out"] == 60 and counters["dropped"] == 0  # the video never waits for the model
    assert counters["not_inferred"] > 20
    assert counters["inferred"] + counters["not_inferred"] <= 60
    # Queued frames would make the last annotation ~60 x 0.1 s late; the newest-frame slot keeps it near one inference.
    assert stats["stages_ms"]["annotation_delay"]["max"] < 1000


def test_file_mode_keeps_every_frame_when_inference_is_slow(tmp_path):
    clip = write_video(tmp_path / "slow.mp4", count=12, fps=30)
    pipeline = Pipeline(PipelineConfig(roi=RoiConfig(mode="full")), VideoFileSource(str(clip)), FakeBackend(delay=0.02))
    counters = pipeline.run().summary()["counters"]
    assert counters["frames_out"] == 12 and counters["dropped"] == 0


def test_a_backend_that_raises_stops_the_pipeline_promptly_and_keeps_the_recording(tmp_path, clip):
    out = tmp_path / "partial.mp4"
    config = PipelineConfig(output=OutputConfig(record=str(out)), roi=RoiConfig(mode="full"))
    pipeline = Pipeline(config, VideoFileSource(str(clip)), FakeBackend(fail_after=5))
    start = time.monotonic()
    with pytest.raises(StageError, match="inference stage failed: simulated inference failure"):
        pipeline.run()
    # A hang guard, not a speed goal: a pipeline that failed to stop would block for minutes.
    assert time.monotonic() - start < 30
    assert not any(t.is_alive() for t in pipeline._threads)
    frames, _, size = decode(out)
    assert len(frames) == 5 and size == (160, 120)


def test_max_frames_and_loop(tmp_path, clip, brightness_model):
    out = tmp_path / "loop.mp4"
    assert run_cli("--source", str(clip), "--model", str(brightness_model), "--loop", "--max-frames", "75",
                   "--record", str(out)) == 0
    assert len(decode(out)[0]) == 75


class ScriptedLiveSource(FrameSource):
    """A camera that delivers ``before`` frames, fails, refuses ``refusals`` reopens, then delivers again."""

    live = True
    description = "camera test"

    def __init__(self, before: int, refusals: int, after: int = 1000):
        super().__init__()
        self.before, self.refusals, self.after = before, refusals, after
        self.sent, self.opens, self.lost = 0, 0, False
        self.frame = np.full((120, 160, 3), 60, np.uint8)
        self.size = (160, 120)

    def open(self) -> None:
        self.opens += 1
        if self.opens > 1:
            if self.refusals > 0:
                self.refusals -= 1
                raise SourceError("camera test busy")
            self.lost = False

    def read(self):
        time.sleep(0.005)
        if self.lost or self.sent == self.before:
            self.lost = True
            self.sent += 1
            raise SignalLost("camera test")
        self.sent += 1
        return self.frame.copy()


def test_a_source_that_fails_mid_stream_reports_signal_lost_and_reconnects():
    source = ScriptedLiveSource(before=5, refusals=2)
    config = PipelineConfig(source=SourceConfig(max_frames=20, reconnect_timeout=5), roi=RoiConfig(mode="full"))
    pipeline = Pipeline(config, source, FakeBackend())
    counters = pipeline.run().summary()["counters"]
    assert counters["signal_lost"] == 1
    assert counters["reconnects"] == 1
    assert counters["frames_in"] == 20
    assert source.opens == 4  # first open, two refused, one accepted


def test_a_source_that_never_comes_back_exits_with_the_recording_finalised(tmp_path):
    out = tmp_path / "lost.mp4"
    source = ScriptedLiveSource(before=8, refusals=10**6)
    config = PipelineConfig(source=SourceConfig(reconnect_timeout=0.8), roi=RoiConfig(mode="full"),
                            output=OutputConfig(record=str(out)))
    pipeline = Pipeline(config, source, FakeBackend())
    with pytest.raises(SourceError, match="lost and not back within --reconnect-timeout 0.8 s"):
        pipeline.run()
    assert pipeline.stats.counters["signal_lost"] == 1
    frames, _, _ = decode(out)
    assert 1 <= len(frames) <= 8


def test_smoothing_state_resets_after_signal_loss():
    source = ScriptedLiveSource(before=3, refusals=0)
    config = PipelineConfig(source=SourceConfig(max_frames=6), roi=RoiConfig(mode="full"),
                            smoothing=SmoothingConfig(mode="ema", strength=0.9))
    pipeline = Pipeline(config, source, FakeBackend())
    resets = []
    original = pipeline.segmenter.reset
    # (the first frame resets too, before any size is known; only a later reset is the marker's)
    pipeline.segmenter.reset = lambda: (resets.append(pipeline.segmenter._size is not None), original())
    pipeline.run()
    assert True in resets  # the RESET marker after the loss reached the segmenter


def test_auto_roi_segments_inside_the_field_of_view_only(tmp_path, brightness_model):
    clip = write_video(tmp_path / "margins.mp4", count=5, size=(200, 120), margin=30)
    masks = tmp_path / "m"
    assert run_cli("--source", str(clip), "--model", str(brightness_model), "--save-masks", str(masks),
                   "--roi", "auto", "--min-area", "0") == 0
    for file in masks.glob("*.png"):
        mask = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (120, 200)
        assert mask[:, :28].max() == 0 and mask[:, 172:].max() == 0
        assert mask.max() == 255


def test_heatmap_and_contour_styles_render(tmp_path, clip, brightness_model):
    for style in ("fill", "contour", "heatmap"):
        out = tmp_path / f"{style}.mkv"
        assert run_cli("--source", str(clip), "--model", str(brightness_model), "--overlay", style,
                       "--no-hud", "--record", str(out), "--max-frames", "3") == 0
        frames, _, _ = decode(out)
        assert len(frames) == 3


def test_an_image_folder_is_read_in_name_order_at_the_given_rate(tmp_path, brightness_model):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, frame in enumerate(write_frames := list(__import__("conftest").moving_disc_frames(6))):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), frame)
    out = tmp_path / "seq.mp4"
    assert run_cli("--source", str(folder), "--fps", "12.5", "--model", str(brightness_model),
                   "--record", str(out)) == 0
    frames, fps, _ = decode(out)
    assert len(frames) == len(write_frames) and fps == pytest.approx(12.5, abs=0.01)


def test_pipeline_threads_stop_when_the_user_stops():
    source = ScriptedLiveSource(before=10**6, refusals=0)
    pipeline = Pipeline(PipelineConfig(roi=RoiConfig(mode="full")), source, FakeBackend())
    threading.Timer(0.5, pipeline.stop.set).start()
    start = time.monotonic()
    pipeline.run()
    # A hang guard, not a speed goal: the live source never ends by itself.
    assert time.monotonic() - start < 30
    assert not any(t.is_alive() for t in pipeline._threads)
    assert pipeline.stats.counters["frames_out"] > 0
