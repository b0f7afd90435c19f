"""PyTorch backend for training checkpoints (``.pt``): imports torch only when chosen.

On CUDA it runs in FP16 with CUDA-graph replay (static input/output tensors captured once after a
warm-up), so the GPU path can be exercised where TensorRT is absent. On the CPU it runs FP32 eager.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyp_live.core.backend import Backend
from polyp_live.core.errors import BackendUnavailableError, ModelLoadError


class TorchBackend(Backend):
    """Runs a checkpoint written by ``tools/train.py`` on CUDA when present, else on the CPU."""

    def __init__(self, model_path: str | Path, device: str | None = None, cuda_graph: bool = True):
        try:
            import torch
        except ImportError:
            raise BackendUnavailableError("the torch backend needs PyTorch: pip install 'polyp-live[train]'") from None
        from polyp_live.training.trainer import load_checkpoint, model_spec
        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"checkpoint {path} not found; pass --model with an existing .pt file")
        try:
            model, config = load_checkpoint(path)
        except Exception as exc:
            raise ModelLoadError(f"checkpoint {path} cannot be loaded ({exc}); pass a tools/train.py checkpoint") from None
        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.half = self.device.type == "cuda"
        model = model.to(self.device).eval()
        self.model = model.half().to(memory_format=torch.channels_last) if self.half else model
        self.spec = model_spec(config.size)
        self.graph = None
        self.use_graph = cuda_graph and self.half
        self.runs = 0
        self.name = f"torch:{self.device.type}{':fp16' if self.half else ''}"
        self.model_path, self.precision = path, "fp16" if self.half else "fp32"

    def _forward(self, x):
        return self.torch.sigmoid(self.model(x).float())

    def _capture(self, batch: np.ndarray) -> None:
        torch = self.torch
        self.static_in = torch.from_numpy(batch).to(self.device).half().contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # warm-up on a side stream, as CUDA-graph capture requires
                self._forward(self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = self._forward(self.static_in)

    outputs_logits = False   # _forward applies the sigmoid on the device

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        if self.use_graph:
            if self.graph is None:
                self._capture(batch)
            self.static_in.copy_(torch.from_numpy(batch).to(self.device, non_blocking=True))
            self.graph.replay()
            return self.static_out[0, 0].cpu().numpy()
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            if self.half:
                x = x.half().contiguous(memory_format=torch.channels_last)
            return self._forward(x)[0, 0].cpu().numpy()

    def close(self) -> None:
        self.model = self.graph = None
