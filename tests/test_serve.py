"""Serving through Triton: a real PyTriton server (one per session), the client backend, the repository.

The server runs in a subprocess (signals and kills go to it). PyTriton 0.7 needs numpy<2, so the
server's interpreter may differ from the test's: ``POLYP_LIVE_SERVE_PYTHON`` names one with the
``[serve]`` extra (``.ci/run`` builds it); without it, this interpreter if PyTriton works here,
else the repository's ``.venv-serve`` (the README's server environment), else the server tests
skip. The client side needs only ``tritonclient``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, decode, make_brightness_model, moving_disc_frames, write_video

grpcclient = pytest.importorskip("tritonclient.grpc", reason="needs tritonclient: pip install 'polyp-live[triton-client]'")
from tritonclient.utils import InferenceServerException  # noqa: E402

from polyp_live.core.errors import InferenceUnavailable  # noqa: E402
from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from polyp_live.core.spec import ModelSpec  # noqa: E402
from polyp_live.core.preprocess import preprocess, resize_for_model  # noqa: E402
from polyp_live.engines.triton_backend import LOST_STATUS, TritonBackend  # noqa: E402
from polyp_live.realtime.cli import main  # noqa: E402

# Per-channel mean/std that differ, so a wrong colour order or normalisation anywhere on the served
# path changes the probabilities; threshold 0.45 (not 0.5) proves the client takes the server's spec.
SERVED_SPEC = ModelSpec(input_height=32, input_width=32, color_order="RGB", mean=(0.1, 0.3, 0.5),
                        std=(0.6, 0.4, 0.2), output="probability", threshold=0.45, input_name="image")
START_TIMEOUT = 240.0    # bounds a hung start on a loaded 2-core machine; not a speed requirement


def serve_python() -> str | None:
    """An interpreter that can run the PyTriton server, or None."""
    named = os.environ.get("POLYP_LIVE_SERVE_PYTHON")
    if named:
        return named
    try:
        import pytriton  # noqa: F401

        from polyp_live.engines.triton_server import check_numpy_abi
        check_numpy_abi()
    except Exception:  # noqa: BLE001 - missing PyTriton or numpy 2: no server from this interpreter
        beside = ROOT / ".venv-serve" / "bin" / "python"  # the README's server environment
        return str(beside) if beside.is_file() else None
    return sys.executable


def free_ports(n: int) -> list[int]:
    """``n`` different free ports: each socket stays bound until all are chosen, since a port closed at
    once can be handed out again by the next bind (seen on one CI machine)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


class ServerProcess:
    """``polyp-live-serve`` in its own process group, so a kill takes Triton and its stub with it."""

    def __init__(self, python: str, model: Path, workdir: Path):
        self.python, self.model, self.workdir = python, model, workdir
        self.ports = dict(zip(("http", "grpc", "metrics"), free_ports(3)))
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.lines: queue.Queue = queue.Queue()

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.ports['grpc']}"

    def start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen(
            [self.python, "-m", "polyp_live.tools.serve", "--model", str(self.model), "--host", "127.0.0.1",
             "--http-port", str(self.ports["http"]), "--grpc-port", str(self.ports["grpc"]),
             "--metrics-port", str(self.ports["metrics"]), "--max-batch", "4", "--max-queue-delay-us", "500",
             "--workspace", str(self.workdir / f"workspace-{self.starts}")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        lines = self.lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        seen = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if line.startswith("serving"):
                return
        self.kill()
        raise RuntimeError("polyp-live-serve did not start:\n" + "".join(seen[-20:]))

    def kill(self) -> None:
        """SIGKILL the whole group: a crashed server, nothing shut down cleanly."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            # PyTriton names its shared-memory tensor store after the server's pid; a kill leaves it.
            for leftover in Path("/dev/shm").glob(f"pytrtion{self.proc.pid}-*"):
                leftover.unlink(missing_ok=True)

    def terminate(self) -> int:
        """SIGTERM to the server: the clean stop. Returns its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.kill()  # anything left behind after a failed clean stop


@pytest.fixture(scope="session")
def served_model(tmp_path_factory) -> Path:
    return make_brightness_model(tmp_path_factory.mktemp("served") / "bright.onnx", spec=SERVED_SPEC)


def probe_images() -> list[np.ndarray]:
    """Moving-disc frames at model size plus solid colours whose probability depends on channel order."""
    images = [resize_for_model(f, SERVED_SPEC) for f in moving_disc_frames(4)]
    for bgr in ((200, 100, 30), (30, 100, 200), (90, 160, 120)):
        images.append(np.full((32, 32, 3), bgr, np.uint8))
    return images


@pytest.fixture(scope="session")
def server(tmp_path_factory, served_model):
    python = serve_python()
    if python is None:
        pytest.skip("no interpreter with a working PyTriton (needs the [serve] extra and numpy<2); "
                    "set POLYP_LIVE_SERVE_PYTHON")
    proc = ServerProcess(python, served_model, tmp_path_factory.mktemp("triton"))
    proc.start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        assert proc.terminate() == 0  # SIGTERM stops it cleanly
    proc.kill()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["--headless", "--quiet", *args])
    return code, " ".join(capsys.readouterr().err.split())


# ---- no server needed -----------------------------------------------------------------------------

def test_server_down_at_start_is_one_line_error_exit_1(capsys, tmp_path, brightness_model):
    clip = write_video(tmp_path / "clip.mp4", count=5)
    # --server-wait 1: the default waits 60 s for a server that may still be starting; the error is the same.
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(brightness_model), "--backend", "triton",
                        "--server", f"grpc://127.0.0.1:{free_port()}", "--server-wait", "1")
    assert code == 1
    assert "polyp-live: error:" in err and "not reachable" in err and "polyp-live-serve" in err
    assert "Traceback" not in err


