"""polyp-live make-figures: the docs pictures from a model, a dataset and a run, each a PNG under 300 kB."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import write_video

pytest.importorskip("PIL", reason="make-figures writes PNGs through Pillow (the [train] extra)")

from polyp_live.tools import make_figures  # noqa: E402


def make_polyp_set(root: Path, count: int = 4, size: int = 64) -> Path:
    """Bright discs (the brightness model's 'polyps') on a dark texture, their masks, and test splits."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "splits").mkdir()
    for i in range(count):
        image = rng.integers(20, 60, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        cv2.circle(mask, (20 + 6 * i, 32), 14, 255, -1)
        image[mask > 0] = 235
        cv2.imwrite(str(root / "images" / f"p{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"p{i}.png"), mask)
    (root / "splits" / "test.txt").write_text("\n".join(f"p{i}" for i in range(count)) + "\n")
    return root


def make_free_set(root: Path, count: int = 2, size: int = 64) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "splits").mkdir()
    for i in range(count):
        cv2.imwrite(str(root / "images" / f"n{i}.png"), np.full((size, size, 3), 30 + i, np.uint8))
    (root / "splits" / "test.txt").write_text("\n".join(f"n{i}" for i in range(count)) + "\n")
    return root


def test_save_png_keeps_a_noisy_picture_under_the_limit_and_readable(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (900, 1600, 3), dtype=np.uint8)
    size = make_figures.save_png(noise, tmp_path / "noise.png", max_bytes=300_000)
    written = cv2.imread(str(tmp_path / "noise.png"))
    assert size == (tmp_path / "noise.png").stat().st_size <= 300_000
    assert written is not None and written.shape[1] <= 1600 and written.shape[1] / written.shape[0] == pytest.approx(16 / 9, rel=0.02)
    assert not list(tmp_path.glob(".*partial"))


def test_grid_outlines_the_model_and_the_truth_and_has_a_legend(tmp_path, brightness_model):
    data, free = make_polyp_set(tmp_path / "polyps"), make_free_set(tmp_path / "free")
    out = tmp_path / "examples.png"
    assert make_figures.main(["grid", "--model", str(brightness_model), "--data", str(data), "--negatives", str(free),
                              "--polyps", "4", "--free", "2", "--out", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image.shape == (2 * 224 + 52, 4 * 224, 3) and out.stat().st_size < 300_000
    tiles, legend = image[:448], image[448:]
    green = (tiles[:, :, 1] > 200) & (tiles[:, :, 0] < 80) & (tiles[:, :, 2] < 80)
    magenta = (tiles[:, :, 0] > 200) & (tiles[:, :, 1] < 80) & (tiles[:, :, 2] > 200)
    assert green[:224].sum() > 200 and magenta[:224].sum() > 50  # both outlines on the polyp row
    assert not magenta[224:].any()  # polyp-free frames have no true outline
    assert (legend[:, :, 1] > 200).any() and (legend[:, :, 0] > 200).any()


def test_curves_plot_a_run_log_and_a_missing_log_is_one_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("epoch,loss,val_dice,val_false_alarm,val_score,lr,seconds\n"
                                 "1,0.8,0.80,0.20,0.60,0.001,10\n2,0.7,0.85,0.10,0.75,0.0009,10\n"
                                 "3,0.65,0.86,0.12,0.74,0.0008,10\n")
    assert make_figures.main(["curves", "--log", str(run), "--out", str(tmp_path / "c.png")]) == 0
    assert cv2.imread(str(tmp_path / "c.png")).shape[1] == 900
    assert make_figures.main(["curves", "--log", str(tmp_path / "nothing"), "--out", str(tmp_path / "d.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training log" in err and not (tmp_path / "d.png").exists()


def test_overlay_frame_comes_from_the_live_segmenter(tmp_path, brightness_model):
    clip = write_video(tmp_path / "clip.mp4", 12, margin=20)
    out = tmp_path / "overlay.png"
    assert make_figures.main(["overlay", "--model", str(brightness_model), "--source", str(clip), "--frame", "10",
                              "--width", "160", "--out", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image.shape == (120, 160, 3)
    outline = (image[:, :, 1] > 200) & (image[:, :, 0] < 100) & (image[:, :, 2] < 100)
    assert outline.sum() > 30  # the live overlay colour around the bright disc
    assert make_figures.main(["overlay", "--model", str(brightness_model), "--source", str(clip), "--frame", "50",
                              "--out", str(tmp_path / "late.png")]) == 1
