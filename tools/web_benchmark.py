"""Glass-to-glass added by the browser view: ``polyp-live benchmark-web``.

Every frame of a clip made from the demo carries its number drawn as black and white cells
(:mod:`polyp_live.realtime.web.frame_counter`). The live product runs it in ``--realtime`` with
``--web`` while 0, 1 or 4 headless Chromium pages watch; the pages read the number of each frame they
paint and report when it was shown (``?measure=1``; for WebRTC the browser's own time for putting the
frame on screen, ``expectedDisplayTime``, and, as a second figure, when the page's callback ran), the
server pairs it with the time the pipeline published that frame (``/glass.json``). Reported per run:
the browser's added delay p50/p95/p99 per transport (WebRTC, MJPEG), and the pipeline's own figures
(output FPS, dropped frames, video delay and annotation delay p95) so that viewers can be seen to
cost the pipeline nothing.

Both ends run on one machine with one clock, so "added" is paint time minus publish time exactly;
what the local window adds over publishing (one ``imshow``, well under a frame) is not subtracted.
Run it on an otherwise idle machine: the figures in ``docs/PERFORMANCE.md`` come from it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from polyp_live.core.errors import InvalidValue
from polyp_live.realtime.recorder import VideoRecorder
from polyp_live.realtime.web.frame_counter import CELL, MARGIN, draw_counter
from polyp_live.tools.benchmark import cpu_name, package_version, percentiles

VIEWER_COUNTS = (0, 1, 4)


def counter_clip(source: str, out: Path, count: int, size: tuple[int, int] | None = None, band: int = 0,
                 start: int = 0) -> Path:
    """Frames ``start .. start+count-1`` of ``source`` (resized to ``size``), each with its number drawn,
    recorded by polyp-live's own recorder (H.264, CRF 18: the 16-pixel cells survive it).

    ``band`` adds that many black rows under the picture so the number sits outside the endoscope
    image (the field-of-view detection then ignores it). The number drawn is the frame's index in
    the new clip.
    """
    capture = cv2.VideoCapture(source)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    recorder = None
    try:
        for index in range(count):
            ok, frame = capture.read()
            if not ok:
                raise InvalidValue(f"{source} has fewer than {start + count} frames")
            if size is not None:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            if band:
                frame = cv2.copyMakeBorder(frame, 0, band, 0, 0, cv2.BORDER_CONSTANT, value=0)
            draw_counter(frame, index)
            if recorder is None:
                recorder = VideoRecorder(out, fps, (frame.shape[1], frame.shape[0]), crf=18)
            recorder.submit(frame, index / fps)
    finally:
        capture.release()
        if recorder is not None:
            recorder.close()
    return out


COUNTER_BAND = CELL + 2 * MARGIN   # rows under the picture that hold the counter and its margins
# Headless Chromium on a machine without a GPU or an internet connection (background networking
# off: its connections would be refused many at a time); the tests' browser uses the same.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
                  "--use-fake-ui-for-media-stream"]


def run_one(clip: Path, viewers: int, transport: str, folder: Path, chromium: str, browser_nice: int = 0) -> dict:
    """One ``polyp-live --realtime --web`` run of ``clip`` watched by ``viewers`` pages; its figures."""
    stats = folder / f"stats-{viewers}-{transport}.json"
    log = folder / f"stderr-{viewers}-{transport}.txt"
    command = [sys.executable, "-m", "polyp_live.realtime.cli", "--source", str(clip), "--realtime", "--headless",
               "--quiet", "--record", str(folder / "out.mp4"), "--stats-json", str(stats), "--web", "127.0.0.1:0"]
    # The browser starts before polyp-live does: a niced Chromium on a busy machine can take longer to
    # start than the clip lasts, and its start-up is not what is measured.
    with open(log, "w") as err, _browser(viewers, chromium, browser_nice, folder) as browser:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        try:
            url = _served_url(log, process)
            samples = _watch(url, viewers, transport, process, browser) if viewers else []
            process.wait(120)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(30)
    if process.returncode != 0:
        raise RuntimeError(f"polyp-live exited {process.returncode}: {log.read_text()[-1000:]}")
    summary = json.loads(stats.read_text())
    stages, counters = summary["stages_ms"], summary["counters"]
    return {"viewers": viewers, "transport": transport if viewers else "-",
            "added_ms": {"count": len(samples), **percentiles([s["added_ms"] for s in samples])},
            # to the page's callback, which runs after the frame is shown (as measured before 2026-12-04)
            "callback_added_ms": percentiles([s.get("callback_added_ms", s["added_ms"]) for s in samples]),
            "frames_painted_per_viewer": round(len(samples) / viewers, 1) if viewers else None,
            "frames_in": counters["frames_in"], "output_fps": round(summary["output_fps"], 2),
            "dropped": counters["dropped"] + counters["record_dropped"],
            "video_delay_p95_ms": round(stages["video_delay"]["p95"], 1),
            "annotation_delay_p95_ms": round(stages["annotation_delay"]["p95"], 1),
            # The recorder's time per frame: WebRTC viewers get its packets, so it is part of what they wait.
            "record_encode_p95_ms": round(stages["encode"]["p95"], 1) if "encode" in stages else None,
            "inference_hz": round(summary["inference_hz"], 1),
            "polyp_live_cores": round(summary["process_cpu_s"] / summary["wall_s"], 2)}


def _served_url(log: Path, process: subprocess.Popen, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("web view: "):
                return line.split()[2]
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"polyp-live did not serve: {log.read_text()[-1000:]}")


@contextlib.contextmanager
def _browser(viewers: int, chromium: str, browser_nice: int, folder: Path):
    """A headless Chromium for ``viewers`` pages (None for none), closed at the end.

    ``browser_nice`` > 0 starts it (all its processes) at that lower priority: a stand-in for a viewer
    on another device, whose decoding and painting cost the pipeline's machine nothing.
    """
    if not viewers:
        yield None
        return
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=folder_launcher(chromium, browser_nice, folder),
                                     headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def _watch(url: str, viewers: int, transport: str, process: subprocess.Popen, browser) -> list[dict]:
    """Open ``viewers`` pages measuring paints until the run ends; the server's last /glass.json samples."""
    import urllib.request
    samples: list[dict] = []
    for _ in range(viewers):
        # Not waiting for each page to load: four starved pages opened one after another can outlast the clip.
        browser.new_context(viewport={"width": 1400, "height": 800}).new_page().goto(
            f"{url}?mode={transport}&measure=1", wait_until="commit")
    while process.poll() is None:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/glass.json", timeout=2) as answer:
                samples = json.loads(answer.read())["samples"]
        except OSError:
            pass   # the run just ended and took the server with it: keep the last answer
        time.sleep(1.0)
    return [s for s in samples if s["transport"] == transport]


