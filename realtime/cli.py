"""polyp-live: outline polyps live in an endoscope feed or a recorded procedure.

Examples:
    polyp-live --source demo --record out.mp4
    polyp-live --source /dev/video0
    polyp-live --source clip.mp4 --record out.mp4 --stats-json stats.json
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

# Only light imports at module level: NumPy, OpenCV and ONNX Runtime load inside main(), after the
# signal guard is in place, so a Ctrl+C during them is neither a traceback nor a wrong diagnosis.
from polyp_live.arguments import quiet_native_logs, refuse_overwriting_inputs
from polyp_live.realtime import options
from polyp_live.realtime.interrupts import Interrupted, SignalGuard
from polyp_live.resources import bundled_model, demo_clip
from polyp_live.core.errors import printable

if TYPE_CHECKING:  # for the annotation only: the config module loads NumPy
    from polyp_live.core.config import PipelineConfig

DEFAULT_MODEL = bundled_model()
DEMO_CLIP = demo_clip()


def build_parser() -> argparse.ArgumentParser:
    from polyp_live.engines.registry import BACKENDS, PRECISIONS
    from polyp_live.realtime.render import STYLES
    from polyp_live.core.smoothing import SMOOTHING_MODES

    from polyp_live.arguments import command_parser
    from polyp_live.commands import usage

    p = command_parser("", __doc__)
    p.epilog = usage()
    _source_options(p.add_argument_group("source"))
    _model_options(p.add_argument_group("model"), BACKENDS, PRECISIONS)
    _segmentation_options(p.add_argument_group("segmentation"), SMOOTHING_MODES)
    _output_options(p.add_argument_group("output"), STYLES)
    web = p.add_argument_group("browser view (the [web] extra)")
    web.add_argument("--web", default=None, metavar="[HOST:]PORT",
                     help="also serve the annotated video, the live panel and the controls to browsers: WebRTC with an "
                          "MJPEG fallback (/stream.mjpg); HOST defaults to 127.0.0.1; any other address needs a token")
    web.add_argument("--web-token", default=None, metavar="TOKEN",
                     help="the access token the page asks for (default: none on 127.0.0.1, generated and printed on "
                          "any other address)")
    return p


def _source_options(src) -> None:
    src.add_argument("--source", default="demo", metavar="SOURCE",
                     help="camera index (0), device (/dev/video0), video file, image folder or glob, "
                          "rtsp:// or http:// URL, or 'demo' for the bundled clip (default)")
    src.add_argument("--fps", type=options.non_negative, default=0.0, metavar="FPS", help="frame rate of an image folder (default 30)")
    src.add_argument("--realtime", action="store_true",
                     help="pace a file at its native FPS and drop late frames, like a live feed")
    src.add_argument("--loop", action="store_true", help="replay a file or image folder endlessly")
    src.add_argument("--max-frames", type=options.non_negative_int, default=0, metavar="N", help="stop after N frames (0 = no limit)")
    src.add_argument("--reconnect-timeout", type=options.non_negative, default=10.0, metavar="S",
                     help="seconds to keep reconnecting a lost camera or stream before giving up (default 10)")


def _model_options(mod, backends, precisions) -> None:
    mod.add_argument("--model", default=str(DEFAULT_MODEL), metavar="PATH", help="model file (.onnx, .pt); default: the bundled UNet++")
    mod.add_argument("--backend", default="auto", choices=backends, help="inference runtime (default: from the suffix)")
    mod.add_argument("--precision", default="auto", choices=precisions,
                     help="auto (fp32 on ONNX Runtime, fp16 on TensorRT), or fp32, fp16 (TensorRT), int8 "
                          "(the model's .int8.onnx on the CPU, a Q/DQ engine on TensorRT)")
    mod.add_argument("--threads", type=options.non_negative_int, default=0, metavar="N", help="CPU inference threads (0 = runtime default)")
    mod.add_argument("--server", default=None, metavar="URL",
                     help="inference server for --backend triton (implied by --server): grpc://HOST:PORT, "
                          "e.g. grpc://localhost:8001 (started with polyp-live-serve)")
    mod.add_argument("--triton-model", default="polyp", metavar="NAME", help="model name on the server (default polyp)")
    mod.add_argument("--server-timeout", type=options.positive, default=1.0, metavar="S",
                     help="seconds before a server request counts as lost (default 1.0)")
    mod.add_argument("--server-wait", type=options.non_negative, default=60.0, metavar="S",
                     help="at start, seconds to wait for a server that is still starting or loading its model "
                          "(default 60)")


def _segmentation_options(seg, smoothing_modes) -> None:
    seg.add_argument("--roi", type=options.roi, default="auto", metavar="ROI", help="field of view: auto, full or x,y,w,h (default auto)")
    seg.add_argument("--smoothing", default="confidence", choices=smoothing_modes, help="temporal smoothing (default confidence)")
    seg.add_argument("--smoothing-strength", type=options.fraction, default=0.6, metavar="F", help="0 follows each frame, towards 1 keeps the past (default 0.6)")
    seg.add_argument("--threshold", type=options.unit, default=None, metavar="P", help="switch-on probability (default: the model's)")
    seg.add_argument("--threshold-low", type=options.unit, default=None, metavar="P", help="switch-off probability (default threshold - 0.15)")
    seg.add_argument("--score-threshold", type=options.unit, default=None, metavar="P",
                     help="presence decision: a region's peak probability must reach P (default: the model's "
                          "operating point)")
    seg.add_argument("--persistence", type=options.persistence, default=None, metavar="K/N",
                     help="raise the alert after a polyp on K of the last N frames (default: the model's)")
    seg.add_argument("--min-area", type=options.non_negative_int, default=300, metavar="N", help="drop regions smaller than this many pixels (default 300)")
    seg.add_argument("--no-fill-holes", action="store_true", help="keep holes inside regions")


def _output_options(out, styles) -> None:
    out.add_argument("--overlay", default="both", choices=styles, help="overlay style (default both)")
    out.add_argument("--no-hud", action="store_true", help="hide FPS, latency and the polyp indicator")
    out.add_argument("--max-annotation-age", type=options.positive, default=250.0, metavar="MS",
                     help="live and --realtime: do not draw a mask computed on a frame older than this; the HUD "
                          "says the annotation is stale (default 250)")
    out.add_argument("--motion-shift", action="store_true",
                     help="live and --realtime: move a mask computed on an earlier frame by the camera's motion since")
    view = out.add_mutually_exclusive_group()
    view.add_argument("--display", action="store_true", help="open a window (q/Esc quit, space pause, o overlay, s snapshot)")
    view.add_argument("--headless", action="store_true", help="no window (automatic when no display exists)")
    out.add_argument("--record", default=None, metavar="PATH",
                     help="write the annotated video here: H.264 in .mp4, .mkv or .mov, true timestamps")
    out.add_argument("--save-masks", default=None, metavar="DIR", help="write one PNG mask per frame into DIR")
    out.add_argument("--stats-json", default=None, metavar="PATH", help="write the timing summary as JSON")
    out.add_argument("--report", default=None, metavar="PATH",
                     help="write the procedure report at the end of the run (also on Ctrl+C, SIGTERM or a lost source): "
                          "PATH.html a self-contained page (appearances, thumbnails, timeline, figures), PATH.json the "
                          "same as data")
    out.add_argument("--appearance-gap", type=options.non_negative, default=0.5, metavar="S",
                     help="a polyp appearance survives this many seconds without its region (default 0.5)")
    out.add_argument("--snapshot-dir", default=".", metavar="DIR", help="where the s key saves snapshots")
    out.add_argument("--quiet", action="store_true", help="no live table in the terminal")
    out.add_argument("--verbose", action="store_true", help="also show OpenCV's and FFmpeg's own log messages")


def _decision_overrides(args: argparse.Namespace) -> dict | None:
    """Options that override the sidecar's operating point (None: use it as stored)."""
    k, n = args.persistence or (None, None)
    overrides = {"score_threshold": args.score_threshold, "k": k, "n": n}
    return overrides if any(v is not None for v in overrides.values()) else None


