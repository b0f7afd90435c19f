"""tools/evaluate_video.py: the live path's segmentation scored over a folder of frames with true masks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from polyp_live.tools import evaluate_video


def write_sequence(folder, polyp_pattern):
    """Frames (a textured background, a bright disc on 'polyp' frames) and their true masks."""
    frames, masks = folder / "frames", folder / "masks"
    frames.mkdir(parents=True), masks.mkdir(parents=True)
    texture = np.random.default_rng(0).integers(30, 90, (120, 160, 3), dtype=np.uint8)
    for i, polyp in enumerate(polyp_pattern):
        frame, truth = texture.copy(), np.zeros((120, 160), np.uint8)
        if polyp:
            cv2.circle(frame, (60 + 3 * i, 60), 24, (230, 230, 230), -1)
            cv2.circle(truth, (60 + 3 * i, 60), 24, 255, -1)
        cv2.imwrite(str(frames / f"{i:04d}.png"), frame)
        cv2.imwrite(str(masks / f"{i:04d}.png"), truth)
    return frames, masks


def test_video_evaluation_scores_each_variant_against_the_truth(tmp_path, brightness_model):
    pattern = [True] * 4 + [False] * 4 + [True] * 4
    frames, masks = write_sequence(tmp_path, pattern)
    rc = evaluate_video.main(["--source", str(frames), "--masks", str(masks), "--model", str(brightness_model),
                              "--modes", "none,confidence", "--persistence", "2/3", "--roi", "full",
                              "--out", str(tmp_path / "out")])
    assert rc == 0
    rows = {r["variant"]: r for r in json.loads((tmp_path / "out" / "video_eval.json").read_text())["results"]}
    assert list(rows) == ["single frame", "none", "confidence", "confidence 2/3"]
    single = rows["single frame"]
    assert (single["frames"], single["polyp_frames"], single["polyp_free_frames"]) == (12, 8, 4)
    assert single["dice"] > 0.9 and single["detection_rate"] == 1.0 and single["false_alarm_rate"] == 0.0
    # The alert goes up, down, up: 2 toggles in 12 frames, as often as the truth changes.
    assert single["toggles_per_100_frames"] == 100 * 2 / 12
    # Persistence 2/3 hides the first frame of each of the two appearances.
    assert rows["confidence 2/3"]["detection_rate"] == 6 / 8 and rows["confidence 2/3"]["persistence"] == "2/3"


def test_video_evaluation_of_a_missing_source_is_one_line_and_exit_1(tmp_path, brightness_model, capsys):
    rc = evaluate_video.main(["--source", str(tmp_path / "nothing"), "--model", str(brightness_model),
                              "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("polyp-live evaluate-video: error:") and "nothing" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_damaged_frame_is_skipped_and_said_so_not_scored_silently(tmp_path, brightness_model, capsys):
    frames, masks = write_sequence(tmp_path, [True] * 6)
    (frames / "0003.png").write_bytes(b"not an image")
    assert evaluate_video.main(["--source", str(frames), "--masks", str(masks), "--model", str(brightness_model),
                                "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "video_eval.json").read_text())["results"]
    assert all(r["frames"] == 5 and r["damaged_frames_skipped"] == 1 and r["polyp_frames"] == 5 for r in rows)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 damaged frame(s) of the source skipped" in err


def write_stills(root, count=3):
    """A tiny polyp set (images/, masks/, splits/test.txt) of discs on texture."""
    (root / "images").mkdir(parents=True), (root / "masks").mkdir(), (root / "splits").mkdir()
    for i in range(count):
        image = np.full((100, 120, 3), 60, np.uint8)
        mask = np.zeros((100, 120), np.uint8)
        cv2.circle(image, (60, 50), 20, (220, 220, 220), -1), cv2.circle(mask, (60, 50), 20, 255, -1)
        cv2.imwrite(str(root / "images" / f"s{i}.jpg"), image), cv2.imwrite(str(root / "masks" / f"s{i}.png"), mask)
    (root / "splits" / "test.txt").write_text("".join(f"s{i}\n" for i in range(count)))
    return root


def test_make_sequence_writes_whole_sequences_and_leaves_nothing_when_a_still_is_damaged(tmp_path, capsys):
    from polyp_live.tools import make_sequence
    data = write_stills(tmp_path / "data")
    args = ["--data", str(data), "--negatives", "", "--split", "test", "--frames-per-image", "4", "--size", "96x80"]
    assert make_sequence.main([*args, "--out", str(tmp_path / "seq")]) == 0
    meta = json.loads((tmp_path / "seq" / "sequence.json").read_text())
    assert meta["frames"] == 12 and len(list((tmp_path / "seq" / "frames").glob("*.jpg"))) == 12
    assert len(list((tmp_path / "seq" / "masks").glob("*.png"))) == 12
    assert make_sequence.main([*args, "--out", str(tmp_path / "seq")]) == 2  # never overwritten
    (data / "images" / "s2.jpg").write_bytes(b"not an image")
    capsys.readouterr()
    assert make_sequence.main([*args, "--out", str(tmp_path / "broken")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s2" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "seq"]  # no half sequence, no partial


def test_appearances_are_scored_against_a_sequence_with_known_truth(tmp_path, brightness_model):
    # Two true polyps (frames 0-19 and 40-59) and, in between, one frame with a bright patch the truth
    # does not mark: a false appearance. At 30 FPS the sequence lasts 70 frames = 2.33 s.
    frames, masks = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir(), masks.mkdir()
    texture = np.random.default_rng(0).integers(30, 90, (120, 160, 3), dtype=np.uint8)
    for i in range(70):
        frame, truth = texture.copy(), np.zeros((120, 160), np.uint8)
        if i < 20 or 40 <= i < 60:
            cv2.circle(frame, (60 + (i % 20), 60), 24, (230, 230, 230), -1)
            cv2.circle(truth, (60 + (i % 20), 60), 24, 255, -1)
        if i == 25:
            cv2.rectangle(frame, (110, 80), (150, 115), (235, 235, 235), -1)
        cv2.imwrite(str(frames / f"{i:04d}.png"), frame)
        cv2.imwrite(str(masks / f"{i:04d}.png"), truth)
    rc = evaluate_video.main(["--source", str(frames), "--masks", str(masks), "--model", str(brightness_model),
                              "--modes", "none", "--persistence", "3/3", "--roi", "full", "--out", str(tmp_path / "o")])
    assert rc == 0
    rows = {r["variant"]: r for r in json.loads((tmp_path / "o" / "video_eval.json").read_text())["results"]}
    single, late = rows["single frame"], rows["confidence 3/3"]
    assert (single["true_polyps"], single["true_polyps_found"], single["appearances"]) == (2, 2, 3)
    assert single["false_appearances"] == 1
    assert single["false_appearances_per_minute"] == pytest.approx(1 / (70 / 30 / 60))
    assert single["median_time_to_first_detection_s"] == 0.0
    # Persistence 3/3 shows each polyp two frames late and never the one-frame patch.
    assert (late["true_polyps_found"], late["false_appearances"]) == (2, 0)
    assert late["median_time_to_first_detection_s"] == pytest.approx(2 / 30)
