"""Polyp appearances and the procedure report: the tracker on hand-made sequences, the report on every
exit path, the page in a real HTML parser with every image inlined, and the page rebuilt from stats."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import write_video
from polyp_live.realtime.appearances import AppearanceTracker, Region, merge_close, tracker_summary
from polyp_live.realtime.report import render_html

FPS = 30.0


def feed(tracker, boxes_per_frame, candidate=None, image=None, resets=None):
    """Frame i holds the regions in boxes_per_frame[i] (x, y, w, h), each with score 0.9."""
    for i, boxes in enumerate(boxes_per_frame):
        regions = [Region(box, 0.9 + 0.001 * i, (box[2] * box[3]) / (640 * 480)) for box in boxes]
        cand = bool(boxes) if candidate is None else candidate[i]
        tracker.update(i, i / FPS, regions, cand, 0.9 if boxes else 0.0, image,
                       (resets or {}).get(i, ""))


def test_a_gap_below_the_limit_keeps_one_appearance_and_one_above_it_makes_two():
    polyp = [(100, 100, 60, 60)]
    for gap_frames, expected in ((10, 1), (20, 2)):  # 10 frames = 0.33 s < 0.5 s; 20 frames = 0.67 s
        tracker = AppearanceTracker(gap_s=0.5)
        feed(tracker, [polyp] * 15 + [[]] * gap_frames + [polyp] * 15)
        done = tracker.finish()
        assert len(done) == expected, gap_frames
        assert sum(a.frames_shown for a in done) == 30
    one = AppearanceTracker(gap_s=0.5)
    feed(one, [polyp] * 15 + [[]] * 10 + [polyp] * 15)
    a = one.finish()[0]
    assert (a.first_frame, a.last_frame, a.frames_shown) == (0, 39, 30)
    assert a.duration == pytest.approx(39 / FPS)


def test_two_polyps_crossing_stay_two_appearances():
    frames = []
    for i in range(40):
        left = (50 + 8 * i, 200, 50, 50)     # moves right
        right = (400 - 8 * i, 220, 50, 50)   # moves left: they pass each other around frame 22
        frames.append([left, right] if abs(left[0] - right[0]) > 60 else [])
    tracker = AppearanceTracker(gap_s=0.5)
    feed(tracker, frames)
    done = tracker.finish()
    assert len(done) == 2
    # Each appearance kept its own polyp across the crossing: the one that started on the left ends right.
    assert {a.frames_shown for a in done} == {sum(1 for f in frames if f)}
    first, second = sorted(done, key=lambda a: a.id)  # the left polyp was seen first (sorted first)
    assert first.box[0] > 300 and second.box[0] < 150


def test_a_scene_cut_ends_the_open_appearance_and_a_one_frame_flash_is_its_own():
    tracker = AppearanceTracker(gap_s=0.5)
    polyp = [(100, 100, 60, 60)]
    feed(tracker, [polyp] * 20 + [polyp] * 20 + [[]] * 30 + [[(400, 300, 30, 30)]] + [[]] * 30,
         resets={20: "scene cut"})
    done = tracker.finish()
    assert [(a.first_frame, a.last_frame, a.end_reason) for a in done] == [
        (0, 19, "scene cut"), (20, 39, "gap"), (70, 70, "gap")]
    figures = tracker.figures()
    # Two 0.63 s appearances and one flash of a single frame.
    assert figures["appearances"] == 3 and figures["share_shorter_than_0_5_s"] == pytest.approx(1 / 3)
    assert figures["appearances_per_minute"] == pytest.approx(3 / (100 / FPS / 60))


def test_time_to_alert_is_what_persistence_cost():
    tracker = AppearanceTracker()
    polyp = [(100, 100, 60, 60)]
    # Candidates from frame 5 on, the alert (regions reported) from frame 7: persistence 3/3.
    boxes = [[]] * 7 + [polyp] * 10
    candidate = [False] * 5 + [True] * 12
    feed(tracker, boxes, candidate)
    a = tracker.finish()[0]
    assert a.first_frame == 7 and a.time_to_alert == pytest.approx(2 / FPS)
    assert tracker.figures()["median_time_to_alert_s"] == pytest.approx(2 / FPS)


def test_pieces_of_one_polyp_are_one_region():
    merged = merge_close([Region((100, 100, 100, 100), 0.99, 0.03), Region((205, 150, 30, 30), 0.8, 0.004),
                          Region((500, 400, 40, 40), 0.9, 0.005)])
    assert sorted(r.box for r in merged) == [(100, 100, 135, 100), (500, 400, 40, 40)]


def test_the_best_frame_is_kept_as_a_small_jpeg_with_the_outline():
    tracker = AppearanceTracker()
    image = np.zeros((480, 640, 3), np.uint8)
    contour = np.array([[[100, 100]], [[160, 100]], [[160, 160]], [[100, 160]]], np.int32)
    for i, score in enumerate((0.8, 0.95, 0.9)):
        tracker.update(i, i / FPS, [Region((100, 100, 60, 60), score, 0.01, [contour])], True, score, image)
    summary = tracker_summary(tracker)
    a = summary["appearances"][0]
    assert a["best_frame"] == 1 and a["peak_score"] == 0.95
    import cv2
    thumb = cv2.imdecode(np.frombuffer(base64.b64decode(a["thumbnail_jpeg_base64"]), np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape[1] == 192 and thumb[..., 1].max() > 200  # the green outline on a black frame


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.scripts, self.links, self.rows, self.ids = [], 0, [], 0, set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "script":
            self.scripts += 1
        if tag in ("link", "iframe") or (tag == "a" and attrs.get("href", "").startswith("http")):
            self.links.append(tag)
        if tag == "tr" and attrs.get("class") == "appearance-row":
            self.rows += 1
        if "id" in attrs:
            self.ids.add(attrs["id"])


def run(args, tmp_path, **popen):
    return subprocess.Popen([sys.executable, "-m", "polyp_live.realtime.cli", "--headless", "--quiet", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def check_page(path, rows: int | None = None) -> PageParser:
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in text
    page = PageParser()
    page.feed(text)
    page.close()
    assert page.scripts == 0 and page.links == []  # self-contained: nothing loaded from anywhere
    assert all(src.startswith("data:image/jpeg;base64,") for src in page.images)
    assert {"run", "appearances", "figures"} <= page.ids
    if rows is not None:
        assert page.rows == rows and len(page.images) == rows
    return page


def test_the_report_of_a_file_run_lists_each_bright_disc_scene_once(tmp_path, brightness_model):
    # 30 frames of a bright disc: one appearance; --report .html and --stats-json agree.
    clip = write_video(tmp_path / "clip.mp4", count=30)
    proc = run(["--source", str(clip), "--model", str(brightness_model), "--report", str(tmp_path / "r.html"),
                "--stats-json", str(tmp_path / "s.json")], tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    stats = json.loads((tmp_path / "s.json").read_text())["appearances"]
    assert len(stats["appearances"]) == 1 and stats["appearances"][0]["frames_shown"] == 30
    check_page(tmp_path / "r.html", rows=1)
    # The same data as JSON, and the page rebuilt from the saved stats.
    from polyp_live.tools import report
    assert report.main([str(tmp_path / "s.json"), "--out", str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").read_text() == (tmp_path / "r.html").read_text()
    assert report.main([str(tmp_path / "s.json"), "--out", str(tmp_path / "data.json")]) == 0
    assert json.loads((tmp_path / "data.json").read_text())["appearances"] == stats


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_report_is_written_when_the_run_is_stopped(tmp_path, brightness_model, sig, code):
    clip = write_video(tmp_path / "clip.mp4", count=3000)
    report_path, stats_path = tmp_path / "r.html", tmp_path / "s.json"
    proc = run(["--source", str(clip), "--model", str(brightness_model), "--realtime", "--report", str(report_path),
                "--stats-json", str(stats_path)], tmp_path)
    time.sleep(4.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    appearances = json.loads(stats_path.read_text())["appearances"]["appearances"]
    assert len(appearances) >= 1 and appearances[-1]["end_reason"] == "end of run"
    check_page(report_path, rows=len(appearances))
    assert not list(tmp_path.glob(".*.partial"))


def test_the_report_is_written_when_a_live_source_is_lost(tmp_path, brightness_model):
    from conftest import moving_disc_frames
    from test_sources import CountingMjpegServer
    server = CountingMjpegServer(short=None, cut=None, images=list(moving_disc_frames(40)))  # 40 frames, then gone
    try:
        proc = run(["--source", server.url, "--model", str(brightness_model), "--reconnect-timeout", "0",
                    "--report", str(tmp_path / "r.json")], tmp_path)
        _, err = proc.communicate(timeout=120)
    finally:
        server.close()
    assert proc.returncode == 1 and "lost" in err
    data = json.loads((tmp_path / "r.json").read_text())
    ends = [a["end_reason"] for a in data["appearances"]["appearances"]]
    assert ends and ends[0] in ("signal lost", "end of run")


def test_report_options_are_checked_before_the_run(tmp_path, brightness_model, capsys):
    from polyp_live.realtime.cli import main
    clip = write_video(tmp_path / "clip.mp4", count=5)
    assert main(["--headless", "--quiet", "--source", str(clip), "--model", str(brightness_model),
                 "--report", str(tmp_path / "r.txt")]) == 2
    assert "--report" in capsys.readouterr().err
    (tmp_path / "folder").mkdir()
    assert main(["--headless", "--quiet", "--source", str(clip), "--model", str(brightness_model),
                 "--report", str(tmp_path / "folder")]) == 2
    from polyp_live.tools import report
    assert report.main([str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.html")]) == 1


def test_an_empty_run_says_no_polyp_was_flagged():
    page = render_html({"info": {"source": "x"}, "counters": {}, "appearances": {
        "appearances": [], "figures": {"appearances": 0}, "timeline": {"t_s": [], "score": []}}})
    assert "no polyp was flagged in this run" in page


def test_the_hud_names_the_current_appearance_and_its_age(tmp_path, monkeypatch, brightness_model):
    from test_live import capture_huds
    from polyp_live.engines.registry import load_backend
    from polyp_live.core.config import PipelineConfig, RoiConfig
    from polyp_live.realtime.pipeline import Pipeline
    from polyp_live.realtime.sources import VideoFileSource
    huds = capture_huds(monkeypatch)
    clip = write_video(tmp_path / "clip.mp4", count=30, fps=30)
    Pipeline(PipelineConfig(roi=RoiConfig(mode="full")), VideoFileSource(str(clip)),
             load_backend(str(brightness_model))).run()
    labels = [hud.appearance for hud, present in huds if present]
    assert labels and labels[0] == "#1 0.0 s" and labels[-1].startswith("#1 ")
    assert float(labels[-1].split()[1]) == pytest.approx(29 / 30, abs=0.05)  # the age follows the file's time


def chromium() -> str | None:
    import shutil
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_report_opens_in_chromium_with_its_thumbnails_decoded(tmp_path, brightness_model):
    clip = write_video(tmp_path / "clip.mp4", count=30)
    page = tmp_path / "r.html"
    proc = run(["--source", str(clip), "--model", str(brightness_model), "--report", str(page)], tmp_path)
    assert proc.wait(120) == 0
    # The page's own script-free DOM as Chromium built it, plus a probe of every image's decoded size.
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", "<p id=probe></p></body>"))
    out = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    dom = out.stdout
    assert dom.count('class="appearance-row"') == 1 and 'id="probe"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,900", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import cv2
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1000)
    # The thumbnail's green outline made it onto the rendered page: the JPEG decoded in the browser.
    green = (image[..., 1] > 180) & (image[..., 0] < 120) & (image[..., 2] < 120)
    assert green.sum() > 50
