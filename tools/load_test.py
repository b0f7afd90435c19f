#!/usr/bin/env python3
"""Load-test a polyp-live Triton server: N simulated rooms, each sending frames at a fixed rate.

Each room is a thread with its own gRPC connection that sends real images (resized to the model
size with the shared resize_for_model, as the live client does) at --fps for --duration seconds,
one request in flight at a time, like a camera feeding polyp-live: a frame whose slot has passed
while the previous answer was pending is skipped, as the live path would drop it. Reports per room
the achieved rate, latency p50/p95/p99, errors and timeouts, and from Triton's metrics endpoint the
mean server-side batch size (nv_inference_request_success / nv_inference_exec_count) and queue
time; writes JSON and a PNG of latency against the number of rooms.

Example (server first: polyp-live serve, on the same or another machine):
    python tools/load_test.py --server grpc://localhost:8001 --metrics http://localhost:8002/metrics \
        --rooms 1,2,4,8 --fps 30 --duration 30 --data ../shared/data/kvasir-seg/images --out runs/load
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from polyp_live.core.errors import MissingFile, InvalidValue
from polyp_live.tools.benchmark import percentiles
from polyp_live.arguments import printable

METRIC = re.compile(r'^(nv_inference_\w+)\{([^}]*)\}\s+([0-9.eE+-]+)\s*$')
COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_exec_count",
            "nv_inference_count", "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us")


@dataclass
class RoomResult:
    """One simulated room's outcome over one step."""

    room: int
    sent: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    rate: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    first_error: str = ""


def read_images(folder: str, spec, count: int) -> list[np.ndarray]:
    """Up to ``count`` images from ``folder``, resized for the model exactly as the live client does."""
    import cv2

    from polyp_live.core.preprocess import resize_for_model

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if not paths:
        raise MissingFile(f"no images in {folder}; pass --data with a folder of .jpg/.png frames")
    images = []
    for path in paths[:count]:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            images.append(np.ascontiguousarray(resize_for_model(image, spec))[None])
    return images


def scrape(url: str | None, model: str) -> dict[str, float]:
    """Sum Triton's counters for ``model`` (all versions); empty when no metrics URL is given or reachable."""
    if not url:
        return {}
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if m and m.group(1) in COUNTERS and f'model="{model}"' in m.group(2):
            totals[m.group(1)] = totals.get(m.group(1), 0.0) + float(m.group(3))
    return totals


def run_room(index: int, address: str, model: str, images: list[np.ndarray], fps: float, duration: float,
             timeout: float, start_at: float, result: RoomResult) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from polyp_live.engines.triton_wire import INPUT_NAME, INPUT_TRITON_TYPE, OUTPUT_NAME

    with grpcclient.InferenceServerClient(address) as client:
        request = grpcclient.InferInput(INPUT_NAME, list(images[0].shape), INPUT_TRITON_TYPE)
        wanted = [grpcclient.InferRequestedOutput(OUTPUT_NAME)]
        period = 1.0 / fps
        # Rooms start a fraction of a period apart, as independent cameras would.
        t0 = start_at + (index * period / 7.0) % period
        end = start_at + duration
        slot = 0
        while True:
            due = t0 + slot * period
            if due >= end:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            request.set_data_from_numpy(images[(index * 7 + slot) % len(images)])
            sent = time.perf_counter()
            result.sent += 1
            try:
                client.infer(model, [request], outputs=wanted, client_timeout=timeout)
                result.ok += 1
                result.latency_ms.append(1000.0 * (time.perf_counter() - sent))
            except InferenceServerException as exc:
                if "DEADLINE_EXCEEDED" in str(exc.status()):
                    result.timeouts += 1
                else:
                    result.errors += 1
                    result.first_error = result.first_error or (exc.message() or str(exc)).splitlines()[0][:160]
            next_slot = int((time.perf_counter() - t0) / period) + 1
            result.skipped += max(0, next_slot - slot - 1)
            slot = max(slot + 1, next_slot)
        result.rate = result.ok / duration


