"""Output into a pipe or a log file: no line wrapped at rich's assumed 80 columns, no name cut short,
no heading centred over a table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
LONG = "a-model-whose-file-name-is-long-enough-that-an-eighty-column-table-had-to-cut-it-short"


def polyp_live(*argv: str) -> subprocess.CompletedProcess:
    """``polyp-live ARGV`` with stdout and stderr both pipes (not terminals), from a user's plain environment.

    An earlier in-process ``--verbose`` run leaves OPENCV_LOG_LEVEL=INFO in this process's
    environment; OpenCV's INFO lines would then open the child's output.
    """
    code = "import sys; from polyp_live.realtime.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL")}
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env)


def long_named(model: Path) -> Path:
    copy = model.with_name(f"{LONG}.onnx")
    shutil.copy(model, copy)
    shutil.copy(model.with_suffix(".json"), copy.with_suffix(".json"))
    return copy


def test_the_run_summary_keeps_its_counters_on_one_line_from_the_left(clip, brightness_model):
    proc = polyp_live("--source", str(clip), "--model", str(brightness_model), "--headless", "--max-frames", "6")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith("polyp-live summary: 6 frames in ") for line in lines)
    counters = [line for line in lines if "frames out" in line]
    assert len(counters) == 1 and counters[0].startswith("frames in 6, frames out 6, dropped 0, inferred 6")


def test_the_benchmark_table_shows_a_long_model_name_whole(tmp_path, brightness_model):
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "f0.png"), cv2.imread(str(ROOT / "docs" / "overlay.png")))
    model = long_named(brightness_model)
    proc = polyp_live("benchmark", "--model", f"{model}@onnxruntime:fp32", "--source", str(frames), "--frames", "1",
                      "--runs", "1", "--warmup", "0")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and f" {LONG}.onnx " in rows[0] and "…" not in proc.stdout


def test_the_evaluation_heading_is_one_line_with_the_whole_model_path(tmp_path, brightness_model):
    from test_evaluate import make_sets
    polyps, free = make_sets(tmp_path)
    model = long_named(brightness_model)
    proc = polyp_live("evaluate", "--model", str(model), "--data", str(polyps), "--negatives", str(free), "--split",
                      "val", "--out", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{model} on val (3 polyp images, pixel threshold 0.50, score threshold 0.500)"
    assert any(line.startswith("frames at score threshold 0.500: polyp detected on 3/3 images") and
               line.endswith("polyp-free frames (25.0 %)") for line in lines)
