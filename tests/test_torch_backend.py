"""The torch backend: CPU eager here, CUDA FP16 with graph replay where a GPU exists."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_training import make_dataset  # noqa: E402
from polyp_live.training.trainer import TrainConfig, train  # noqa: E402
from polyp_live.training.unetplusplus import ModelConfig  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torchbackend")
    data = make_dataset(tmp / "data", count=6)
    train(TrainConfig(data=str(data), out=str(tmp / "run"), size=64, epochs=1, batch_size=4, pretrained=False,
                      max_steps_per_epoch=1, threads=1, model=ModelConfig(decoder_channels=(32, 24, 16, 16, 8))))
    return tmp / "run" / "best.pt"


def test_torch_backend_on_cpu_matches_the_onnx_export(checkpoint, tmp_path):
    from polyp_live.engines.registry import load_backend
    from polyp_live.training.export import export_onnx
    export_onnx(checkpoint, tmp_path / "m.onnx")
    cpu = load_backend(checkpoint)
    ort = load_backend(tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    if cpu.name.startswith("torch:cuda"):
        pytest.skip("this test covers the CPU path")
    np.testing.assert_allclose(cpu.infer(x), ort.infer(x), atol=1e-4)
    assert cpu.spec.input_height == 64


@pytest.mark.gpu
def test_torch_backend_on_cuda_uses_fp16_and_graph_replay(checkpoint):
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    from polyp_live.training.torch_backend import TorchBackend
    gpu = TorchBackend(checkpoint)
    cpu = TorchBackend(checkpoint, device="cpu")
    x = np.random.default_rng(1).normal(size=(1, 3, 64, 64)).astype(np.float32)
    outs = [gpu.infer(x) for _ in range(3)]
    assert gpu.graph is not None and gpu.name == "torch:cuda:fp16"
    np.testing.assert_allclose(outs[-1], cpu.infer(x), atol=2e-2)
    np.testing.assert_array_equal(outs[1], outs[2])
