"""The thread-free Segmenter, the presence decision wired into it, and the queues' control markers."""

from __future__ import annotations

import queue

import cv2
import numpy as np
import pytest

from polyp_live.core.backend import Backend

from conftest import TEST_SPEC, FakeBackend, moving_disc_frames
from polyp_live.realtime.cli import main
from polyp_live.core.config import PipelineConfig, PostprocessConfig, RoiConfig, SmoothingConfig
from polyp_live.core.decision import DecisionConfig
from polyp_live.realtime.queues import END, RESET, NewestQueue
from polyp_live.core.segmenter import Segmenter


def disc_frame(size: tuple[int, int], centre: tuple[int, int], radius: int, margin: int = 0) -> np.ndarray:
    """A dark textured frame with one bright disc (a "polyp" for the brightness model)."""
    w, h = size
    frame = np.random.default_rng(1).integers(30, 90, (h, w, 3), dtype=np.uint8)
    cv2.circle(frame, centre, radius, (230, 230, 230), -1)
    if margin:
        frame[:, :margin] = 0
        frame[:, w - margin:] = 0
    return frame


def test_process_returns_a_frame_size_mask_and_the_model_resolution_maps():
    seg = Segmenter(FakeBackend(), PipelineConfig(roi=RoiConfig(mode="full"), postprocess=PostprocessConfig(min_area=0)))
    frame = next(moving_disc_frames(1))
    result = seg.process(frame)
    assert result.prob.shape == (32, 32) and result.prob.dtype == np.float32
    assert result.detection.mask.shape == frame.shape[:2] and result.detection.mask.dtype == np.uint8
    assert set(np.unique(result.mask)) == {0, 255}
    assert result.present and result.roi == (0, 0, 160, 120)
    assert set(result.timings) == {"preprocess", "inference", "postprocess", "total"}
    # The frame is only read: the caller may draw on it afterwards, and nothing else changed it.
    assert np.array_equal(frame, next(moving_disc_frames(1)))


def test_presence_follows_the_decision_persistence():
    config = PipelineConfig(roi=RoiConfig(mode="full"), postprocess=PostprocessConfig(min_area=0),
                            decision=DecisionConfig(score_threshold=0.5, k=3, n=3))
    seg = Segmenter(FakeBackend(), config)
    frames = list(moving_disc_frames(4))
    results = [seg.process(f) for f in frames]
    # K=3 of N=3: the alert rises on the third frame with a candidate; nothing is drawn before.
    assert [r.present for r in results] == [False, False, True, True]
    assert results[0].mask.max() == 0 and results[1].mask.max() == 0 and results[2].mask.max() == 255
    assert results[0].decision.candidate


def test_decision_defaults_to_the_model_sidecar_and_a_reset_forgets_its_history():
    seg = Segmenter(FakeBackend(), PipelineConfig(roi=RoiConfig(mode="full"),
                                                  decision=DecisionConfig(score_threshold=0.5, k=2, n=2)))
    frame = next(moving_disc_frames(1))
    assert not seg.process(frame).present and seg.process(frame).present
    seg.reset()
    assert not seg.process(frame).present  # the history went with the reset
    assert Segmenter(FakeBackend()).decision_config == DecisionConfig.from_spec(FakeBackend().spec)


def test_a_frame_size_change_resets_the_field_of_view_and_the_temporal_state():
    seg = Segmenter(FakeBackend(), PipelineConfig(postprocess=PostprocessConfig(min_area=0),
                                                  smoothing=SmoothingConfig(mode="ema", strength=0.9)))
    small = disc_frame((320, 180), (160, 90), 40, margin=40)
    large = disc_frame((1280, 720), (1000, 360), 150, margin=100)  # the polyp lies outside the small ROI
    first = seg.process(small)
    assert first.present and first.roi[2] <= 320
    second = seg.process(large)
    assert second.reset == "size"
    assert second.roi[0] >= 90 and second.roi[0] + second.roi[2] > 1000
    ys, xs = np.nonzero(second.mask)
    assert second.present and xs.min() > 800  # the disc on the right, seen with a fresh ROI and no smoothing carried over


