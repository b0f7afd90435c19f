#!/usr/bin/env python3
"""Serve the polyp model to many rooms through NVIDIA Triton (PyTriton), or write a stock Triton repository.

Clients send the ROI resized to the model size as uint8 HxWx3 BGR (input "image"); the server
normalises it and runs the model with polyp-live's own backends, and answers the float16
probability map (output "probability"). Triton batches the requests of several rooms.

Examples (polyp-live-serve is the same command):
    polyp-live serve                                   # the bundled model on ports 8000/8001/8002
    polyp-live serve --model model.onnx --grpc-port 9001 --max-batch 8 --max-queue-delay-us 2000
    polyp-live --server grpc://SERVER:8001 --source /dev/video0
    polyp-live serve --triton-repository repo/         # for a site that already runs Triton
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from polyp_live.arguments import printable
from polyp_live.core.errors import PolypLiveError


def _port(text: str) -> int:
    from polyp_live.realtime.options import whole_number  # noqa: PLC0415 - light: argparse and the error classes
    value = whole_number(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from polyp_live.arguments import command_parser
    from polyp_live.engines.registry import BACKENDS, PRECISIONS
    from polyp_live.engines.triton_wire import MODEL_NAME
    from polyp_live.realtime.options import non_negative_int, positive_int
    from polyp_live.resources import bundled_model

    p = command_parser("serve", __doc__)
    p.add_argument("--model", default=str(bundled_model()), metavar="PATH",
                   help="model file (.onnx, .engine, .pt) with its sidecar; default: the bundled UNet++")
    p.add_argument("--backend", default="auto", choices=[b for b in BACKENDS if b != "triton"],
                   help="runtime inside the server (default: from the model's suffix)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="as for polyp-live (default auto)")
    p.add_argument("--threads", type=non_negative_int, default=0, metavar="N", help="CPU inference threads (0 = runtime default)")
    p.add_argument("--triton-model", default=MODEL_NAME, metavar="NAME", help=f"Triton model name (default {MODEL_NAME})")
    p.add_argument("--host", default="127.0.0.1", metavar="HOST",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the server to "
                        "every network this machine is on, and Triton has no access control of its own)")
    p.add_argument("--http-port", type=_port, default=8000, metavar="PORT", help="HTTP endpoint (default 8000)")
    p.add_argument("--grpc-port", type=_port, default=8001, metavar="PORT", help="gRPC endpoint, for clients (default 8001)")
    p.add_argument("--metrics-port", type=_port, default=8002, metavar="PORT", help="Prometheus metrics (default 8002)")
    p.add_argument("--max-batch", type=positive_int, default=8, metavar="N", help="largest dynamic batch (default 8)")
    p.add_argument("--max-queue-delay-us", type=non_negative_int, default=2000, metavar="US",
                   help="longest a request waits for others to batch with, microseconds (default 2000)")
    p.add_argument("--ready-timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for the model to load (default 120)")
    p.add_argument("--triton-repository", default=None, metavar="DIR",
                   help="instead of serving, write a stock Triton model repository (ONNX Runtime backend) into "
                        "DIR and exit; needs an .onnx --model")
    p.add_argument("--workspace", default=None, metavar="DIR",
                   help="a new folder for PyTriton's model store and copy of Triton (default: a fresh folder "
                        "under ~/.cache/pytriton, removed on a clean stop)")
    p.add_argument("--verbose", action="store_true", help="print Triton's own log")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``polyp-live-serve``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from polyp_live.arguments import check_output_folder
    check_output_folder(parser, "--triton-repository", args.triton_repository)

    def fail(message: str, code: int = 1) -> int:
        print(f"polyp-live serve: error: {printable(message)}", file=sys.stderr, flush=True)
        return code

    if len({args.http_port, args.grpc_port, args.metrics_port}) < 3:
        return fail("--http-port, --grpc-port and --metrics-port must differ", 2)
    if args.triton_repository:
        return _write_repository(args, fail)

    from polyp_live.engines.triton_server import ModelServer, ServeConfig

    config = ServeConfig(model=Path(args.model), backend=args.backend, precision=args.precision, threads=args.threads,
                         model_name=args.triton_model, host=args.host, http_port=args.http_port,
                         grpc_port=args.grpc_port, metrics_port=args.metrics_port, max_batch=args.max_batch,
                         max_queue_delay_us=args.max_queue_delay_us, ready_timeout=args.ready_timeout,
                         workspace=Path(args.workspace) if args.workspace else None, verbose=args.verbose)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame):
        # The first signal stops serving; later ones are ignored so the shutdown finishes cleanly.
        if not received:
            received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ModelServer(config) as server:
            if stop.is_set():
                return 128 + received[0]
            where = ("every interface (0.0.0.0); from this machine " if config.host in ("0.0.0.0", "::", "")
                     else "")
            print(f"serving model {config.model_name!r} ({server.backend.name}, {Path(args.model).name}) on {where}"
                  f"{server.grpc_url}  {server.http_url}  metrics {server.metrics_url}; "
                  f"max batch {config.max_batch}, queue delay {config.max_queue_delay_us} us", flush=True)
            server.wait(stop)
    except PolypLiveError as exc:
        return fail(str(exc))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:  # a requested stop is a clean stop: exit 0
        print(f"stopped by {signal.Signals(received[0]).name}", flush=True)
    return 0


def _write_repository(args: argparse.Namespace, fail) -> int:
    from polyp_live.engines.triton_repository import write_repository

    try:
        written = write_repository(args.model, args.triton_repository, model_name=args.triton_model,
                                   max_batch=args.max_batch, max_queue_delay_us=args.max_queue_delay_us)
    except PolypLiveError as exc:
        return fail(str(exc), 1)
    print(f"wrote Triton model repository {args.triton_repository}: {', '.join(str(p) for p in written)}")
    print(f"serve it with: tritonserver --model-repository {Path(args.triton_repository).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
