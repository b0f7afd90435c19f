"""Motion shift: a late mask moved by the camera's global motion lands on the polyp again."""

from __future__ import annotations

import time

import cv2
import numpy as np

from conftest import FakeBackend
from polyp_live.core.config import PipelineConfig, PostprocessConfig, RenderConfig, RoiConfig
from polyp_live.realtime.motion import Thumb, estimate_shift, shift_detection
from polyp_live.realtime.output import Annotation, ModelInfo, OutputStage
from polyp_live.core.segmenter import Segmenter
from polyp_live.realtime.sources import Frame
from polyp_live.realtime.stats import PipelineStats
from polyp_live.realtime.view import LiveView

SCENE = cv2.GaussianBlur(np.random.default_rng(3).integers(20, 110, (700, 900, 3), dtype=np.uint8), (0, 0), 2)
cv2.circle(SCENE, (450, 350), 60, (235, 235, 235), -1)


def view_of(dx: int, dy: int) -> np.ndarray:
    """The 640x480 camera view of the scene after the camera moved by (dx, dy): content moves by (-dx, -dy)."""
    return SCENE[110 + dy:590 + dy, 130 + dx:770 + dx].copy()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def test_phase_correlation_measures_the_camera_motion():
    earlier, later = Thumb(view_of(0, 0), (0, 0, 640, 480)), Thumb(view_of(24, -12), (0, 0, 640, 480))
    dx, dy = estimate_shift(earlier, later)
    assert abs(dx + 24) <= 2 and abs(dy - 12) <= 2
    assert max(map(abs, estimate_shift(earlier, Thumb(view_of(0, 0), (0, 0, 640, 480))))) < 0.5


def segment(image: np.ndarray):
    seg = Segmenter(FakeBackend(), PipelineConfig(roi=RoiConfig(mode="full"), postprocess=PostprocessConfig(min_area=0)))
    return seg.process(image)


def test_a_shifted_late_mask_matches_the_later_frame_better():
    old_image, new_image = view_of(0, 0), view_of(40, 20)
    old, truth = segment(old_image), segment(new_image).mask
    dx, dy = estimate_shift(Thumb(old_image, old.roi), Thumb(new_image, old.roi))
    moved = shift_detection(old.detection, dx, dy)
    assert dice(old.mask, truth) < 0.7 < 0.9 < dice(moved.mask, truth)
    assert moved.present and len(moved.boxes) == len(old.detection.boxes) == 1
    assert abs(moved.boxes[0][0] - (old.detection.boxes[0][0] - 40)) <= 3


def test_the_output_stage_draws_the_moved_mask_only_when_asked(tmp_path):
    old_image, new_image = view_of(0, 0), view_of(40, 20)
    truth = segment(new_image).mask > 0
    truth[:200] = False  # below the HUD panel
    now = time.perf_counter()
    drawn = {}
    for motion in (False, True):
        config = PipelineConfig(render=RenderConfig(style="fill", alpha=1.0, color=(0, 255, 0), motion_shift=motion),
                                roi=RoiConfig(mode="full"), display=True)
        stage = OutputStage(config, PipelineStats(), LiveView(live_source=True), ModelInfo("m", "fp32", "x"), 30.0, live=True)
        annotation = Annotation.of(Frame(0, old_image.copy(), now - 0.05), segment(old_image), motion=motion)
        stage.emit(Frame(1, new_image.copy(), now), annotation)
        green = np.all(stage.view.newest()[1] == (0, 255, 0), axis=-1)
        drawn[motion] = float(green[truth].mean())
    assert drawn[False] < 0.8 and drawn[True] > 0.9


def test_motion_shift_eval_skips_lagged_masks_of_another_frame_size(tmp_path, brightness_model):
    """Raw stills of mixed sizes (as in Kvasir-SEG) are scored, not a crash on mismatched shapes."""
    import json

    from polyp_live.tools import motion_shift_eval
    frames, masks = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir(), masks.mkdir()
    for i, (w, h) in enumerate([(640, 480), (560, 420), (560, 420)]):
        image = cv2.GaussianBlur(np.random.default_rng(i).integers(40, 110, (h, w, 3), dtype=np.uint8), (0, 0), 2)
        truth = np.zeros((h, w), np.uint8)
        cv2.circle(truth, (w // 2, h // 2), 70, 255, -1)
        image[truth > 0] = 235
        cv2.imwrite(str(frames / f"{i:03d}.png"), image)
        cv2.imwrite(str(masks / f"{i:03d}.png"), truth)
    out = tmp_path / "shift.json"
    rc = motion_shift_eval.main(["--source", str(frames), "--masks", str(masks), "--model", str(brightness_model),
                                 "--lags", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0 and report["frames"] == 3
    assert report["results"]["exact"]["frames"] == 3 and report["results"]["exact"]["mean_dice"] > 0.9
    # Frame 1 follows a 640x480 frame (not scored at lag 1); frame 2 follows one of its own size.
    assert report["results"]["lag1"]["frames"] == 1 and report["skipped_size_change"] == {"lag1": 1}
    assert report["results"]["lag1"]["mean_dice"] > 0.9
