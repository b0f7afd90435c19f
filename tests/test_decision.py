"""The frame-level presence decision: region score, area, persistence K of N, reset, sidecar defaults."""

from __future__ import annotations

import numpy as np
import pytest

from polyp_live.core.spec import ModelSpec
from polyp_live.core.decision import Decision, DecisionConfig, PresenceDecision, candidate_score


def frame(peak: float | None, size: int = 64, box: tuple[int, int, int, int] = (10, 10, 30, 30)):
    """A probability map with one square region whose peak is ``peak`` (None: nothing), and its mask."""
    prob = np.full((size, size), 0.05, np.float32)
    if peak is not None:
        x0, y0, x1, y1 = box
        prob[y0:y1, x0:x1] = 0.55
        prob[(y0 + y1) // 2, (x0 + x1) // 2] = peak
    return prob, prob >= 0.5


def run(decision: PresenceDecision, peaks: list[float | None]) -> list[Decision]:
    return [decision(*frame(p)) for p in peaks]


def test_a_one_frame_flash_never_raises_the_alert():
    decision = PresenceDecision(DecisionConfig(score_threshold=0.8, k=2, n=3))
    out = run(decision, [None, 0.95, None, None, 0.95, None, None])
    assert [d.candidate for d in out] == [False, True, False, False, True, False, False]
    assert not any(d.present for d in out)
    assert not any(d.mask.any() for d in out)


def test_the_alert_rises_on_the_kth_frame_and_draws_only_then():
    decision = PresenceDecision(DecisionConfig(score_threshold=0.8, k=2, n=3))
    out = run(decision, [0.9, 0.9, 0.9, None, 0.9])
    assert [d.present for d in out] == [False, True, True, False, True]
    # While present, the drawn mask is exactly the passing region; otherwise nothing.
    _, region = frame(0.9)
    assert np.array_equal(out[1].mask, region) and not out[0].mask.any() and not out[3].mask.any()


def test_a_weak_region_is_not_a_candidate_and_small_regions_do_not_count():
    decision = PresenceDecision(DecisionConfig(score_threshold=0.8, min_area_fraction=0.05, k=1, n=1))
    assert not decision(*frame(0.7)).present  # below the score threshold
    small = decision(*frame(0.95, box=(10, 10, 20, 20)))  # 100 px = 2.4 % of 64x64
    assert not small.present and small.score == pytest.approx(0.95)
    assert decision(*frame(0.95)).present  # 400 px = 9.8 %


def test_only_passing_regions_are_drawn():
    prob = np.full((64, 64), 0.05, np.float32)
    prob[5:15, 5:15] = 0.9    # passes
    prob[40:50, 40:50] = 0.6  # a region of the hysteresis mask, but weak
    out = PresenceDecision(DecisionConfig(score_threshold=0.8))(prob, prob >= 0.5)
    assert out.present and out.mask[10, 10] and not out.mask[45, 45]
    assert out.region_scores == [pytest.approx(0.9)]


def test_reset_forgets_the_history():
    decision = PresenceDecision(DecisionConfig(score_threshold=0.8, k=2, n=2))
    run(decision, [0.9])
    decision.reset()
    assert not decision(*frame(0.9)).present  # the frame before the reset does not count
    assert decision(*frame(0.9)).present


def test_operating_point_comes_from_the_sidecar_and_options_override_it():
    spec = ModelSpec(64, 64, threshold=0.6, info={"decision": {"score_threshold": 0.85, "k": 2, "n": 4,
                                                               "min_area_fraction": 0.002}})
    assert DecisionConfig.from_spec(spec) == DecisionConfig(0.85, 0.002, 2, 4)
    assert DecisionConfig.from_spec(spec, k=3, score_threshold=None) == DecisionConfig(0.85, 0.002, 3, 4)
    # A model exported before the decision existed: single frame at its own threshold.
    assert DecisionConfig.from_spec(ModelSpec(64, 64, threshold=0.6)) == DecisionConfig(0.6, 0.0, 1, 1)


@pytest.mark.parametrize("bad", [dict(k=3, n=2), dict(k=0, n=1), dict(score_threshold=1.5),
                                 dict(min_area_fraction=1.0)])
def test_invalid_operating_points_are_refused(bad):
    with pytest.raises(ValueError):
        DecisionConfig(**bad)


def test_candidate_score_is_the_best_large_enough_region():
    prob = np.zeros((64, 64), np.float32)
    prob[0:4, 0:4] = 0.99      # 16 px
    prob[20:40, 20:40] = 0.7   # 400 px
    assert candidate_score(prob, prob >= 0.5) == pytest.approx(0.99)
    assert candidate_score(prob, prob >= 0.5, min_area_fraction=0.01) == pytest.approx(0.7)
    assert candidate_score(prob, prob >= 0.99, min_area_fraction=0.01) == 0.0


def test_persistence_survives_a_scene_cut_and_a_size_change_but_not_a_reset():
    """A folder of stills is a cut on every frame: the alert must still rise on the second polyp frame."""
    from conftest import FakeBackend
    from polyp_live.core.config import PipelineConfig, RoiConfig, SmoothingConfig
    from polyp_live.core.segmenter import Segmenter

    seg = Segmenter(FakeBackend(), PipelineConfig(roi=RoiConfig(mode="full"), smoothing=SmoothingConfig(mode="none"),
                                                  decision=DecisionConfig(score_threshold=0.5, k=2, n=3)))
    bright_small = np.full((48, 64, 3), 230, np.uint8)   # FakeBackend: bright = polyp
    bright_large = np.full((90, 120, 3), 230, np.uint8)  # a new size, and a cut
    dark = np.full((48, 64, 3), 10, np.uint8)
    results = [seg.process(im) for im in (bright_small, dark, bright_large, bright_small)]
    assert [r.decision.candidate for r in results] == [True, False, True, True]
    assert [r.present for r in results] == [False, False, True, True]
    assert results[2].reset == "size"
    seg.reset()  # a signal loss or a new video forgets the history
    assert not seg.process(bright_small).present


def _polyp_frames(tmp_path, brightness_model, *options: str) -> tuple[int, int]:
    import json

    import cv2

    from polyp_live.realtime.cli import main
    folder = tmp_path / "frames"
    folder.mkdir(exist_ok=True)
    for i in range(6):  # all bright: the brightness model calls every frame a polyp (peak ~0.98)
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((64, 80, 3), 250, np.uint8))
    stats = tmp_path / "stats.json"
    assert main(["--headless", "--quiet", "--source", str(folder), "--model", str(brightness_model), "--roi", "full",
                 "--smoothing", "none", "--min-area", "0", "--stats-json", str(stats), *options]) == 0
    counters = json.loads(stats.read_text())["counters"]
    return counters["polyp_frames"], counters["frames_out"]


def test_persistence_option_delays_the_alert(tmp_path, brightness_model):
    assert _polyp_frames(tmp_path, brightness_model) == (6, 6)  # sidecar without a decision: single frame
    assert _polyp_frames(tmp_path, brightness_model, "--persistence", "3/4") == (4, 6)


def test_score_threshold_option_overrides_the_operating_point(tmp_path, brightness_model):
    assert _polyp_frames(tmp_path, brightness_model, "--score-threshold", "0.99") == (0, 6)


@pytest.mark.parametrize("bad", ["3/2", "0/1", "2", "a/b"])
def test_bad_persistence_is_an_invalid_option(bad, capsys):
    from polyp_live.realtime.cli import main
    with pytest.raises(SystemExit) as info:
        main(["--persistence", bad])
    assert info.value.code == 2
    assert "persistence" in capsys.readouterr().err