def test_triton_backend_without_server_option_is_exit_2(capsys, brightness_model):
    code, err = run_cli(capsys, "--model", str(brightness_model), "--backend", "triton")
    assert code == 2 and "--server" in err


def test_http_server_url_is_refused_with_the_grpc_form(capsys, brightness_model):
    code, err = run_cli(capsys, "--model", str(brightness_model), "--server", "http://127.0.0.1:8000")
    assert code == 1 and "grpc://HOST:PORT" in err


def test_repository_model_takes_the_wire_format_and_matches_local_backend(tmp_path, served_model):
    pytest.importorskip("onnx")
    import onnxruntime as ort
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from polyp_live.engines.triton_repository import RepositoryError, write_repository
    from polyp_live.engines.triton_wire import spec_from_parameter

    config_path, onnx_path = write_repository(served_model, tmp_path / "repo", max_batch=4)
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    assert config.backend == "onnxruntime" and config.max_batch_size == 4
    assert [i.name for i in config.input] == ["image"] and list(config.input[0].dims) == [32, 32, 3]
    assert config.input[0].data_type == model_config_pb2.TYPE_UINT8
    assert [o.name for o in config.output] == ["probability"] and config.output[0].data_type == model_config_pb2.TYPE_FP16
    assert spec_from_parameter(config.parameters["polyp_live_spec"].string_value) == SERVED_SPEC

    images = np.stack(probe_images())
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": images})[0]  # the whole batch in one call
    assert out.shape == (len(images), 32, 32) and out.dtype == np.float16
    local = OnnxRuntimeBackend(served_model)
    for image, prob in zip(images, out):
        assert np.abs(prob.astype(np.float32) - local.infer(preprocess(image, SERVED_SPEC))).max() < 2e-3
    with pytest.raises(RepositoryError, match="already exists"):
        write_repository(served_model, tmp_path / "repo")


def test_repository_refuses_a_non_onnx_model(tmp_path):
    from polyp_live.engines.triton_repository import RepositoryError, write_repository

    with pytest.raises(RepositoryError, match=r"\.onnx"):
        write_repository(tmp_path / "model.engine", tmp_path / "repo")