def test_an_image_folder_whose_frame_size_changes_gives_masks_for_every_image(tmp_path, brightness_model):
    folder = tmp_path / "mixed"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_small.png"), disc_frame((320, 180), (100, 90), 40))
    cv2.imwrite(str(folder / "b_large.png"), disc_frame((1280, 720), (1000, 360), 150))
    cv2.imwrite(str(folder / "c_small.png"), disc_frame((320, 180), (220, 90), 40))
    masks = tmp_path / "masks"
    assert main(["--headless", "--quiet", "--source", str(folder), "--model", str(brightness_model),
                 "--save-masks", str(masks)]) == 0
    names = sorted(p.name for p in masks.glob("*.png"))
    assert names == ["a_small.png", "b_large.png", "c_small.png"]  # named after the images
    for name, size in (("a_small.png", (180, 320)), ("b_large.png", (720, 1280)), ("c_small.png", (180, 320))):
        mask = cv2.imread(str(masks / name), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == size and (mask > 0).sum() > 1000, name


def test_end_and_reset_survive_a_full_newest_frame_queue():
    dropped = []
    q = NewestQueue(1, dropped.append)
    q.put("f1")
    q.put(RESET)
    for name in ("f2", "f3", "f4"):
        q.put(name)
    q.put(END)
    q.put("f5")  # a frame after END replaces f4, never the marker
    got = []
    while True:
        try:
            got.append(q.get_nowait())
        except queue.Empty:
            break
    assert got == [RESET, END, "f5"]
    assert dropped == ["f1", "f2", "f3", "f4"]


def test_a_newest_queue_with_room_for_several_frames_drops_the_oldest_first():
    dropped = []
    q = NewestQueue(3, dropped.append)
    for item in ("a", RESET, "b", "c", "d", END):
        q.put(item)
    assert [q.get_nowait() for _ in range(len(q))] == [RESET, "b", "c", "d", END]
    assert dropped == ["a"]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)


class ScriptedBackend(Backend):
    """Returns the given probability maps in turn, whatever the frame."""

    name = "scripted"

    def __init__(self, maps):
        self.spec, self.maps = TEST_SPEC, list(maps)

    def _run(self, batch):
        return self.maps.pop(0)


def test_smoothing_shapes_outlines_but_the_frame_own_map_decides_presence():
    def blob(peak: float) -> np.ndarray:
        prob = np.full((32, 32), 0.01, np.float32)
        prob[8:20, 8:20] = 0.7
        prob[12:16, 12:16] = peak
        return prob

    # A polyp the model sees at 0.995 right after frames where it was unsure (0.9): averaging with
    # that past would pull the peak under the 0.992 threshold; then the polyp fades to 0.7.
    maps = [blob(0.9), blob(0.9), blob(0.995), blob(0.995), blob(0.7)]
    config = PipelineConfig(roi=RoiConfig(mode="full"), postprocess=PostprocessConfig(min_area=0),
                            smoothing=SmoothingConfig(mode="ema", strength=0.6),
                            decision=DecisionConfig(score_threshold=0.992, min_area_fraction=0.01))
    seg = Segmenter(ScriptedBackend(maps), config)
    frame = np.full((64, 64, 3), 60, np.uint8)
    results = [seg.process(frame) for _ in maps]
    assert [r.present for r in results] == [False, False, True, True, False]
    assert results[2].prob.max() < 0.992 < results[2].raw_prob.max()  # smoothed, the peak would not pass
    # What is drawn is the smoothed outline, and nothing once this frame's map no longer passes,
    # even where the smoothed memory still holds the region.
    assert results[2].mask.any() and not results[4].mask.any() and results[4].prob.max() > 0.75


def test_a_region_the_decision_reports_is_never_erased_before_drawing(brightness_model):
    """On a 256x256 frame the decision's smallest region (0.2 % of the view, 131 pixels) is under the
    default --min-area of 300 frame pixels: the alert must come with its outline."""
    import cv2
    from polyp_live.engines.registry import load_backend
    from polyp_live.core.config import PipelineConfig, RoiConfig
    from polyp_live.core.decision import DecisionConfig
    from polyp_live.core.segmenter import Segmenter
    frame = np.full((256, 256, 3), 40, np.uint8)
    cv2.circle(frame, (128, 128), 9, (250, 250, 250), -1)  # about 250 pixels: above 0.2 %, below 300
    seg = Segmenter(load_backend(str(brightness_model)),
                    PipelineConfig(roi=RoiConfig(mode="full"), decision=DecisionConfig(0.6, 0.002, 1, 1)))
    result = seg.process(frame)
    assert result.present and (result.mask > 0).sum() > 150