def make_config(args: argparse.Namespace, display: bool) -> PipelineConfig:
    from polyp_live.core.config import (OutputConfig, PipelineConfig, PostprocessConfig, RenderConfig,
                                            SmoothingConfig, SourceConfig)
    from polyp_live.core.roi import parse_roi
    return PipelineConfig(
        source=SourceConfig(source=args.source, fps=args.fps, realtime=args.realtime, loop=args.loop,
                            max_frames=args.max_frames, reconnect_timeout=args.reconnect_timeout),
        roi=parse_roi(args.roi),
        smoothing=SmoothingConfig(mode=args.smoothing, strength=args.smoothing_strength,
                                  threshold=args.threshold, threshold_low=args.threshold_low),
        postprocess=PostprocessConfig(min_area=args.min_area, fill_holes=not args.no_fill_holes),
        decision=_decision_overrides(args),
        render=RenderConfig(style=args.overlay, hud=not args.no_hud, max_annotation_age_ms=args.max_annotation_age,
                            motion_shift=args.motion_shift),
        output=OutputConfig(record=args.record, save_masks=args.save_masks, stats_json=args.stats_json,
                            snapshot_dir=args.snapshot_dir, report=args.report),
        appearance_gap_s=args.appearance_gap, display=display, web=bool(args.web), quiet=args.quiet)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``polyp-live`` command; returns the process exit code.

    ``polyp-live COMMAND ...`` (train, quantize, ...) runs that tool; anything else is the live product.
    """
    from polyp_live.commands import dispatch
    code = dispatch(sys.argv[1:] if argv is None else argv)
    if code is not None:
        return code
    with SignalGuard() as signals:  # first of all: before the heavy imports in _main
        try:
            code = _main(argv, signals)
        except Interrupted:
            sys.stderr.write(f"polyp-live: stopped by {signals.name} before the first frame\n")
            code = signals.exit_code
    if argv is None:  # the program itself, not a caller passing its own arguments (tests)
        _leave_if_a_device_call_hangs(code)
    return code


def _leave_if_a_device_call_hangs(code: int) -> None:
    """Exit at once if a capture thread is still blocked inside OpenCV (a stalled stream).

    Python's shutdown unwinds such a thread through C++ frames and aborts the process (exit -6
    instead of ``code``). By now everything is written, finalised and closed, so nothing is lost.
    """
    live_source = sys.modules.get("polyp_live.realtime.live_source")
    if live_source is None or live_source.wait_for_native_calls(0.5):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(argv: list[str] | None, signals: SignalGuard) -> int:
    from rich.markup import escape

    from polyp_live.core.errors import PolypLiveError, UsageError
    from polyp_live.engines.registry import load_backend
    from polyp_live.realtime import terminal
    from polyp_live.realtime.pipeline import Pipeline
    from polyp_live.realtime.sources import open_source

    parser = build_parser()
    args = parser.parse_args(argv)
    options.validate(parser, args)
    quiet_native_logs(args.verbose)
    signals.check()
    console = terminal.console(stderr=True)  # no 80-column wrap in a log or a pipe

    def fail(message: str, code: int = 1) -> int:
        return _fail(console, message, code)

    try:
        display, web_address = _check_options(args)
    except UsageError as exc:
        return fail(str(exc), 2)
    args.threads, warning = options.cap_threads(args.threads)
    if warning:
        console.print(f"polyp-live: warning: {escape(warning)}", highlight=False, soft_wrap=True)
    backend = pipeline = None  # what the handlers below must close or report
    try:
        config = make_config(args, display)
        source = open_source(args.source, args.fps, config.source.max_consecutive_corrupt)
        _check_outputs(args, source)
        signals.check()
        backend = load_backend(args.model, args.backend, threads=args.threads, precision=args.precision,
                               server=args.server, triton_model=args.triton_model,
                               server_timeout=args.server_timeout, server_wait=args.server_wait,
                               notify=lambda line: console.print(escape(line), highlight=False))
        signals.check()
        options.check_threshold_low(args.threshold_low, args.threshold if args.threshold is not None
                                    else backend.spec.threshold)
        pipeline = Pipeline(config, source, backend)
        signals.source, signals.pipeline = source, pipeline
        signals.check()
        # From here the guard's first signal stops the run (and interrupts a stream still opening);
        # every later one only repeats that, so the recording is always finalised.
        signals.started = True
        _run(pipeline, display, web_address, args.quiet, console, signals)
    except (PolypLiveError, OSError) as exc:
        if signals.signum is not None and (pipeline is None or not pipeline.stats.counters["frames_out"]):
            raise Interrupted(signals.signum) from None  # what failed was cut short by the signal
        if pipeline is not None and pipeline.stats.counters["frames_out"]:
            console.print(pipeline.stats.summary_table())
        if isinstance(exc, OSError) and not isinstance(exc, PolypLiveError):
            return fail(_os_error_message(exc, args))
        return fail(str(exc), 2 if isinstance(exc, UsageError) else 1)
    finally:
        if backend is not None:
            backend.close()
    return _report_end(pipeline, signals, console)


def _fail(console, message: str, code: int = 1) -> int:
    """Print one error line; return the exit code."""
    from rich.markup import escape
    # Escaped: a path like x[/].mp4 or a hint like 'polyp-live[train]' is text, not rich markup.
    console.print(f"[bold red]polyp-live: error:[/bold red] {escape(printable(message))}", highlight=False,
                  soft_wrap=True)
    return code


def _check_options(args: argparse.Namespace) -> tuple[bool, object]:
    """The checks that need no file opened: (whether a window opens, the --web address or None).

    Raises:
        UsageError: options that cannot work together, or with this machine (exit 2).
    """
    from polyp_live.core.errors import UsageError
    from polyp_live.realtime.display import display_available

    if args.source == "demo":
        args.source = str(DEMO_CLIP)
    if args.display and not display_available():
        raise UsageError("--display needs a screen but none was found ($DISPLAY is unset); use --headless or --record")
    display = args.display or (not args.headless and display_available())
    if args.server and args.backend == "auto":
        args.backend = "triton"
    if args.server and args.backend != "triton":
        raise UsageError(f"--server is for --backend triton, not --backend {args.backend}")
    if args.backend == "triton" and not args.server:
        raise UsageError("--backend triton needs --server grpc://HOST:PORT (the server's gRPC endpoint)")
    if not (args.web or args.web_token):
        return display, None
    from polyp_live.realtime.web.security import parse_web_address, require_aiohttp
    if not args.web:
        raise UsageError("--web-token is for --web [HOST:]PORT")
    require_aiohttp()
    return display, parse_web_address(args.web, args.web_token)


def _check_outputs(args: argparse.Namespace, source) -> None:
    """Before anything is written: no output may replace what this run reads, and each must be writable."""
    from polyp_live.core.errors import UsageError
    from polyp_live.core.spec import ModelSpec

    refuse_overwriting_inputs(
        {"--record": args.record, "--save-masks": args.save_masks, "--stats-json": args.stats_json,
         "--report": args.report},
        source.input_paths(), [Path(args.model), ModelSpec.sidecar_path(args.model)])
    if args.stats_json:
        options.check_stats_path(args.stats_json)
    if args.report:
        if Path(args.report).suffix.lower() not in (".html", ".htm", ".json"):
            raise UsageError(f"--report {args.report} must end in .html (a page) or .json (data)")
        options.check_stats_path(args.report, "--report", "report.html")


def _run(pipeline, display: bool, web_address, quiet: bool, console, signals: SignalGuard) -> None:
    """Start the pipeline with its window and web view, watch it to its end, close everything, and
    re-raise a stage's failure here."""
    from polyp_live.realtime.display import Window

    web = window = None
    try:
        if web_address is not None:
            web = _start_web(web_address, pipeline, console)
        pipeline.start()
        window = Window(pipeline.view, pipeline.config.output.snapshot_dir) if display else None
        _watch(pipeline, window, web, quiet, console)
    except KeyboardInterrupt:
        signals.signum = signals.signum or signal.SIGINT
    finally:
        if window:
            window.close()
        if web is not None:
            web.close()
        pipeline.close()
    pipeline.raise_if_failed()


