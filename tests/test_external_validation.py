"""External validation: curves with a known area, sequences with a known first-shown frame, the
operating point chosen on two polyp-free sets, and `polyp-live evaluate --external` end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from polyp_live.engines.registry import load_backend
from polyp_live.core.config import PipelineConfig
from polyp_live.core.decision import DecisionConfig
from polyp_live.tools import evaluate
from polyp_live.core.datasets import DatasetError
from polyp_live.training.external_validation import (LabelledSet, MaskedSet, curve_area, detection_at_false_alarms,
                                                      find_external_sets, roc_points, run_masked_sequences,
                                                      score_labelled, summarise_runs)
from polyp_live.core.decision import score_text
from polyp_live.training.frame_evaluation import SCORE_SWEEP, FrameScores, choose_operating_point
from polyp_live.training.video_evaluation import Variant
from test_evaluate import frame, make_sets


def test_curve_area_is_the_share_of_polyp_free_pairs_ranked_below_ties_half():
    pos, neg = np.array([0.9, 0.8, 0.3]), np.array([0.1, 0.8, 0.2])
    # 0.9 beats all three (3), 0.8 beats two and ties one (2.5), 0.3 beats two (2): 7.5 of 9 pairs.
    assert curve_area(pos, neg) == pytest.approx(7.5 / 9)
    # The same as the trapezoidal area of the full sweep.
    points = [{"false_alarm_rate": 0.0, "detection_rate": 0.0}] + roc_points(pos, neg)
    fa = [p["false_alarm_rate"] for p in points]
    det = [p["detection_rate"] for p in points]
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 1.x has only the old name
    assert trapezoid(det, fa) == pytest.approx(7.5 / 9)
    assert curve_area(np.array([0.9, 0.95]), np.array([0.1, 0.2])) == 1.0
    assert curve_area(np.array([0.0, 0.0]), np.array([0.0])) == 0.5  # nothing found anywhere: chance


def test_detection_at_a_false_alarm_rate_takes_the_lowest_threshold_within_it():
    pos = np.array([0.99, 0.95, 0.9, 0.6])
    neg = np.array([0.97] + [0.1] * 49)  # one polyp-free frame in 50 (2 %) scores 0.97
    at = detection_at_false_alarms(pos, neg, 0.02)
    assert at["false_alarm_rate"] == pytest.approx(0.02) and at["detection_rate"] == 1.0
    at = detection_at_false_alarms(pos, neg, 0.0)
    assert at["score_threshold"] == 0.99 and at["detection_rate"] == 0.25


def test_the_operating_point_keeps_both_polyp_free_sets_within_their_targets():
    ours = FrameScores(["p"] * 4, np.array([0.95, 0.9, 0.85, 0.8]), np.ones((4, len(SCORE_SWEEP)), bool),
                       ["n"] * 10, np.full(10, 0.1), 0.5, 0.0)
    other = np.array([0.86] + [0.1] * 9)  # another hospital: one frame in ten scores 0.86
    alone = choose_operating_point(ours, 0.0, "val")
    assert alone.score_threshold == SCORE_SWEEP[0] and alone.chosen_on == "val"
    both = choose_operating_point(ours, 0.0, "val", {"c1": other}, 0.05)
    # The lowest swept threshold above 0.86: the other hospital's frame no longer alarms.
    assert both.score_threshold == min(t for t in SCORE_SWEEP if t > 0.86)
    assert both.chosen_on == "val + c1" and both.detection_rate == 0.5
    # A looser target on the other set lets the lower threshold through again.
    assert choose_operating_point(ours, 0.0, "val", {"c1": other}, 0.1).score_threshold == SCORE_SWEEP[0]


def test_the_operating_point_can_lie_above_0999_where_saturated_peaks_crowd():
    """A fine-tune whose polyp-free peaks reach 0.9993 still gets a point that keeps its polyps."""
    ours = FrameScores(["p"] * 4, np.array([0.99999, 0.99996, 0.9999, 0.5]), np.ones((4, len(SCORE_SWEEP)), bool),
                       ["n"] * 10, np.array([0.9993] + [0.1] * 9), 0.5, 0.0)
    other = np.array([0.99985] + [0.2] * 9)
    point = choose_operating_point(ours, 0.0, "val", {"c1": other}, 0.0)
    assert point.score_threshold == 0.9999 and point.detection_rate == 0.75 and point.false_alarm_rate == 0.0
    assert [score_text(t) for t in (0.5, 0.996, 0.9995, 0.99998)] == ["0.500", "0.996", "0.9995", "0.99998"]


def write_labelled(root, polyp_levels, free_levels):
    """polyp/ frames with a disc of each grey level; polyp-free/ frames (two sequences) likewise (None: no disc)."""
    rng = np.random.default_rng(7)
    (root / "polyp").mkdir(parents=True)
    for i, level in enumerate(polyp_levels):
        cv2.imwrite(str(root / "polyp" / f"{i:03d}.png"), frame(rng, (120, 90, 32, level))[0])
    for i, level in enumerate(free_levels):
        seq = root / "polyp-free" / f"seq{i % 2 + 1}"
        seq.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(seq / f"{i:03d}.png"), frame(rng, (120, 90, 30, level) if level else None)[0])
    return root


def write_masked(root, levels_per_sequence):
    """images/, masks/ and sequences.csv: each sequence a disc whose brightness follows ``levels``."""
    rng = np.random.default_rng(8)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["stem,sequence"]
    n = 0
    for s, levels in enumerate(levels_per_sequence, start=1):
        for level in levels:
            image, mask = frame(rng, (110 + 2 * n % 20, 90, 34, level))
            cv2.imwrite(str(root / "images" / f"{n:03d}.png"), image)
            cv2.imwrite(str(root / "masks" / f"{n:03d}.png"), mask)
            rows.append(f"{n:03d},{s}")
            n += 1
    (root / "sequences.csv").write_text("\n".join(rows) + "\n")
    return root


def test_labelled_set_scores_give_the_known_curve(tmp_path, brightness_model):
    # Bright discs (245) on every polyp frame; one polyp-free frame of four carries an equally bright
    # patch and the rest none: 3 of 4 polyp-free frames rank below every polyp frame, one ties them.
    lset = find_external_sets(write_labelled(tmp_path / "c9", [245, 245, 245], [None, None, 245, None]))[0]
    assert isinstance(lset, LabelledSet) and sorted(lset.polyp_free) == ["seq1", "seq2"]
    scores = score_labelled(load_backend(str(brightness_model)), lset, 0.5, 0.002)
    assert scores.polyp_scores.min() > 0.9 and (scores.free_scores == 0).sum() == 3
    assert curve_area(scores.polyp_scores, scores.free_scores) == pytest.approx(0.75 + 0.25 * 0.5, abs=0.02)


def test_a_masked_sequence_reports_when_the_polyp_is_first_shown_and_how_often_after(tmp_path, brightness_model):
    # Sequence 1: the disc is too dim to pass for two frames, then bright for four. Sequence 2: never bright.
    mset = find_external_sets(write_masked(tmp_path / "db", [[120, 120, 245, 245, 245, 245], [120, 120, 120]]))[0]
    assert isinstance(mset, MaskedSet) and [len(v) for v in mset.sequences.values()] == [6, 3]
    backend = load_backend(str(brightness_model))
    config = PipelineConfig(decision=DecisionConfig(0.8, 0.002, 1, 1))
    runs = run_masked_sequences(backend, mset, config)
    assert runs[0].first_shown == 2 and runs[0].shown_after_first == 1.0
    assert runs[1].first_shown is None and runs[1].shown_after_first == 0.0
    summary = summarise_runs(runs)
    assert summary["sequences_never_shown"] == 1 and summary["sequences_shown_within_3_frames"] == 1
    assert summary["shown_rate"] == pytest.approx(4 / 9)
    # Persistence 2/2 costs the first bright frame of the sequence.
    late = run_masked_sequences(backend, mset, PipelineConfig(decision=DecisionConfig(0.8, 0.002, 2, 2)))
    assert late[0].first_shown == 3


def test_evaluate_external_writes_the_figures_and_chooses_on_both_polyp_free_sets(tmp_path, brightness_model):
    polyps, free = make_sets(tmp_path)
    external = tmp_path / "external"
    write_masked(external / "db", [[245, 245, 245], [245, 245]])
    # The other hospital's polyp-free frames include a dim patch (peak ~0.88) as our set does, and a
    # brighter one (~0.93) ours lacks: with a 0 % target there the threshold must rise above it.
    write_labelled(external / "c9", [250, 250, 250, 250], [None, 190, 215, None])
    out = tmp_path / "eval"
    rc = evaluate.main(["--model", str(brightness_model), "--data", str(polyps), "--negatives", str(free),
                        "--split", "val", "--choose-operating-point", "--false-alarm-target", "0.3",
                        "--external", str(external), "--external-false-alarm-target", "0", "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "external_summary.json").read_text())["sets"]
    frames = json.loads((out / "val_frames.json").read_text())
    point = frames["chosen_operating_point"]
    assert point["chosen_on"] == "val + c9"
    assert summary["c9"]["at_operating_point"]["false_alarms"] == 0
    assert summary["c9"]["curve_area"] == 1.0
    live = summary["db"]["live"]
    assert set(live) == {"single frame", "confidence"}
    assert live["single frame"]["sequences_shown_within_3_frames"] == 2 and live["single frame"]["dice"] > 0.8
    assert summary["db"]["still"]["shown_rate"] == 1.0
    png = cv2.imread(str(out / "external_c9_detection_vs_false_alarms.png"))
    assert png is not None and png.shape[0] > 100


def test_a_folder_without_external_sets_is_named(tmp_path, capsys, brightness_model):
    with pytest.raises(DatasetError, match="holds no external set"):
        find_external_sets(tmp_path)
    (tmp_path / "db" / "images").mkdir(parents=True)
    (tmp_path / "db" / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "db" / "images" / "001.png"), np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DatasetError, match="001.png has no mask"):
        find_external_sets(tmp_path)
    polyps, free = make_sets(tmp_path / "sets")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--model", str(brightness_model), "--data", str(polyps), "--negatives", str(free),
                       "--split", "val", "--external", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "--external" in err and "is not a folder" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_variant_names_come_through_the_live_runs(tmp_path, brightness_model):
    # A labelled set's polyp-free sequences are played through the live path for each variant.
    from polyp_live.training.external_validation import evaluate_external
    lset = find_external_sets(write_labelled(tmp_path / "c9", [245], [None, None, 245, None]))
    summary, scores = evaluate_external(load_backend(str(brightness_model)), lset, 0.5,
                                        DecisionConfig(0.8, 0.002, 1, 1),
                                        [Variant("single frame", "none", (1, 1)), Variant("k2", "none", (2, 2))])
    live = summary["c9"]["live_polyp_free"]
    # One bright frame in the polyp-free sequences: an alarm on one frame at 1/1, none at 2/2.
    assert live["single frame"]["alarm_frames"] == 1 and live["k2"]["alarm_frames"] == 0
    assert live["k2"]["persistence"] == "2/2" and list(scores) == ["c9"]


def test_without_matplotlib_the_figures_are_written_and_the_pictures_skipped(tmp_path, brightness_model, monkeypatch,
                                                                              capsys):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    polyps, free = make_sets(tmp_path)
    external = tmp_path / "external"
    write_labelled(external / "c9", [250, 250], [None, 190])
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(brightness_model), "--data", str(polyps), "--negatives", str(free),
                          "--split", "val", "--external", str(external), "--out", str(out)]) == 0
    assert (out / "val_frames.json").is_file() and (out / "external_summary.json").is_file()
    assert not list(out.glob("*.png")) or all("best_worst" in p.name for p in out.glob("*.png"))
    assert "matplotlib is missing" in capsys.readouterr().out
