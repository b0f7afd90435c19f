"""Fixtures: tiny generated videos and ONNX models, so no test needs data, a GPU or the network."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

from polyp_live.core.backend import Backend
from polyp_live.core.spec import ModelSpec

# The test model sees pixel values scaled to [0, 1] with no mean/std, so references are simple.
TEST_SPEC = ModelSpec(input_height=32, input_width=32, color_order="RGB", mean=(0.0, 0.0, 0.0),
                      std=(1.0, 1.0, 1.0), output="probability", threshold=0.5, input_name="image")


def make_brightness_model(path: Path, size: int = 32, gain: float = 8.0, spec: ModelSpec = TEST_SPEC) -> Path:
    """ONNX model: probability = sigmoid(gain * (mean over channels - 0.5)). Bright = polyp."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=1),
        helper.make_node("Sub", ["m", "half"], ["c"]),
        helper.make_node("Mul", ["c", "gain"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["prob"]),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
    ]
    graph = helper.make_graph(nodes, "brightness",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, size, size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    spec.save(path)
    return path


def moving_disc_frames(count: int, size=(160, 120), margin: int = 0):
    """Frames with a bright disc moving across a dark, textured background (and optional black margins)."""
    w, h = size
    rng = np.random.default_rng(0)
    texture = rng.integers(30, 90, (h, w, 3), dtype=np.uint8)
    for i in range(count):
        frame = texture.copy()
        cx = int(w * 0.25 + (w * 0.5) * i / max(1, count - 1))
        cv2.circle(frame, (cx, h // 2), h // 5, (220, 230, 240), -1)
        if margin:
            frame[:, :margin] = 0
            frame[:, w - margin:] = 0
        yield frame


def write_video(path: Path, count: int = 30, fps: float = 30000 / 1001, size=(160, 120), margin: int = 0) -> Path:
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    assert writer.isOpened()
    for frame in moving_disc_frames(count, size, margin):
        writer.write(frame)
    writer.release()
    return path


def decode(path: Path):
    """(frames, fps, (w, h)) of a video file."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    size = (frames[0].shape[1], frames[0].shape[0]) if frames else (0, 0)
    return frames, fps, size


class FakeBackend(Backend):
    """A Backend whose output is the brightness rule in NumPy, with an optional delay or failure."""

    name = "fake"

    def __init__(self, delay: float = 0.0, fail_after: int | None = None, spec: ModelSpec = TEST_SPEC):
        self.spec, self.delay, self.fail_after, self.calls = spec, delay, fail_after, 0

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("simulated inference failure")
        if self.delay:
            time.sleep(self.delay)
        return (1 / (1 + np.exp(-8 * (batch[0].mean(0) - 0.5)))).astype(np.float32)



@pytest.fixture
def brightness_model(tmp_path) -> Path:
    return make_brightness_model(tmp_path / "bright.onnx")


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mp4", count=30)