def test_batch_runner_matches_local_backend_and_refuses_wrong_input(served_model):
    from polyp_live.engines.triton_server import BatchRunner
    from polyp_live.engines.triton_wire import denormalize

    backend = OnnxRuntimeBackend(served_model)
    runner = BatchRunner(backend)
    images = np.stack(probe_images())
    out = runner(images)
    assert out.shape == (len(images), 32, 32) and out.dtype == np.float16
    for image, prob in zip(images, out):
        reference = backend.infer(preprocess(image, SERVED_SPEC))
        assert np.abs(prob.astype(np.float32) - reference).max() < 2e-3
        assert np.array_equal(denormalize(preprocess(image, SERVED_SPEC), SERVED_SPEC), image)  # exact round trip
    with pytest.raises(ValueError, match="uint8"):
        runner(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[batch, 32, 32, 3\]"):
        runner(images[:, :16])


# ---- against a real server ----------------------------------------------------------------------------

@pytest.mark.serve
def test_client_takes_the_spec_from_the_server(server):
    with TritonBackend(server.url) as backend:  # no local sidecar at all
        assert backend.spec == SERVED_SPEC
        assert (backend.spec.input_height, backend.spec.input_width) == (32, 32)
        assert backend.wants_uint8 and backend.status == ""


@pytest.mark.serve
def test_served_probabilities_match_local_onnxruntime(server, served_model):
    local = OnnxRuntimeBackend(served_model)
    with TritonBackend(server.url) as remote:
        for image in probe_images():
            reference = local.infer(preprocess(image, SERVED_SPEC))
            via_uint8 = remote.infer(image)                          # a caller honouring wants_uint8
            via_float = remote.infer(preprocess(image, SERVED_SPEC))  # a caller that ignores it
            assert np.abs(via_uint8 - reference).max() < 2e-3
            assert np.array_equal(via_uint8, via_float)


@pytest.mark.serve
def test_cli_with_triton_backend_matches_local_masks(capsys, tmp_path, server, served_model):
    clip = write_video(tmp_path / "clip.mp4", count=30)
    remote_dir, local_dir = tmp_path / "remote", tmp_path / "local"
    code, err = run_cli(capsys, "--source", str(clip), "--server", server.url, "--save-masks", str(remote_dir),
                        "--stats-json", str(tmp_path / "stats.json"))
    assert code == 0, err
    code, err = run_cli(capsys, "--source", str(clip), "--model", str(served_model), "--save-masks", str(local_dir))
    assert code == 0, err
    remote, local = sorted(remote_dir.iterdir()), sorted(local_dir.iterdir())
    assert [p.name for p in remote] == [p.name for p in local] and len(remote) == 30
    scores = [dice(cv2.imread(str(a), cv2.IMREAD_GRAYSCALE), cv2.imread(str(b), cv2.IMREAD_GRAYSCALE))
              for a, b in zip(remote, local)]
    assert np.mean(scores) >= 0.99 and min(scores) >= 0.95
    assert all(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).any() for p in local)  # the disc is found: Dice means something
    assert "triton" in json.loads((tmp_path / "stats.json").read_text())["info"]["backend"]


@pytest.mark.serve
def test_malformed_requests_are_rejected_and_the_server_keeps_serving(server):
    address = server.url.removeprefix("grpc://")
    good = np.full((1, 32, 32, 3), 200, np.uint8)
    bad = [(good.astype(np.float32), "FP32", "data-type"), (good[:, :16], "UINT8", "shape"),
           (good[:, :, :, 0], "UINT8", "shape"), (np.repeat(good, 9, axis=0), "UINT8", "batch")]
    with grpcclient.InferenceServerClient(address) as client:
        for array, dtype, word in bad:
            request = grpcclient.InferInput("image", list(array.shape), dtype)
            request.set_data_from_numpy(array)
            with pytest.raises(InferenceServerException) as info:
                client.infer("polyp", [request], client_timeout=10)
            assert "INVALID_ARGUMENT" in str(info.value.status()) and word in info.value.message()
        request = grpcclient.InferInput("image", list(good.shape), "UINT8")
        request.set_data_from_numpy(good)
        prob = client.infer("polyp", [request], client_timeout=10).as_numpy("probability")
    assert prob.shape == (1, 32, 32) and prob.dtype == np.float16 and float(prob.min()) > 0.8
    with TritonBackend(server.url) as backend, pytest.raises(ValueError, match="takes float32 1x3x32x32 or uint8 32x32x3 .*not uint8 16x16x3"):
        backend.infer(np.zeros((16, 16, 3), np.uint8))  # refused before it leaves the client


