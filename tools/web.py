#!/usr/bin/env python3
"""The files page: upload a still or a short clip and see what the model outlines.

A still (JPEG, PNG) comes back outlined with its mask as PNG, and Dice and IoU when its ground-truth
mask is uploaded too; a clip (MP4, MKV, AVI) runs through polyp-live itself and comes back as an
H.264 MP4 and a ZIP of masks, with its progress shown while it runs. Same model, Segmenter and
decision as the live product. Binds 127.0.0.1 unless told otherwise; any other address needs the
access token (--token, or one generated and printed at start).

Examples:
    polyp-live web                        # http://127.0.0.1:8080/
    polyp-live web --port 9000 --model runs/release-8/model.onnx
    polyp-live web --host 0.0.0.0 --port 8080 --token ward-7-teaching
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from polyp_live.arguments import command_parser, printable


def build_parser() -> argparse.ArgumentParser:
    from polyp_live.realtime.options import non_negative_int, positive, positive_int
    from polyp_live.resources import bundled_model

    p = command_parser("web", __doc__)
    p.add_argument("--port", type=non_negative_int, default=8080, metavar="PORT",
                   help="port to listen on (default 8080; 0 = any free port, printed at start)")
    p.add_argument("--host", default="127.0.0.1", metavar="HOST",
                   help="address to listen on (default 127.0.0.1: this machine only; any other needs the token)")
    p.add_argument("--token", default=None, metavar="TEXT",
                   help="access token for every request (default: none on loopback, generated otherwise)")
    p.add_argument("--model", default=str(bundled_model()), metavar="PATH",
                   help="ONNX model with its sidecar (default: the bundled UNet++)")
    p.add_argument("--threads", type=non_negative_int, default=0, metavar="N",
                   help="CPU inference threads for stills (0 = runtime default)")
    p.add_argument("--max-upload-mb", type=positive_int, default=100, metavar="MB",
                   help="largest upload, all files together (default 100)")
    p.add_argument("--max-clip-seconds", type=positive, default=60.0, metavar="S",
                   help="longest clip accepted (default 60)")
    p.add_argument("--still-time-limit", type=positive, default=30.0, metavar="S",
                   help="seconds a still may take to decode and outline (default 30)")
    p.add_argument("--clip-time-limit", type=positive, default=600.0, metavar="S",
                   help="seconds a clip may take to go through polyp-live before it is stopped (default 600)")
    p.add_argument("--keep-results", type=positive, default=600.0, metavar="S",
                   help="seconds a clip's results stay downloadable after it ends (default 600)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``polyp-live web``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from polyp_live.core.errors import UsageError
    from polyp_live.realtime.web.security import parse_web_address, require_aiohttp
    try:
        require_aiohttp("polyp-live web")
        address = parse_web_address(f"{args.host}:{args.port}", args.token, option="--port")
    except UsageError as exc:
        parser.error(str(exc))
    from polyp_live.core.errors import PolypLiveError
    from polyp_live.engines.registry import load_backend
    from polyp_live.core.config import PipelineConfig
    from polyp_live.core.segmenter import Segmenter
    from polyp_live.realtime.web.files_server import FilesPage
    from polyp_live.realtime.web.uploads import Limits

    try:
        backend = load_backend(args.model, threads=args.threads)
    except (PolypLiveError, OSError) as exc:
        print(f"polyp-live web: error: {printable(str(exc))}", file=sys.stderr, flush=True)
        return 1
    limits = Limits(args.max_upload_mb * 1024 * 1024, args.max_clip_seconds, args.still_time_limit,
                    args.clip_time_limit, args.keep_results)
    page = FilesPage(Segmenter(backend, PipelineConfig()), args.model, address.token, limits)
    try:
        return asyncio.run(_serve(page, address))
    finally:
        backend.close()


async def _serve(page, address) -> int:
    """Serve until SIGINT or SIGTERM; 0 on such a stop, 2 when the address cannot be bound."""
    from aiohttp import web
    from polyp_live.core.errors import UsageError
    from polyp_live.realtime.web.security import WebAddress, listen
    runner = web.AppRunner(page.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        port = await listen(runner, address, "--port")
    except UsageError as exc:
        print(f"polyp-live web: error: {exc}", file=sys.stderr, flush=True)
        return 2
    url = WebAddress(address.host, port, address.token).url
    note = " (token generated for this run: share it only with the viewers)" if address.generated else ""
    print(f"files page: {url}{note}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    print("files page stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