def run_step(args, address: str, images, rooms: int) -> dict:
    results = [RoomResult(i) for i in range(rooms)]
    before = scrape(args.metrics, args.triton_model)
    start_at = time.perf_counter() + 0.5
    threads = [threading.Thread(target=run_room, args=(i, address, args.triton_model, images, args.fps, args.duration,
                                                       args.timeout, start_at, results[i]), daemon=True)
               for i in range(rooms)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + args.timeout + 30)
    after = scrape(args.metrics, args.triton_model)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    all_latency = [v for r in results for v in r.latency_ms]
    server = {}
    if delta.get("nv_inference_exec_count"):
        server["mean_batch"] = delta.get("nv_inference_count", delta.get("nv_inference_request_success", 0.0)) \
            / delta["nv_inference_exec_count"]
        server["executions"] = delta["nv_inference_exec_count"]
    if delta.get("nv_inference_request_success"):
        n = delta["nv_inference_request_success"]
        server["queue_ms"] = delta.get("nv_inference_queue_duration_us", 0.0) / n / 1000.0
        server["compute_ms"] = delta.get("nv_inference_compute_infer_duration_us", 0.0) / n / 1000.0
        server["failures"] = delta.get("nv_inference_request_failure", 0.0)
    return {"rooms": rooms, "fps": args.fps, "duration_s": args.duration,
            "latency_ms": percentiles(all_latency),
            "min_room_rate": min(r.rate for r in results), "mean_room_rate": float(np.mean([r.rate for r in results])),
            "errors": sum(r.errors for r in results), "timeouts": sum(r.timeouts for r in results),
            "skipped": sum(r.skipped for r in results), "server": server,
            "per_room": [{**{k: v for k, v in asdict(r).items() if k != "latency_ms"},
                          "latency_ms": percentiles(r.latency_ms)} for r in results]}


def sustained(steps: list[dict], fps: float, p95_limit: float) -> int:
    """The most rooms for which every room kept 95 % of its rate with p95 under the limit and no failures."""
    best = 0
    for s in sorted(steps, key=lambda s: s["rooms"]):
        p95 = s["latency_ms"]["p95"]
        if (s["min_room_rate"] >= 0.95 * fps and p95 is not None and p95 < p95_limit
                and not s["errors"] and not s["timeouts"]):
            best = s["rooms"]
        else:
            break
    return best