@pytest.mark.serve
def test_load_test_reports_each_room_and_the_server_batches(tmp_path, server):
    from polyp_live.tools import load_test

    data = tmp_path / "frames"
    data.mkdir()
    for i, frame in enumerate(moving_disc_frames(4)):
        cv2.imwrite(str(data / f"{i}.png"), frame)
    out = tmp_path / "load"
    metrics = f"http://127.0.0.1:{server.ports['metrics']}/metrics"
    assert load_test.main(["--server", server.url, "--metrics", metrics, "--rooms", "1,2", "--fps", "10",
                           "--duration", "1", "--timeout", "10", "--data", str(data), "--out", str(out)]) == 0
    report = json.loads((out / "load_test.json").read_text())
    assert [s["rooms"] for s in report["steps"]] == [1, 2] and report["input"] == [32, 32, 3]
    for step in report["steps"]:
        assert len(step["per_room"]) == step["rooms"] and all(r["ok"] > 0 for r in step["per_room"])
        assert step["errors"] == 0 and step["timeouts"] == 0 and step["latency_ms"]["p95"] > 0
        assert step["server"]["executions"] > 0 and step["server"]["mean_batch"] >= 1.0
    if (out / "load_test.png").exists():
        assert cv2.imread(str(out / "load_test.png")) is not None