def folder_launcher(chromium: str, nice: int, folder: Path) -> str:
    """``chromium`` itself, or a script that starts it under ``nice -n NICE`` (and its autogroup too)."""
    if nice <= 0:
        return chromium
    script = folder / "chromium-nice"
    # Playwright starts the browser in a session of its own, whose autogroup the kernel schedules as a
    # peer of polyp-live's whatever the nice value inside it: lower the autogroup's priority as well.
    script.write_text(f'#!/bin/sh\necho {int(nice)} > /proc/self/autogroup 2>/dev/null\n'
                      f'exec nice -n {int(nice)} {chromium} "$@"\n')
    script.chmod(0o755)
    return str(script)


def markdown(rows: list[dict], machine: str) -> str:
    lines = [f"Machine: {machine}.", "",
             "| viewers | stream | browser adds p50 / p95 / p99 ms | to the page's callback p50 / p95 ms | "
             "frames painted per viewer | output FPS | dropped | video delay p95 ms | annotation delay p95 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, c = r["added_ms"], r["callback_added_ms"]
        added = "–" if not a["count"] else f"{a['p50']:.0f} / {a['p95']:.0f} / {a['p99']:.0f}"
        callback = "–" if not a["count"] else f"{c['p50']:.0f} / {c['p95']:.0f}"
        lines.append(f"| {r['viewers']} | {r['transport']} | {added} | {callback} | {r['frames_painted_per_viewer'] or '–'} | "
                     f"{r['output_fps']:.1f} | {r['dropped']} | {r['video_delay_p95_ms']:.0f} | "
                     f"{r['annotation_delay_p95_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def chromium_version(chromium: str) -> str:
    try:
        return subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=20).stdout.split()[1]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from polyp_live.arguments import command_parser
    p = command_parser("benchmark-web", __doc__)
    p.add_argument("--frames", type=int, default=630, help="frames of the demo clip to use (default 630, all)")
    p.add_argument("--viewers", default="0,1,4", help="viewer counts to run (default 0,1,4)")
    p.add_argument("--streams", default="webrtc,mjpeg", help="streams to watch (default webrtc,mjpeg)")
    p.add_argument("--browser-nice", type=int, default=0, metavar="N",
                   help="start Chromium under nice -n N (a viewer on another device; default 0: same priority)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the Markdown table")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``polyp-live benchmark-web``; returns the exit code."""
    args = build_parser().parse_args(argv)
    import platform
    from polyp_live.realtime.cli import DEMO_CLIP
    streams = tuple(v for v in args.streams.split(",") if v)
    if not streams or set(streams) - {"webrtc", "mjpeg"}:
        print(f"polyp-live benchmark-web: error: --streams takes webrtc, mjpeg or both, not {args.streams!r}",
              file=sys.stderr)
        return 2
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("polyp-live benchmark-web: error: needs Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    counts = [int(v) for v in args.viewers.split(",")]
    with tempfile.TemporaryDirectory(prefix="polyp-live-web-bench-") as tmp:
        folder = Path(tmp)
        clip = counter_clip(str(DEMO_CLIP), folder / "demo-counter-720p.mp4", args.frames)
        rows = []
        for viewers in counts:
            for transport in (streams if viewers else ("-",)):
                row = run_one(clip, viewers, transport, folder, chromium, args.browser_nice)
                row["browser_nice"] = args.browser_nice
                print(json.dumps(row), flush=True)
                rows.append(row)
    machine = (f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, aiortc "
               f"{package_version('aiortc')}, PyAV {package_version('av')}, Chromium {chromium_version(chromium)}")
    table = markdown(rows, machine)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "runs": rows}, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
