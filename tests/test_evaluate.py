"""tools/evaluate.py: segmentation and frame-level scores of a model through the live path's Segmenter."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np

from polyp_live.engines.registry import load_backend
from polyp_live.core.spec import ModelSpec
from polyp_live.core.config import PipelineConfig
from polyp_live.core.segmenter import Segmenter
from polyp_live.tools import evaluate
from polyp_live.core.metrics import image_metrics

MARGIN = 40  # black bars left and right: the live path crops them away (field of view)


def frame(rng, disc: tuple[int, int, int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """A 240x180 frame with black side bars and, optionally, a bright disc (x, y, radius, grey level)."""
    image = cv2.GaussianBlur(rng.integers(40, 100, (180, 240, 3), dtype=np.uint8), (0, 0), 1.5)
    image[:, :MARGIN] = image[:, -MARGIN:] = 0
    mask = np.zeros((180, 240), np.uint8)
    if disc:
        x, y, r, level = disc
        cv2.circle(image, (x, y), r, (level, level, level), -1)
        cv2.circle(mask, (x, y), r, 255, -1)
    return image, mask


def make_sets(root):
    rng = np.random.default_rng(4)
    polyps, free = root / "polyps", root / "free"
    for folder in (polyps / "images", polyps / "masks", polyps / "splits", free / "images", free / "splits"):
        folder.mkdir(parents=True)
    for i, disc in enumerate([(100, 80, 34, 245), (140, 100, 28, 245), (120, 70, 40, 245)]):
        image, mask = frame(rng, disc)
        cv2.imwrite(str(polyps / "images" / f"p{i}.png"), image)
        cv2.imwrite(str(polyps / "masks" / f"p{i}.png"), mask)
    # Three plain polyp-free frames and one with a dimmer bright patch: a weaker false alarm.
    for i, disc in enumerate([None, None, None, (120, 90, 30, 190)]):
        cv2.imwrite(str(free / "images" / f"n{i}.png"), frame(rng, disc)[0])
    (polyps / "splits" / "val.txt").write_text("p0\np1\np2\n")
    (free / "splits" / "val.txt").write_text("n0\nn1\nn2\nn3\n")
    return polyps, free


def test_evaluate_scores_what_the_live_path_draws_and_chooses_an_operating_point(tmp_path, brightness_model):
    polyps, free = make_sets(tmp_path)
    model_bytes = brightness_model.read_bytes()
    out = tmp_path / "eval"
    rc = evaluate.main(["--model", str(brightness_model), "--data", str(polyps), "--negatives", str(free),
                        "--split", "val", "--choose-operating-point", "--false-alarm-target", "0.1",
                        "--update-sidecar", "--out", str(out)])
    assert rc == 0
    frames = json.loads((out / "val_frames.json").read_text())
    at = frames["at_operating_point"]
    # The dim patch (peak ~0.88) is the only false alarm below the discs' peaks (~0.97): the lowest
    # threshold within 10 % false alarms lies between them and keeps every polyp.
    assert 0.88 <= frames["chosen_operating_point"]["score_threshold"] < 0.97
    assert (at["detected"], at["polyp_images"], at["false_alarms"], at["polyp_free_frames"]) == (3, 3, 0, 4)
    # The chosen point is stored in the sidecar; the model itself is not touched.
    stored = ModelSpec.load(brightness_model).info["decision"]
    assert stored["score_threshold"] == frames["chosen_operating_point"]["score_threshold"]
    assert stored["chosen_on"] == "val splits of polyps and free"  # folder names, not local paths
    assert brightness_model.read_bytes() == model_bytes
    # Each image's Dice is that of the mask polyp-live draws on it as a still (field of view cropped).
    with open(out / "val_per_image.csv") as fh:
        rows = {r["image"]: float(r["dice"]) for r in csv.DictReader(fh)}
    segmenter = Segmenter(load_backend(str(brightness_model)), PipelineConfig())
    for stem, dice in rows.items():
        image = cv2.imread(str(polyps / "images" / f"{stem}.png"))
        truth = cv2.imread(str(polyps / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 0
        segmenter.reset()
        live = segmenter.process(image).mask > 0
        live_dice = image_metrics(live, truth)["dice"]
        assert dice > 0.9 and abs(dice - live_dice) < 0.03


def test_evaluate_of_a_missing_split_file_is_one_line(tmp_path, brightness_model, capsys):
    polyps, free = make_sets(tmp_path)
    rc = evaluate.main(["--model", str(brightness_model), "--data", str(polyps), "--negatives", str(free),
                        "--split", "test", "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("polyp-live evaluate: error:") and "test" in err and err.count("\n") == 1
