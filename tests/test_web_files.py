"""The files page (``polyp-live web``) in a real browser: stills and clips in, the product's outlines out."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from browser import Served, chromium_page, keep_screenshot
from conftest import decode, write_video
from polyp_live.realtime.cli import DEMO_CLIP
from polyp_live.core.metrics import image_metrics

pytest.importorskip("aiohttp", reason="needs the [web] extra (pip install 'polyp-live[web]')")

pytestmark = pytest.mark.browser

TOKEN = "files-token-0815"


@pytest.fixture(scope="module")
def files_page(tmp_path_factory):
    """``polyp-live web`` on a free port with a token, a 4 MB upload limit and clips of at most 3 s."""
    run = Served("polyp_live.tools.web", ["--port", "0", "--token", TOKEN, "--max-upload-mb", "4",
                                          "--max-clip-seconds", "3"], tmp_path_factory.mktemp("files-page"),
                 line="files page")
    yield run.url, run.base
    assert run.stop() == 0, run.stderr()[-2000:]
    assert "files page stopped" in run.stderr()


@pytest.fixture(scope="module")
def still(tmp_path_factory) -> Path:
    """Frame 45 of the demo clip (a polyp scene) as a PNG."""
    capture = cv2.VideoCapture(str(DEMO_CLIP))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 45)
    ok, frame = capture.read()
    capture.release()
    assert ok
    path = tmp_path_factory.mktemp("still") / "polyp-45.png"
    cv2.imwrite(str(path), frame)
    return path


def product_masks(source: Path, folder: Path) -> dict[str, np.ndarray]:
    """What ``polyp-live --source SOURCE --save-masks`` writes: mask file name -> mask."""
    done = subprocess.run([sys.executable, "-m", "polyp_live.realtime.cli", "--source", str(source), "--save-masks",
                           str(folder), "--headless", "--quiet"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {p.name: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(folder.glob("*.png"))}


def data_url_image(url: str, flags=cv2.IMREAD_UNCHANGED) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), flags)


def wait_until_idle(page, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    page.wait_for_timeout(200)
    while page.evaluate("document.body.dataset.busy") != "0":
        assert time.monotonic() < deadline, "the page is still busy"
        page.wait_for_timeout(100)


def upload(page, file: Path, truth: Path | None = None) -> None:
    page.set_input_files("#file", str(file))
    page.set_input_files("#truth", str(truth) if truth else [])
    page.click("#send")
    wait_until_idle(page)


def post(url: str, field: str, name: str, data: bytes) -> tuple[int, str]:
    boundary = "polyp-live-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_still_comes_back_outlined_with_the_products_mask_and_its_scores(files_page, still, tmp_path):
    url, _ = files_page
    expected = product_masks(still, tmp_path / "masks")["polyp-45.png"]
    assert expected.max() == 255          # the model outlines this polyp
    truth = np.zeros_like(expected)
    truth[200:520, 400:900] = 255          # a made-up truth: the scores must be computed against it
    cv2.imwrite(str(tmp_path / "truth.png"), truth)
    with chromium_page() as (page, errors):
        page.goto(url)
        upload(page, still, tmp_path / "truth.png")
        assert page.is_visible("#result") and not page.is_visible("#error")
        assert page.inner_text("#verdict") == "polyp outlined"
        mask = data_url_image(page.get_attribute("#download-mask", "href"), cv2.IMREAD_GRAYSCALE)
        outlined = data_url_image(page.get_attribute("#download-outlined", "href"), cv2.IMREAD_COLOR)
        dice, iou = float(page.inner_text("#dice")), float(page.inner_text("#iou"))
        assert page.get_attribute("#download-mask", "download") == "polyp-45-mask.png"
        keep_screenshot(page, "files-page.png")
        assert errors == []
    assert np.array_equal(mask, expected)
    scores = image_metrics(expected > 0, truth > 0)
    assert dice == pytest.approx(scores["dice"], abs=0.001) and iou == pytest.approx(scores["iou"], abs=0.001)
    source = cv2.imread(str(still))
    changed = np.abs(outlined.astype(int) - source.astype(int)).max(axis=2) > 0
    assert changed[expected > 0].mean() > 0.5      # the polyp is tinted
    assert not changed[cv2.dilate(expected, np.ones((15, 15), np.uint8)) == 0].any()   # nothing else is


def test_a_corrupt_upload_gets_a_4xx_and_a_message_then_the_next_upload_works(files_page, still, tmp_path):
    url, _ = files_page
    cut = tmp_path / "cut.jpg"
    ok, data = cv2.imencode(".jpg", cv2.imread(str(still)))
    cut.write_bytes(data.tobytes()[: len(data) // 2])       # a JPEG cut short
    with chromium_page() as (page, errors):
        page.goto(url)
        with page.expect_response(lambda r: r.url.endswith("/still")) as answer:
            upload(page, cut)
        assert answer.value.status == 422
        assert page.is_visible("#error") and "cannot be decoded" in page.inner_text("#error")
        assert not page.is_visible("#result")
        upload(page, still)
        assert page.is_visible("#result") and not page.is_visible("#error")
        assert page.inner_text("#verdict") == "polyp outlined"
        assert [e for e in errors if "422" not in e] == []   # the refused upload's own 422 is the only error


def test_a_clip_comes_back_as_an_mp4_and_a_zip_of_the_products_masks(files_page, tmp_path):
    url, base = files_page
    clip = write_video(tmp_path / "clip.mp4", count=45, size=(320, 240))
    expected = product_masks(clip, tmp_path / "masks")
    with chromium_page() as (page, errors):
        page.goto(url)
        upload(page, clip)
        assert page.is_visible("#result") and not page.is_visible("#error"), page.inner_text("#error")
        assert page.inner_text("#progress-text") == "45 / 45 frames"
        video_url = page.get_attribute("#download-video", "href")
        zip_url = page.get_attribute("#download-masks", "href")
        page.wait_for_timeout(500)
        assert page.evaluate("document.getElementById('video').readyState") >= 1   # the browser reads the MP4
        assert errors == []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with urllib.request.urlopen(urllib.request.Request(base + video_url, headers=headers)) as r:
        (tmp_path / "outlined.mp4").write_bytes(r.read())
    frames, _, size = decode(tmp_path / "outlined.mp4")
    assert len(frames) == 45 and size == (320, 240)
    with urllib.request.urlopen(urllib.request.Request(base + zip_url, headers=headers)) as r:
        archive = zipfile.ZipFile(io.BytesIO(r.read()))
    assert sorted(archive.namelist()) == sorted(expected)
    for name, mask in expected.items():
        assert np.array_equal(cv2.imdecode(np.frombuffer(archive.read(name), np.uint8), cv2.IMREAD_GRAYSCALE), mask)


def test_limits_refuse_big_and_long_uploads_and_the_server_goes_on(files_page, still, tmp_path):
    _, base = files_page
    status, body = post(base + "/still", "image", "big.png", b"\x89PNG" + bytes(5 * 1024 * 1024))
    assert status == 413 and "larger than 4 MB" in body
    long_clip = write_video(tmp_path / "long.mp4", count=120, fps=30.0)       # 4 s
    status, body = post(base + "/clip", "clip", "long.mp4", long_clip.read_bytes())
    assert status == 413 and "lasts 4 s" in body and "3 s" in body
    status, body = post(base + "/still", "image", "notes.txt", b"hello")
    assert status == 415 and "send .jpeg, .jpg, .png" in body
    status, body = post(base + "/still", "image", "still.png", still.read_bytes())
    assert status == 200 and '"polyp": true' in body


def test_the_files_page_refuses_a_wrong_token_and_sets_its_headers(files_page):
    _, base = files_page
    for path in ("/", "/static/files.js", "/jobs/0123"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path + "?token=wrong-token-1234", timeout=10)
        assert refused.value.code == 403
        assert "default-src 'self'" in refused.value.headers["Content-Security-Policy"]
    with urllib.request.urlopen(f"{base}/?token={TOKEN}", timeout=10) as r:
        assert r.status == 200 and "default-src 'self'" in r.headers["Content-Security-Policy"]
    foreign = urllib.request.Request(base + "/still", data=b"", method="POST",
                                     headers={"Origin": "http://evil.example", "Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(foreign, timeout=10)
    assert refused.value.code == 403