def _watch(pipeline, window, web, quiet: bool, console) -> None:
    """The main thread while the pipeline runs: the window's events, state lines, the live table."""
    from rich.live import Live
    from rich.markup import escape

    from polyp_live.core.errors import StageError

    live = Live(pipeline.stats.live_table(), console=console, refresh_per_second=2, transient=True) \
        if not quiet and console.is_terminal else None
    if live:
        live.start()
    try:
        shown_status, next_table = "", 0.0
        while pipeline.poll(0.01 if window else 0.1):
            if pipeline.status() != shown_status:  # "signal lost: reconnecting ..."
                shown_status = pipeline.status()
                if shown_status:
                    console.print(escape(shown_status), highlight=False)
            if window:
                window.tick()
            if web is not None and web.failure() is not None:
                raise StageError("web view", web.failure())
            if live and time.monotonic() >= next_table:
                # The table refreshes twice a second; building it on every 10 ms tick costs CPU.
                live.update(pipeline.stats.live_table())
                next_table = time.monotonic() + 0.5
    finally:
        if live:
            live.stop()


def _report_end(pipeline, signals: SignalGuard, console) -> int:
    """The summary, the recording, what the source skipped, and how the run was stopped: the exit code."""
    from rich.markup import escape

    console.print(pipeline.stats.summary_table())
    recorder = pipeline.recorder
    if recorder is not None and recorder.finalised:
        console.print(f"recording: {recorder.path} ({recorder.frames} frames, H.264, {recorder.fps:.3f} FPS "
                      "timebase)", highlight=False)
    for note in _source_notes(pipeline):
        console.print(escape(note), highlight=False, soft_wrap=True)
    if signals.signum is not None:
        done = "; the recording is finalised" if recorder is not None and recorder.finalised else ""
        console.print(f"stopped by {signals.name}{done}", highlight=False)
        return signals.exit_code
    return 0


