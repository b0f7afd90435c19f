"""tools/benchmark.py --pipeline on a tiny clip: every field it reports is there and consistent."""

from __future__ import annotations

import json

import pytest

from conftest import write_video


def test_pipeline_benchmark_reports_both_delays_and_writes_json_markdown_and_a_histogram(tmp_path, brightness_model):
    pytest.importorskip("matplotlib")
    from polyp_live.tools.pipeline_benchmark import run

    clip = write_video(tmp_path / "clip.mp4", count=12, fps=30)
    paths = [tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"]
    rows = run(str(brightness_model), str(clip), 12, 1, False, ["720p"], ["realtime", "file"], ["fp32", "int8"],
               *map(str, paths), say=lambda _m: None)
    assert [r["run"] for r in rows] == ["720p fp32 realtime", "720p fp32 file"]  # no INT8 model: skipped
    for row in rows:
        assert row["frames_in"] == row["frames_out"] == 12 and row["dropped_from_video"] == 0
        assert row["recording_frames"] == 12 and row["recording_s"] == pytest.approx(row["source_s"], abs=1 / 30)
        assert row["video_delay_ms"]["p50"] <= row["video_delay_ms"]["p99"]
        assert {"capture", "inference", "render", "encode", "other"} <= set(row["cpu_cores"])
    assert "throughput_vs_inference" in rows[1] and "throughput_vs_inference" not in rows[0]
    saved = json.loads(paths[0].read_text())
    assert saved["runs"] == json.loads(json.dumps(rows)) and "INT8 skipped" in saved["machine"]["notes"][0]
    assert "| 720p fp32 file |" in paths[1].read_text()
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
