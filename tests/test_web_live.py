"""The live view in a real browser: ``polyp-live --source ... --web`` watched by Debian's Chromium.

The clips carry each frame's number drawn as cells (realtime/web/frame_counter.py), so the page can
say which frame it shows and the tests can compare what it paints with what the pipeline sent.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import decode, make_brightness_model, write_video
from browser import Served, chromium_page, keep_screenshot
from polyp_live.realtime.cli import DEMO_CLIP
from polyp_live.realtime.web.frame_counter import read_counter
from polyp_live.tools.web_benchmark import COUNTER_BAND, counter_clip

pytest.importorskip("aiohttp", reason="needs the [web] extra (pip install 'polyp-live[web]')")
pytest.importorskip("aiortc", reason="needs the [web] extra (pip install 'polyp-live[web]')")

pytestmark = pytest.mark.browser

TOKEN = "test-token-4711"
LIVE = "polyp_live.realtime.cli"   # the module polyp-live runs


def get(url: str, headers: dict | None = None, timeout: float = 10.0):
    """(status, headers, body) of a GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def png_of(data_url: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(data_url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)


def wait_for(page, script: str, timeout_s: float = 20.0):
    """Evaluate ``script`` in the page until it is truthy; its value.

    Polled from here: Playwright's own wait_for_function evaluates strings with eval(), which the
    page's Content-Security-Policy (rightly) refuses.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(script)
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {timeout_s:g} s: {script} " + str(page.evaluate("JSON.stringify(window.polypLive)")))
        page.wait_for_timeout(100)


def capture(page) -> tuple[int, np.ndarray]:
    """(frame number, picture) of what the page paints now (its <canvas> copy of the video or image)."""
    shot = page.evaluate("window.capturePicture()")
    assert shot is not None, "the page has no picture yet"
    return shot["frame"], png_of(shot["png"])


@pytest.fixture(scope="module")
def demo_counter_clip(tmp_path_factory) -> Path:
    """Demo frames 0-209 at 640x360 with their numbers: a polyp scene, a polyp-free one, a polyp again."""
    folder = tmp_path_factory.mktemp("counter-clip")
    return counter_clip(str(DEMO_CLIP), folder / "demo-counter.mp4", 210, size=(640, 360), band=COUNTER_BAND)


@pytest.fixture(scope="module")
def source_frames(demo_counter_clip) -> list[np.ndarray]:
    frames, _, _ = decode(demo_counter_clip)
    return frames


@pytest.fixture(scope="module")
def looping(demo_counter_clip, tmp_path_factory):
    """The counter clip looping in --realtime with the bundled model, served with an access token."""
    folder = tmp_path_factory.mktemp("looping")
    # A generous annotation age: these tests check what is drawn, not how fast. On a slow machine
    # (inference of 130-350 ms beside the browser) every mask is older than the product's 250 ms
    # cut-off and is, rightly, not drawn; that speed is measured by benchmark-web, not asserted here.
    run = Served(LIVE, ["--source", str(demo_counter_clip), "--realtime", "--loop", "--headless", "--quiet",
               "--max-annotation-age", "3000", "--web", "127.0.0.1:0", "--web-token", TOKEN], folder)
    yield run
    run.stop()


def differing_fraction(picture: np.ndarray, source: np.ndarray) -> float:
    """Share of the endoscope image's pixels that differ from the source frame by more than codec noise."""
    h = source.shape[0] - COUNTER_BAND
    region = (slice(h // 3, h), slice(source.shape[1] // 4, source.shape[1] * 3 // 4))  # clear of the HUD
    diff = np.abs(picture[region].astype(np.int16) - source[region].astype(np.int16)).max(axis=2)
    return float(np.mean(diff > 48))


# ---- WebRTC: the video plays and shows exactly what the pipeline sent ----------------------------------

def test_webrtc_video_plays_the_frames_the_pipeline_recorded_from_the_recorders_encoder(tmp_path):
    # 14 s of numbered frames: the run ends with its clip, and on a slow machine the browser's start
    # and the WebRTC handshake take several seconds of it before the page is looked at.
    count = 420
    clip = counter_clip(str(DEMO_CLIP), tmp_path / "counter.mp4", count, size=(640, 360), band=COUNTER_BAND)
    recording = tmp_path / "out.mp4"
    run = Served(LIVE, ["--source", str(clip), "--realtime", "--record", str(recording), "--headless",
               "--quiet", "--web", "127.0.0.1:0"], tmp_path)
    shots = []
    try:
        with chromium_page() as (page, errors):
            page.goto(run.url + "?measure=1")   # the glass-to-glass benchmark's page
            wait_for(page, "window.polypLive.transport === 'webrtc' && window.polypLive.painted > 5")
            first_time = page.evaluate("document.getElementById('video').currentTime")
            for _ in range(4):
                page.wait_for_timeout(400)
                shots.append(capture(page))
            later_time = page.evaluate("document.getElementById('video').currentTime")
            assert page.evaluate("document.getElementById('panel').dataset.transport") == "webrtc"
            glass = page.evaluate("fetch('/glass.json').then(answer => answer.json())")["samples"]
            assert errors == []
    finally:
        code = run.process.wait(60)  # the clip ends, so does the run
    assert code == 0, run.stderr()[-2000:]
    assert later_time > first_time + 1.0
    # One encoder for the file and the browser: the recorder's own stream, in the profile WebRTC takes.
    with av.open(str(recording)) as container:
        assert container.streams.video[0].codec_context.profile == "Constrained Baseline"
    numbers = [n for n, _ in shots]
    assert numbers == sorted(numbers) and len(set(numbers)) >= 3, numbers   # the video moves on
    # The page reported when it showed each frame: after the pipeline published it, and the callback
    # that read its number ran about then too (the benchmark's two figures).
    shown = [s for s in glass if s["transport"] == "webrtc"]
    assert len(shown) >= 5, glass[:5]
    assert all(0 < s["added_ms"] < 5000 and abs(s["callback_added_ms"] - s["added_ms"]) < 1000 for s in shown), shown[:5]
    recorded, _, _ = decode(recording)
    in_order = [read_counter(frame) for frame in recorded]
    # --realtime may drop a frame on a loaded machine (the pipeline counts it); none is recorded twice.
    assert in_order == sorted(set(in_order)) and len(in_order) >= count - 20, in_order
    by_number = dict(zip(in_order, recorded))
    for number, picture in shots:
        assert picture.shape == recorded[0].shape
        same = np.abs(picture.astype(np.int16) - by_number[number].astype(np.int16)).mean()
        other_number = min(by_number, key=lambda n: abs(n - (number + 15) % count))
        other = np.abs(picture.astype(np.int16) - by_number[other_number].astype(np.int16)).mean()
        assert same < 6.0 and same < other / 2, (number, same, other)


# ---- MJPEG, the panel and the controls on one looping run -------------------------------------------

def test_mjpeg_stream_updates_in_an_img(looping):
    with chromium_page() as (page, errors):
        page.goto(looping.url.replace("/?", "/?mode=mjpeg&"))
        wait_for(page, "document.getElementById('mjpeg').naturalWidth > 0")
        first = page.evaluate("window.readFrameCounter()")
        page.wait_for_timeout(700)
        second = page.evaluate("window.readFrameCounter()")
        assert page.evaluate("window.polypLive.transport") == "mjpeg"
        assert errors == []
    assert 0 <= first < 210 and 0 <= second < 210 and first != second


def test_panel_turns_the_polyp_indicator_on_over_a_polyp_scene_and_off_after_it(looping):
    with chromium_page() as (page, errors):
        page.goto(looping.url)
        wait_for(page, "window.polypLive.painted > 10")
        # Frames 0-89 and 180-209 hold a polyp, 90-179 do not; the clip loops every 7 s.
        wait_for(page, "document.getElementById('panel').dataset.polyp === '1'", 20)
        assert page.inner_text("#indicator").startswith("POLYP")
        keep_screenshot(page, "web-view.png")
        wait_for(page, "document.getElementById('panel').dataset.polyp === '0'", 20)
        assert page.inner_text("#indicator") == "no polyp"
        assert float(page.inner_text("#fps")) > 5
        assert "onnxruntime" in page.inner_text("#runtime").lower()
        assert errors == []


def streamed_change(page, source_frames, reached, timeout_s: float = 10.0) -> float:
    """How much the painted picture differs from its source frame, once ``reached`` by it or at
    ``timeout_s``: pictures rendered before a control took effect take a moment to leave the stream,
    longer on a loaded machine."""
    deadline = time.monotonic() + timeout_s
    while True:
        number, picture = capture(page)
        fraction = differing_fraction(picture, source_frames[number])
        if reached(fraction) or time.monotonic() > deadline:
            return fraction
        page.wait_for_timeout(200)


def test_controls_change_what_is_streamed_and_are_reflected(looping, source_frames):
    with chromium_page() as (page, errors):
        page.goto(looping.url.replace("/?", "/?mode=mjpeg&"))
        wait_for(page, "document.getElementById('controls').dataset.state")
        page.select_option("#style", "heatmap")
        wait_for(page, "JSON.parse(document.getElementById('controls').dataset.state).style === 'heatmap'")
        heat = streamed_change(page, source_frames, lambda f: f > 0.3)
        page.click("#overlay")
        wait_for(page, "JSON.parse(document.getElementById('controls').dataset.state).overlay === false")
        assert page.inner_text("#overlay") == "overlay off"
        plain = streamed_change(page, source_frames, lambda f: f < 0.02)
        page.click("#overlay")
        page.select_option("#style", "both")
        wait_for(page, "JSON.parse(document.getElementById('controls').dataset.state).overlay === true")
        assert errors == []
    assert heat > 0.3, heat      # the heat map tints the whole field of view
    assert plain < 0.02, plain   # overlay off: the picture is the source frame


def test_wrong_or_missing_token_is_refused_on_every_route(looping):
    for path in ("/", "/stream.mjpg", "/snapshot.png", "/static/live.js", "/glass.json"):
        for suffix in ("", "?token=wrong-token-0000"):
            status, headers, body = get(looping.base + path + suffix)
            assert status == 403, (path, suffix, status)
            assert b"token" in body
            assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, headers, body = get(looping.base + "/snapshot.png", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (360 + COUNTER_BAND, 640)
    request = urllib.request.Request(looping.base + "/offer?token=nope", data=b'{"sdp": "", "type": "offer"}',
                                     headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    with chromium_page() as (page, errors):
        response = page.goto(looping.base + "/?token=wrong-token-0000")
        assert response.status == 403
        assert "token" in page.inner_text("body")


def test_every_answer_carries_the_content_security_policy(looping):
    for path in ("/", "/static/live.js", "/static/live.css", "/static/nothing.js", "/favicon.ico", "/nowhere"):
        status, headers, _ = get(f"{looping.base}{path}?token={TOKEN}")
        assert status in (200, 204, 404), (path, status)
        assert headers["Content-Security-Policy"].startswith("default-src 'self'"), path
        assert headers["X-Content-Type-Options"] == "nosniff"


# ---- binding, tokens, and viewers that cannot slow the pipeline ---------------------------------------

def test_any_other_address_gets_a_generated_token(tmp_path):
    model = make_brightness_model(tmp_path / "bright.onnx")
    clip = write_video(tmp_path / "clip.mp4", count=60)
    run = Served(LIVE, ["--source", str(clip), "--model", str(model), "--realtime", "--loop", "--headless", "--quiet",
               "--web", "0.0.0.0:0"], tmp_path)
    try:
        assert "token generated for this run" in run.stderr()
        token = run.url.split("token=")[1]
        assert len(token) >= 16
        assert get(run.base + "/")[0] == 403
        status, headers, body = get(f"{run.base}/?token={token}")
        assert status == 200 and b"polyp-live" in body
        assert "polyp_live_token" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    finally:
        assert run.stop() in (0, 130)


def test_a_viewer_that_reads_nothing_does_not_stall_a_file_run(tmp_path):
    model = make_brightness_model(tmp_path / "bright.onnx")
    clip = write_video(tmp_path / "noise.avi", count=150, size=(1280, 720))  # textured: large JPEGs
    recording = tmp_path / "out.mp4"
    run = Served(LIVE, ["--source", str(clip), "--model", str(model), "--record", str(recording), "--headless", "--quiet",
               "--web", "127.0.0.1:0"], tmp_path)
    port = int(run.base.rsplit(":", 1)[1])
    stuck = socket.create_connection(("127.0.0.1", port), timeout=5)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")   # and never reads
    try:
        code = run.process.wait(120)
    finally:
        stuck.close()
    assert code == 0, run.stderr()[-2000:]
    frames, _, _ = decode(recording)
    assert len(frames) == 150


def test_a_port_in_use_is_a_one_line_usage_error(tmp_path):
    model = make_brightness_model(tmp_path / "bright.onnx")
    clip = write_video(tmp_path / "clip.mp4", count=10)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "polyp_live.realtime.cli", "--source", str(clip), "--model",
                               str(model), "--headless", "--quiet", "--web", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "another port" in lines[0], done.stderr
