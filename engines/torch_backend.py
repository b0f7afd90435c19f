"""PyTorch backend for training checkpoints (``.pt``): imports torch only when chosen."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.errors import BackendUnavailableError, ModelLoadError


class TorchBackend:
    """Runs a checkpoint written by ``tools/train.py`` on CUDA when present, else on the CPU."""

    def __init__(self, model_path: str | Path, device: str | None = None):
        try:
            import torch
        except ImportError:
            raise BackendUnavailableError("the torch backend needs PyTorch: pip install 'polyp-live[train]'") from None
        from training.trainer import load_checkpoint, model_spec
        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"checkpoint {path} not found; pass --model with an existing .pt file")
        try:
            model, config = load_checkpoint(path)
        except Exception as exc:
            raise ModelLoadError(f"checkpoint {path} cannot be loaded ({exc}); pass a tools/train.py checkpoint") from None
        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.spec = model_spec(config.size)
        self.name = f"torch:{self.device.type}"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(batch).to(self.device)
            return self.torch.sigmoid(self.model(x))[0, 0].float().cpu().numpy()

    def close(self) -> None:
        self.model = None