def _start_web(address, pipeline, console):
    """Start the browser view of ``pipeline`` and say where it is (with its token when it has one)."""
    from rich.markup import escape

    from polyp_live.realtime.recorder import SHAREABLE_CODECS
    from polyp_live.realtime.web.live_server import WebView, live_panel
    output = pipeline.config.output
    web = WebView(address, pipeline.view, live_panel(pipeline), pipeline.source.fps,
                  share_recording=bool(output.record) and output.record_codec in SHAREABLE_CODECS)
    web.start()
    note = " (token generated for this run: share it only with the viewers)" if address.generated else ""
    console.print(f"web view: {escape(web.url)}{note}", highlight=False, soft_wrap=True)
    return web


def _source_notes(pipeline) -> list[str]:
    """What the source skipped or lacked, said once at exit."""
    notes = []
    damaged = pipeline.stats.counters.get("corrupt", 0)
    if damaged:
        notes.append(f"{damaged} damaged frame{'s' if damaged != 1 else ''} skipped")
    if getattr(pipeline.source, "ended_early", None):
        notes.append(pipeline.source.ended_early)
    return notes


def _os_error_message(exc: OSError, args: argparse.Namespace) -> str:
    """One line for a file-system failure, naming the output option when it is one of ours."""
    what = exc.strerror or type(exc).__name__
    if exc.filename and args.stats_json and Path(exc.filename).resolve() == Path(args.stats_json).resolve():
        return f"cannot write --stats-json {args.stats_json} ({what}); free space or choose another path"
    return f"{exc.filename}: {what}; check the path, its permissions and the free space" if exc.filename else what


if __name__ == "__main__":
    sys.exit(main())