@pytest.mark.serve
def test_serve_refuses_a_taken_port_in_one_line(server, served_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http_port, metrics_port = free_ports(2)
        proc = subprocess.run([server.python, "-m", "polyp_live.tools.serve", "--model", str(served_model),
                               "--host", "127.0.0.1", "--http-port", str(http_port), "--grpc-port", str(port),
                               "--metrics-port", str(metrics_port)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert f"port {port} on 127.0.0.1 is not free" in proc.stderr and "--grpc-port" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.serve
def test_a_frozen_server_times_out_within_the_bound_then_answers_again(server):
    image = np.full((32, 32, 3), 200, np.uint8)
    with TritonBackend(server.url, timeout=1.0) as backend:
        assert backend.infer(image).mean() > 0.5
        os.killpg(server.proc.pid, signal.SIGSTOP)  # alive but silent: only the timeout ends the request
        try:
            with pytest.raises(InferenceUnavailable, match="(?i)deadline"):
                backend.infer(image)
        finally:
            os.killpg(server.proc.pid, signal.SIGCONT)
        assert backend.status == LOST_STATUS
        prob = retry_until_answered(backend, image)
        assert prob.mean() > 0.5 and backend.status == "" and backend.reconnects == 1


def retry_until_answered(backend: TritonBackend, image: np.ndarray, limit: float = 120.0) -> np.ndarray:
    deadline = time.monotonic() + limit
    while True:
        try:
            return backend.infer(image)
        except InferenceUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.serve
def test_backend_reports_server_loss_then_reconnects_after_restart(server):
    image = np.full((32, 32, 3), 200, np.uint8)
    with TritonBackend(server.url, timeout=2.0) as backend:
        assert backend.infer(image).mean() > 0.5
        server.kill()
        with pytest.raises(InferenceUnavailable, match="inference server lost"):
            backend.infer(image)
        assert backend.status == LOST_STATUS
        with pytest.raises(InferenceUnavailable):  # within the backoff: refused at once, no waiting
            backend.infer(image)
        server.start()
        prob = retry_until_answered(backend, image)
        assert prob.mean() > 0.5
        assert backend.status == "" and backend.reconnects == 1 and backend.lost_requests >= 2


@pytest.mark.serve
def test_live_run_survives_server_loss_records_every_frame_and_resumes(tmp_path, server):
    """A --realtime run keeps recording while the server is gone and annotates again once it is back."""
    clip = write_video(tmp_path / "clip.mp4", count=2400, fps=30)  # 80 s: longer than any restart here
    masks, out, stats_path = tmp_path / "masks", tmp_path / "out.mp4", tmp_path / "stats.json"

    def mask_indices() -> list[int]:
        return sorted(int(p.stem) for p in masks.glob("*.png")) if masks.is_dir() else []

    client = subprocess.Popen(
        [sys.executable, "-m", "polyp_live.realtime.cli", "--headless", "--quiet", "--source", str(clip),
         "--realtime", "--server", server.url, "--server-timeout", "1", "--record", str(out),
         "--save-masks", str(masks), "--stats-json", str(stats_path)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(mask_indices()) >= 10, client, "the first annotations")
        server.kill()
        server.start()
        back_at = max(mask_indices())  # frames after this one were annotated by the restarted server
        wait_for(lambda: sum(i > back_at for i in mask_indices()) >= 10, client, "annotations after the restart")
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 128 + signal.SIGINT, err
    counters = json.loads(stats_path.read_text())["counters"]
    assert counters["annotations_lost"] >= 1
    frames, _, _ = decode(out)
    assert len(frames) == counters["frames_out"] == counters["frames_in"] > back_at


def wait_for(condition, proc: subprocess.Popen, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"polyp-live exited ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {limit:g} s")
        time.sleep(0.1)


def ports_free(ports) -> bool:
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def serve_python_or_skip() -> str:
    python = serve_python()
    if python is None:
        pytest.skip("no interpreter with a working PyTriton (needs the [serve] extra and numpy<2); "
                    "set POLYP_LIVE_SERVE_PYTHON")
    return python


@pytest.mark.serve
def test_killing_the_server_outright_frees_its_ports_and_a_restart_works_at_once(tmp_path, served_model):
    own = ServerProcess(serve_python_or_skip(), served_model, tmp_path)
    own.start()
    try:
        os.kill(own.proc.pid, signal.SIGKILL)  # the server process alone: its Triton is not told
        own.proc.wait(30)
        deadline = time.monotonic() + 15  # the guard ends Triton and its stub within a few seconds
        while not ports_free(own.ports.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ports_free(own.ports.values()), "Triton still holds the killed server's ports"
        own.start()  # the same ports, straight away
        with TritonBackend(own.url, timeout=5.0) as backend:
            assert backend.infer(np.full((32, 32, 3), 200, np.uint8)).mean() > 0.5
    finally:
        own.kill()


@pytest.mark.serve
def test_a_room_started_before_its_server_waits_for_it_then_runs(tmp_path, served_model):
    own = ServerProcess(serve_python_or_skip(), served_model, tmp_path)
    clip = write_video(tmp_path / "clip.mp4", count=20)
    client = subprocess.Popen(
        [sys.executable, "-m", "polyp_live.realtime.cli", "--headless", "--quiet", "--source", str(clip),
         "--server", own.url, "--server-wait", "200", "--stats-json", str(tmp_path / "s.json")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        own.start()
        out, err = client.communicate(timeout=300)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        own.kill()
    assert client.returncode == 0, err
    assert "waiting up to 200 s for inference server" in " ".join((out + err).split())
    assert json.loads((tmp_path / "s.json").read_text())["counters"]["inferred"] == 20


@pytest.mark.serve
def test_a_model_the_server_does_not_have_is_named_at_once(capsys, tmp_path, server):
    clip = write_video(tmp_path / "clip.mp4", count=5)
    started = time.monotonic()
    code, err = run_cli(capsys, "--source", str(clip), "--server", server.url, "--triton-model", "nope",
                        "--server-wait", "60")
    assert code == 1 and "has no model 'nope'" in err and "--triton-model" in err and "waiting" not in err
    assert time.monotonic() - started < 30  # not the whole --server-wait


@pytest.mark.serve
def test_file_mode_stops_with_exit_1_when_the_server_stays_lost(tmp_path, served_model):
    own = ServerProcess(serve_python_or_skip(), served_model, tmp_path)
    own.start()
    clip = write_video(tmp_path / "clip.mp4", count=3000)
    masks, out, stats_path = tmp_path / "masks", tmp_path / "out.mp4", tmp_path / "stats.json"
    client = subprocess.Popen(
        [sys.executable, "-m", "polyp_live.realtime.cli", "--headless", "--quiet", "--source", str(clip),
         "--server", own.url, "--server-timeout", "1", "--reconnect-timeout", "3", "--record", str(out),
         "--save-masks", str(masks), "--stats-json", str(stats_path)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: masks.is_dir() and len(list(masks.glob("*.png"))) >= 20, client, "the first annotations")
        own.kill()
        _, err = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        own.kill()
    err = " ".join(err.split())
    assert client.returncode == 1 and "inference server lost for more than 3 s" in err, err
    frames, _, _ = decode(out)
    masks_written = len(list(masks.glob("*.png")))
    # Nothing was pushed through unannotated: every recorded frame had its mask.
    assert 20 <= len(frames) < 3000 and masks_written == len(frames)
