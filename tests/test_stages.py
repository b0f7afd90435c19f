"""Unit behaviour of single stages on hand-made inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from polyp_live.core.config import RoiConfig
from polyp_live.core.postprocess import clean_mask, to_frame
from polyp_live.realtime.recorder import exact_fps
from polyp_live.core.roi import RoiTracker, detect_fov, parse_roi
from polyp_live.core.smoothing import Hysteresis, SceneCutDetector, TemporalSmoother, binary_entropy


def px(value: float) -> np.ndarray:
    return np.array([[value]], np.float32)


def test_ema_averages_over_frames():
    s = TemporalSmoother("ema", strength=0.5)
    outs = [float(s(px(v))[0, 0]) for v in (1.0, 0.0, 0.0, 1.0)]
    assert outs == pytest.approx([1.0, 0.5, 0.25, 0.625])


def test_no_smoothing_follows_each_frame():
    s = TemporalSmoother("none", strength=0.9)
    assert [float(s(px(v))[0, 0]) for v in (0.9, 0.1)] == pytest.approx([0.9, 0.1])


def test_confidence_smoothing_lets_confident_pixels_follow_and_holds_uncertain_ones():
    s = TemporalSmoother("confidence", strength=0.8)
    s(np.array([[0.9, 0.9]], np.float32))
    out = s(np.array([[0.0001, 0.5]], np.float32))
    # A confident new value (0.0001) replaces the past almost entirely ...
    assert out[0, 0] < 0.01
    # ... an uncertain one (0.5, entropy 1) mixes with the past by the full strength.
    assert out[0, 1] == pytest.approx(0.5 + (0.9 - 0.5) * 0.8, abs=1e-5)
    assert binary_entropy(np.array([0.5]))[0] == pytest.approx(1.0)


def test_smoother_reset_forgets_the_past():
    s = TemporalSmoother("ema", strength=0.9)
    s(px(1.0))
    s.reset()
    assert float(s(px(0.0))[0, 0]) == 0.0


def test_hysteresis_switches_on_high_and_off_low():
    h = Hysteresis(high=0.6, low=0.4)
    seq = [0.5, 0.65, 0.5, 0.45, 0.39, 0.5, 0.61]
    assert [bool(h(px(v))[0, 0]) for v in seq] == [False, True, True, True, False, False, True]


def test_hysteresis_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match="--threshold-low"):
        Hysteresis(0.4, 0.6)


def test_scene_cut_fires_on_a_new_scene_only():
    d = SceneCutDetector(threshold=40)
    dark = np.full((90, 120, 3), 40, np.uint8)
    assert d(dark) is False
    assert d(dark + 5) is False
    assert d(np.full((90, 120, 3), 200, np.uint8)) is True


def test_fov_ignores_black_margins_and_overlay_text():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[40:440, 120:520] = 120
    cv2.putText(frame, "PATIENT 0042", (5, 470), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    x, y, w, h = detect_fov(frame)
    assert abs(x - 120) <= 4 and abs(y - 40) <= 4 and abs(w - 400) <= 8 and abs(h - 400) <= 8


def test_roi_parsing_and_fixed_roi_outside_the_frame():
    assert parse_roi("10,20,30,40") == RoiConfig(mode="fixed", fixed=(10, 20, 30, 40))
    with pytest.raises(ValueError, match="outside the 64x48 frame"):
        RoiTracker(parse_roi("0,0,100,10"))(np.zeros((48, 64, 3), np.uint8))


def test_small_components_are_removed_and_holes_filled():
    mask = np.zeros((40, 40), bool)
    mask[5:25, 5:25] = True
    mask[12:16, 12:16] = False   # a hole
    mask[35:37, 35:37] = True    # a speck
    out = clean_mask(mask, min_area=10)
    assert out[13, 13] and not out[36, 36] and out[5, 5]


def test_masks_map_back_to_full_frame_coordinates():
    small = np.zeros((32, 32), bool)
    small[8:24, 8:24] = True
    det = to_frame(small, roi=(100, 50, 64, 64), frame_shape=(200, 300, 3), min_area=0)
    ys, xs = np.nonzero(det.mask)
    assert det.present and len(det.boxes) == 1
    assert 114 <= xs.min() <= 118 and 145 <= xs.max() <= 149 and 64 <= ys.min() <= 68
    bx, by, bw, bh = det.boxes[0]
    assert abs(bx - 116) <= 2 and abs(by - 66) <= 2


def test_no_polyp_means_an_empty_detection():
    det = to_frame(np.zeros((32, 32), bool), (0, 0, 64, 64), (64, 64, 3), min_area=0)
    assert not det.present and det.mask.max() == 0


def test_ntsc_rates_are_kept_exact():
    assert exact_fps(29.97) == pytest.approx(30000 / 1001)
    assert exact_fps(59.94) == pytest.approx(60000 / 1001)
    assert exact_fps(25.0) == 25.0


def test_hud_goes_into_the_side_margin_and_leaves_the_field_of_view_untouched():
    from polyp_live.realtime.render import HudInfo, draw_hud, hud_panel

    roi = (168, 8, 944, 704)  # the demo clip's field of view: black margins left and right
    x, y, w, outside = hud_panel((1280, 720), roi)
    assert outside and x >= 168 + 944 and x + w <= 1280
    frame = np.full((720, 1280, 3), 90, np.uint8)
    hud = HudInfo(29.9, 6.0, 80.0, 20.0, "polyp-unetpp-lite0-256", "int8", "onnxruntime:CPU")
    draw_hud(frame, hud, present=True, roi=roi)
    rx, ry, rw, rh = roi
    assert np.all(frame[ry:ry + rh, rx:rx + rw] == 90)   # nothing drawn over the image
    assert np.any(frame[:, rx + rw:] != 90)             # the panel is there
    # The demo's third polyp-free scene sits 16 px further right (left margin 184, right 168): the
    # panel stays in the right margin, off the clip's caption in the top-left corner.
    assert hud_panel((1280, 720), (184, 8, 928, 704))[0] >= 184 + 928
    assert hud_panel((1280, 720), (300, 8, 900, 704))[:2] == (8, 8)   # only the left margin is wide enough
    # Without margins the panel sits in the top-left corner, over the image.
    assert hud_panel((1280, 720), (0, 0, 1280, 720))[3] is False
    assert hud_panel((1280, 720), None)[:2] == hud_panel((1280, 720), (0, 0, 1280, 720))[:2]
