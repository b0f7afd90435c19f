"""The browser view's parts without a browser: addresses and tokens, controls, the shared encoders."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from polyp_live.core.errors import UsageError
from polyp_live.realtime.view import LiveView
from polyp_live.realtime.web.frame_counter import draw_counter, read_counter
from polyp_live.realtime.web.security import parse_web_address


@pytest.mark.parametrize("text, host, port", [("8080", "127.0.0.1", 8080), ("0", "127.0.0.1", 0),
                                              ("localhost:9000", "localhost", 9000), ("[::1]:81", "::1", 81)])
def test_loopback_addresses_need_no_token(text, host, port):
    address = parse_web_address(text)
    assert (address.host, address.port, address.token) == (host, port, None)
    assert address.url.endswith(f":{port}/")


def test_any_other_host_gets_a_generated_token_unless_one_is_given():
    generated = parse_web_address("0.0.0.0:8080")
    assert generated.generated and len(generated.token) >= 16
    assert generated.url == f"http://HOST:8080/?token={generated.token}"
    assert parse_web_address("0.0.0.0:8080").token != generated.token   # made up afresh each run
    given = parse_web_address("10.1.2.3:8080", token="ward-7-screen")
    assert (given.token, given.generated) == ("ward-7-screen", False)


@pytest.mark.parametrize("text", ["http", "80800", "-1", "host:", "1.2.3.4:x"])
def test_a_bad_address_is_a_usage_error_with_an_example(text):
    with pytest.raises(UsageError, match=r"expected \[HOST:\]PORT.*e\.g\. --web 8080"):
        parse_web_address(text)


def test_a_short_token_is_refused():
    with pytest.raises(UsageError, match="at least 8 characters"):
        parse_web_address("0.0.0.0:8080", token="1234")


def test_controls_apply_and_report_and_refuse_unknown_values():
    view = LiveView()
    assert view.controls() == {"paused": False, "overlay": True, "style": "both", "smoothing": "confidence"}
    assert view.control("overlay")["overlay"] is False
    assert view.control("overlay", "on")["overlay"] is True
    assert view.control("pause", "on")["paused"] is True and view.paused.is_set()
    assert view.control("style", "heatmap")["style"] == "heatmap"
    assert view.control("smoothing", "none")["smoothing"] == "none"
    for action, value, allowed in [("style", "neon", "fill, contour, both, heatmap"),
                                   ("smoothing", "magic", "confidence"), ("overlay", "maybe", "on or off"),
                                   ("zoom", None, "pause, overlay, style, smoothing or stop")]:
        with pytest.raises(ValueError, match=allowed):
            view.control(action, value)
    assert view.controls()["style"] == "heatmap"          # a refused control changes nothing
    stop = threading.Event()
    LiveView(stop=stop).control("stop")
    assert stop.is_set()


def test_frame_counter_survives_jpeg():
    image = np.full((120, 320, 3), 40, np.uint8)
    for number in (0, 1, 4711, 65535):
        draw_counter(image, number)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40])
        assert read_counter(cv2.imdecode(data, cv2.IMREAD_COLOR)) == number


def pictures(view: LiveView, numbers, size=(320, 64)):
    rng = np.random.default_rng(1)
    for n in numbers:
        image = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        view.publish(draw_counter(image, n), frame_index=n)
        yield view.picture()


def test_jpeg_encoder_keeps_the_newest_picture():
    from polyp_live.realtime.web.encoders import JpegEncoder
    view = LiveView()
    encoder = JpegEncoder(view)
    for picture in pictures(view, range(3)):
        encoder.encode(picture)
    seq, data = encoder.newest()
    assert seq == view.picture().seq
    assert read_counter(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)) == 2


def test_h264_stream_starts_viewers_on_a_keyframe_and_lets_a_late_one_skip_ahead():
    av = pytest.importorskip("av")
    from polyp_live.realtime.web.encoders import MAX_BEHIND, H264Stream
    view = LiveView()
    stream = H264Stream(view, fps=10.0)          # a keyframe every 10 pictures
    for picture in pictures(view, range(25)):
        stream.encode(picture)
    number, packet = stream.packets.next_packet(None)     # a new viewer: the newest keyframe
    assert packet.is_keyframe
    decoder = av.CodecContext.create("h264", "r")
    shown = []
    position = None
    while (step := stream.packets.next_packet(position)) is not None:
        position, packet = step
        shown += [read_counter(f.to_ndarray(format="bgr24")) for f in decoder.decode(packet)]
    shown += [read_counter(f.to_ndarray(format="bgr24")) for f in decoder.decode(None)]
    assert shown == list(range(shown[0], 25)) and shown[0] in (10, 20)   # from a keyframe, no gaps
    assert stream.packets.next_packet(position) is None   # caught up: nothing to send
    # A viewer stuck at its first packet, now far behind, jumps to the newest keyframe.
    for picture in pictures(view, range(25, 25 + MAX_BEHIND + 20)):
        stream.encode(picture)
    jumped, packet = stream.packets.next_packet(1)
    assert packet.is_keyframe and jumped > 1 + MAX_BEHIND


def test_a_recording_run_sends_its_recorders_packets_to_webrtc_viewers(tmp_path):
    """One encoder for the file and the browsers: a viewer that joins mid-run gets a keyframe at once
    and then every recorded frame, and the file is whole."""
    av = pytest.importorskip("av")
    from polyp_live.realtime.recorder import VideoRecorder, count_decodable
    from polyp_live.realtime.web.encoders import RecordingTap
    tap = RecordingTap()
    recorder = VideoRecorder(tmp_path / "out.mp4", 10.0, (320, 240), gop_s=100.0, packet_sink=tap)
    view = LiveView()
    decoder = av.CodecContext.create("h264", "r")
    shown, position = [], None
    background = np.random.default_rng(2).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    for i in range(30):   # one scene: the encoder makes no keyframe of its own after the first
        view.publish(draw_counter(background.copy(), i), frame_index=i)
        picture = view.picture()
        if i == 5:
            tap.add_viewer()                        # joins: the track asks for a keyframe
            tap.packets.request_keyframe()
        recorder.submit(picture.image, i / 10)
        deadline = time.monotonic() + 10
        while recorder.frames <= i and time.monotonic() < deadline:
            time.sleep(0.005)
        if i < 5:
            assert tap.packets.next_packet(None) is None    # nobody watches yet: nothing is kept
        while (step := tap.packets.next_packet(position)) is not None:
            position, packet = step
            shown += [read_counter(f.to_ndarray(format="bgr24")) for f in decoder.decode(packet)]
    recorder.close()
    shown += [read_counter(f.to_ndarray(format="bgr24")) for f in decoder.decode(None)]
    assert recorder.error is None and count_decodable(recorder.path) == 30
    assert shown == list(range(5, 30)), shown


def test_the_files_page_on_a_port_in_use_is_a_one_line_usage_error():
    import socket
    import subprocess
    import sys
    pytest.importorskip("aiohttp", reason="needs the [web] extra")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "polyp_live.tools.web", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"--port 127.0.0.1:{port}: cannot listen there" in lines[0] and "another port" in lines[0]
