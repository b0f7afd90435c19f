"""Live mode: the video never waits for the model, masks carry their age, the window gets a narrow view."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from conftest import FakeBackend, decode, moving_disc_frames, write_video
import polyp_live.realtime.output as output_module
from polyp_live.core.config import OutputConfig, PipelineConfig, PostprocessConfig, RenderConfig, RoiConfig, SourceConfig
from polyp_live.realtime.output import Annotation, ModelInfo, OutputStage
from polyp_live.realtime.pipeline import Pipeline
from polyp_live.core.segmenter import Segmenter
from polyp_live.realtime.sources import Frame, VideoFileSource
from polyp_live.realtime.stats import PipelineStats
from polyp_live.realtime.view import LiveView


def capture_huds(monkeypatch) -> list:
    """Record every HudInfo the output stage draws (the drawing itself still happens)."""
    seen = []
    original = output_module.draw_hud

    def spy(image, hud, present, roi=None):
        seen.append((hud, present))
        original(image, hud, present, roi)

    monkeypatch.setattr(output_module, "draw_hud", spy)
    return seen


def test_video_never_waits_for_a_slow_backend(tmp_path, monkeypatch):
    huds = capture_huds(monkeypatch)
    clip = write_video(tmp_path / "clip.mp4", count=45, fps=30)
    out = tmp_path / "live.mp4"
    config = PipelineConfig(source=SourceConfig(realtime=True), roi=RoiConfig(mode="full"),
                            output=OutputConfig(record=str(out)))
    backend = FakeBackend(delay=0.2)
    stats = Pipeline(config, VideoFileSource(str(clip)), backend).run().summary()
    counters = stats["counters"]
    assert counters["frames_out"] == 45 and counters["dropped"] == 0 and counters["record_dropped"] == 0
    frames, _, _ = decode(out)
    assert len(frames) == 45                      # every frame recorded although inference is 6x too slow
    assert counters["inferred"] < 20              # the model ran on the newest frames only
    assert counters["stale"] > 0                  # masks older than 250 ms were not drawn ...
    states = [hud.annotation for hud, _ in huds]
    assert "stale" in states and states[0] == "waiting"  # ... and the HUD said why
    assert all(hud.annotation_delay_ms is None for hud, _ in huds if hud.annotation)


def make_stage(tmp_path, live: bool = True, record: bool = False, max_age_ms: float = 250.0) -> tuple[OutputStage, PipelineStats]:
    out = OutputConfig(record=str(tmp_path / "o.mp4") if record else None)
    config = PipelineConfig(render=RenderConfig(style="fill", alpha=1.0, color=(0, 255, 0), max_annotation_age_ms=max_age_ms),
                            output=out, roi=RoiConfig(mode="full"), postprocess=PostprocessConfig(min_area=0), display=True)
    stats = PipelineStats()
    stage = OutputStage(config, stats, LiveView(live_source=True), ModelInfo("m", "fp32", "fake"), 30.0, live=live)
    return stage, stats


def annotated(frame: Frame) -> Annotation:
    seg = Segmenter(FakeBackend(), PipelineConfig(roi=RoiConfig(mode="full"), postprocess=PostprocessConfig(min_area=0)))
    return Annotation.of(frame, seg.process(frame.image))


def test_a_mask_is_drawn_on_later_frames_with_its_age_and_not_once_too_old(tmp_path, monkeypatch):
    huds = capture_huds(monkeypatch)
    stage, stats = make_stage(tmp_path)
    images = list(moving_disc_frames(3, size=(640, 480)))
    now = time.perf_counter()
    annotation = annotated(Frame(0, images[0].copy(), now - 0.10, source_index=0))
    mask = annotation.result.mask > 0
    mask[:200] = False  # below the HUD panel (top-left, over the image: these frames have no margins)
    assert mask.sum() > 1000
    young = Frame(1, images[1].copy(), now, source_index=1)      # captured 100 ms after the annotated frame
    old = Frame(2, images[2].copy(), now + 0.2, source_index=2)  # 300 ms after: beyond the 250 ms limit
    stage.emit(young, annotation)
    shown_young = stage.view.newest()[1]
    stage.emit(old, annotation)
    shown_old = stage.view.newest()[1]
    # Drawn on the later frame exactly where the annotated frame's mask is (alpha 1: pure green) ...
    assert np.all(shown_young[mask] == (0, 255, 0))
    # ... on a copy: the captured frame stays as it was (inference may still be reading it).
    assert np.array_equal(young.image, images[1])
    # The too-old mask is not drawn at all, and the HUD says the annotation is stale.
    assert not np.any(np.all(shown_old[mask] == (0, 255, 0), axis=-1))
    (hud_young, present_young), (hud_old, present_old) = huds
    assert present_young and hud_young.annotation == "" and hud_young.annotation_delay_ms >= 100
    assert not present_old and hud_old.annotation == "stale" and hud_old.annotation_delay_ms is None
    assert hud_old.stale_ms == pytest.approx(300, abs=1)  # the HUD says how old the newest mask is
    assert stats.counters["stale"] == 1 and stats.counters["annotated"] == 1
    assert stats.summary()["stages_ms"]["annotation_delay"]["p50"] >= 100


def test_the_window_works_on_the_view_alone_and_messages_stay_off_the_recording(tmp_path, monkeypatch):
    import polyp_live.realtime.display as display

    shown = []
    for name, fn in {"namedWindow": lambda *a: None, "resizeWindow": lambda *a: None,
                     "imshow": lambda _n, img: shown.append(img), "waitKey": lambda *_a: 255,
                     "destroyWindow": lambda *a: None}.items():
        monkeypatch.setattr(display.cv2, name, fn)
    stop = threading.Event()
    view = LiveView(live_source=True, stop=stop)
    window = display.Window(view, str(tmp_path / "snaps"))
    assert not hasattr(window, "pipeline")
    picture = np.full((120, 160, 3), 50, np.uint8)
    view.publish(picture)
    window.tick()
    assert shown[-1] is picture
    window.tick()
    assert len(shown) == 1  # an unchanged picture is not pushed to the screen again
    window.handle_key(ord(" "))
    assert view.paused.is_set()
    window.handle_key(ord("o"))
    assert view.overlay is False
    window.handle_key(ord("s"))
    assert len(list((tmp_path / "snaps").glob("*.png"))) == 1
    assert view.message.startswith("saved ") and view.signal == ""  # a message, not a signal state
    window.tick()
    assert shown[-1] is not picture and np.array_equal(picture, np.full((120, 160, 3), 50, np.uint8))
    view.set_signal("signal lost: reconnecting")
    window.tick()
    assert shown[-1].shape == picture.shape and shown[-1].mean() < picture.mean()  # dimmed lost-signal screen
    window.handle_key(ord("q"))
    assert stop.is_set()


def test_a_transient_message_never_reaches_the_hud_of_recorded_frames(tmp_path, monkeypatch):
    huds = capture_huds(monkeypatch)
    clip = write_video(tmp_path / "c.mp4", count=6, fps=30)
    pipeline = Pipeline(PipelineConfig(roi=RoiConfig(mode="full")), VideoFileSource(str(clip)), FakeBackend())
    pipeline.view.notify("saved snapshot.png", seconds=60)
    pipeline.run()
    assert len(huds) == 6 and all(hud.message == "" for hud, _ in huds)


@pytest.mark.parametrize("live", [True, False])
def test_hud_and_stats_name_the_model_and_precision(tmp_path, monkeypatch, live):
    huds = capture_huds(monkeypatch)
    clip = write_video(tmp_path / "c.mp4", count=4, fps=30)
    backend = FakeBackend()
    backend.precision, backend.model_path = "int8", "/models/polyp-net.int8.onnx"
    config = PipelineConfig(source=SourceConfig(realtime=live), roi=RoiConfig(mode="full"))
    stats = Pipeline(config, VideoFileSource(str(clip)), backend).run().summary()
    assert stats["info"]["model"] == "polyp-net" and stats["info"]["precision"] == "int8"
    assert stats["info"]["mode"] == ("live" if live else "file")
    assert huds and all(h.model == "polyp-net" and h.precision == "int8" for h, _ in huds)


def test_live_masks_are_those_the_model_computed_named_after_their_frames(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", count=40, fps=30)
    masks = tmp_path / "masks"
    config = PipelineConfig(source=SourceConfig(realtime=True), roi=RoiConfig(mode="full"),
                            output=OutputConfig(save_masks=str(masks)))
    counters = Pipeline(config, VideoFileSource(str(clip)), FakeBackend(delay=0.05)).run().summary()["counters"]
    names = sorted(int(p.stem) for p in masks.glob("*.png"))
    assert len(names) == counters["inferred"] == counters["masks"] < 40
    assert len(set(names)) == len(names) and all(0 <= i < 40 for i in names)
    assert counters["frames_out"] == 40