def plot(steps: list[dict], path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rooms = [s["rooms"] for s in steps]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^--")):
        ax.plot(rooms, [s["latency_ms"][key] or np.nan for s in steps], style, label=key)
    ax.set_xscale("log", base=2)
    ax.set_xticks(rooms, [str(r) for r in rooms])
    ax.set_xlabel("rooms (clients at %g fps each)" % steps[0]["fps"])
    ax.set_ylabel("round-trip latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def markdown(steps: list[dict]) -> str:
    lines = ["| rooms | min room fps | p50 ms | p95 ms | p99 ms | errors | timeouts | skipped | server batch | queue ms |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    for s in steps:
        lat, srv = s["latency_ms"], s["server"]
        lines.append(f"| {s['rooms']} | {s['min_room_rate']:.1f} | {f(lat['p50'])} | {f(lat['p95'])} | "
                     f"{f(lat['p99'])} | {s['errors']} | {s['timeouts']} | {s['skipped']} | "
                     f"{f(srv.get('mean_batch'), '{:.2f}')} | {f(srv.get('queue_ms'), '{:.2f}')} |")
    return "\n".join(lines)


def build_parser():
    """``polyp-live load-test``'s options."""
    from polyp_live.arguments import DEFAULT_DATA, command_parser
    from polyp_live.engines.triton_wire import MODEL_NAME

    p = command_parser("load-test", __doc__)
    p.add_argument("--server", default="grpc://localhost:8001", metavar="URL", help="Triton gRPC endpoint")
    p.add_argument("--metrics", default=None, metavar="URL",
                   help="Triton metrics endpoint, e.g. http://localhost:8002/metrics (for server batch sizes)")
    p.add_argument("--triton-model", default=MODEL_NAME, metavar="NAME",
                   help=f"model name on the server (default {MODEL_NAME})")
    p.add_argument("--rooms", default="1,2,4,8", metavar="N,N,...", help="comma-separated room counts, one step each (default 1,2,4,8)")
    p.add_argument("--fps", type=float, default=30.0, metavar="N", help="frames per second each room sends (default 30)")
    p.add_argument("--duration", type=float, default=30.0, metavar="S", help="seconds per step (default 30)")
    p.add_argument("--timeout", type=float, default=1.0, metavar="S", help="request timeout (default 1.0)")
    p.add_argument("--data", default=f"{DEFAULT_DATA}/images", metavar="DIR",
                   help=f"folder of frames to send (default {DEFAULT_DATA}/images)")
    p.add_argument("--images", type=int, default=64, metavar="N", help="distinct images cycled through (default 64)")
    p.add_argument("--p95-limit", type=float, default=100.0, metavar="MS",
                   help="latency limit for the 'rooms sustained' verdict (default 100)")
    p.add_argument("--out", default="runs/load", metavar="DIR", help="where load_test.json and load_test.png go")
    return p


def main(argv=None) -> int:
    """``polyp-live load-test``: step through room counts against a Triton server, report and plot."""
    from polyp_live.arguments import check_dataset
    from polyp_live.commands import require_extra

    p = build_parser()
    args = p.parse_args(argv)
    require_extra("load-test", ("tritonclient.grpc",))  # the rooms are Triton clients: needed for any run
    check_dataset(p, "--data", args.data, "frames")

    from polyp_live.core.errors import PolypLiveError
    from polyp_live.engines.triton_backend import TritonBackend, parse_server

    try:
        rooms = [int(r) for r in args.rooms.split(",") if r.strip()]
        if not rooms or min(rooms) < 1 or args.fps <= 0 or args.duration <= 0:
            raise InvalidValue("--rooms needs positive counts, --fps and --duration positive values")
        address = parse_server(args.server)
        with TritonBackend(args.server, args.triton_model, timeout=max(args.timeout, 5.0)) as probe:
            spec = probe.spec
            images = read_images(args.data, spec, args.images)
            for image in images[:3]:  # warm-up: first requests pay for connection set-up and allocation
                probe.infer(image)
    except (PolypLiveError, OSError) as exc:
        print(f"polyp-live load-test: error: {printable(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1

    steps = []
    for n in rooms:
        step = run_step(args, address, images, n)
        steps.append(step)
        lat = step["latency_ms"]
        print(f"{n} rooms: min room {step['min_room_rate']:.1f} fps, p50/p95/p99 "
              f"{lat['p50'] or float('nan'):.1f}/{lat['p95'] or float('nan'):.1f}/{lat['p99'] or float('nan'):.1f} ms, "
              f"errors {step['errors']}, timeouts {step['timeouts']}, server batch "
              f"{step['server'].get('mean_batch', float('nan')):.2f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best = sustained(steps, args.fps, args.p95_limit)
    report = {"server": args.server, "model": args.triton_model, "input": [spec.input_height, spec.input_width, 3],
              "images": len(images), "p95_limit_ms": args.p95_limit, "rooms_sustained": best, "steps": steps}
    (out / "load_test.json").write_text(json.dumps(report, indent=2) + "\n")
    title = f"{args.triton_model} {spec.input_height}x{spec.input_width}, {args.fps:g} fps per room, {args.duration:g} s"
    png = out / "load_test.png"
    drew = plot(steps, png, title)
    print(markdown(steps))
    print(f"rooms sustained at {args.fps:g} fps with p95 < {args.p95_limit:g} ms: {best}")
    print(f"wrote {out / 'load_test.json'}" + (f" and {png}" if drew else " (no PNG: matplotlib missing)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
