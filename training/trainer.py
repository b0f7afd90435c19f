"""The training loop: AdamW with warm-up and cosine decay, validation Dice, atomic resumable checkpoints."""

from __future__ import annotations

import csv
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from polyp_live.engines.preprocess import normalize
from polyp_live.engines.spec import ModelSpec
from polyp_live.training.augment import augment
from polyp_live.training.dataset import load_split
from polyp_live.training.losses import segmentation_loss
from polyp_live.training.metrics import MetricAccumulator
from polyp_live.training.unetplusplus import ModelConfig, UnetPlusPlus, check_input_size


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Everything here is stored in the checkpoint."""

    data: str
    out: str
    size: int = 256
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    loss: str = "bce_dice"
    aux_weight: float = 0.4
    seed: int = 0
    threads: int = 0
    pretrained: bool = True
    max_steps_per_epoch: int = 0  # 0 = the whole split; tests use a handful


def model_spec(size: int, info: dict | None = None, threshold: float = 0.5) -> ModelSpec:
    """The spec (and sidecar) of models trained here."""
    return ModelSpec(input_height=size, input_width=size, threshold=threshold, info=info or {})


def atomic_save(obj: object, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a checkpoint is never half written."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def to_batch(images: np.ndarray, masks: np.ndarray, spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.stack([normalize(im, spec) for im in images])
    y = masks[:, None].astype(np.float32)
    return (torch.from_numpy(x).contiguous(memory_format=torch.channels_last), torch.from_numpy(y))


@torch.no_grad()
def validate(model: torch.nn.Module, images: np.ndarray, masks: np.ndarray, spec: ModelSpec,
             batch_size: int = 8) -> float:
    """Mean per-image Dice at threshold 0.5 on model-size images."""
    model.eval()
    acc = MetricAccumulator()
    for i in range(0, len(images), batch_size):
        x, _ = to_batch(images[i:i + batch_size], masks[i:i + batch_size], spec)
        prob = torch.sigmoid(model(x)).numpy()[:, 0]
        for p, m in zip(prob, masks[i:i + batch_size]):
            acc.add(p >= 0.5, m.astype(bool))
    return acc.mean()["dice"]


def build_model(config: TrainConfig) -> UnetPlusPlus:
    model = UnetPlusPlus(config.model, pretrained=config.pretrained)
    return model.to(memory_format=torch.channels_last)


def train(config: TrainConfig, resume: bool = False, progress=None) -> dict:
    """Train (or resume) and return the final state summary.

    Writes into ``config.out``: ``last.pt`` and ``best.pt`` (atomic), ``log.csv`` and ``curves.png``.
    """
    check_input_size(config.size, config.size)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = model_spec(config.size)
    cache = out.parent / "cache"
    # Data errors surface here, before any weights are touched.
    _, train_x, train_y = load_split(config.data, "train", spec, cache, seed=config.seed)
    _, val_x, val_y = load_split(config.data, "val", spec, cache, seed=config.seed)

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))

    start_epoch, best, history = 0, -1.0, []
    last_path = out / "last.pt"
    if resume and last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, history = state["epoch"] + 1, state["best_dice"], state["history"]
        torch.set_rng_state(state["torch_rng"])
    elif resume:
        raise FileNotFoundError(f"--resume given but {last_path} does not exist; drop --resume to start afresh")

    for epoch in range(start_epoch, config.epochs):
        model.train()
        rng = np.random.default_rng([config.seed, epoch])  # per-epoch stream: resume reproduces it
        order = rng.permutation(len(train_x))
        t0, losses = time.time(), []
        task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=steps_per_epoch) if progress else None
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            pairs = [augment(train_x[i], train_y[i], rng) for i in idx]
            x, y = to_batch(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), spec)
            outputs = model(x)
            outputs = outputs if isinstance(outputs, list) else [outputs]
            loss = segmentation_loss(config.loss, outputs[0], y)
            for aux in outputs[1:]:
                loss = loss + config.aux_weight / len(outputs[1:]) * segmentation_loss(config.loss, aux, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if progress:
                progress.update(task, advance=1, description=f"epoch {epoch + 1}/{config.epochs} loss {np.mean(losses):.4f}")
        val_dice = validate(model, val_x, val_y, spec)
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": val_dice,
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - t0}
        history.append(row)
        if progress:
            progress.update(task, description=f"epoch {epoch + 1}/{config.epochs} loss {row['loss']:.4f} val Dice {val_dice:.4f}")
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "epoch": epoch, "best_dice": max(best, val_dice), "history": history,
                 "config": asdict(config), "torch_rng": torch.get_rng_state()}
        if val_dice > best:
            best = val_dice
            atomic_save({"model": model.state_dict(), "config": asdict(config), "epoch": epoch,
                         "val_dice": val_dice}, out / "best.pt")
        atomic_save(state, last_path)
        write_log(history, out)
    return {"best_val_dice": best, "epochs": len(history), "history": history}


def write_log(history: list[dict], out: Path) -> None:
    """CSV log and a PNG of the loss and validation Dice curves."""
    with open(out / "log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return  # the CSV carries the same numbers
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(epochs, [r["loss"] for r in history]); ax[0].set_title("training loss"); ax[0].set_xlabel("epoch")
    ax[1].plot(epochs, [r["val_dice"] for r in history]); ax[1].set_title("validation Dice"); ax[1].set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=80)
    plt.close(fig)


def load_checkpoint(path: str | Path) -> tuple[UnetPlusPlus, TrainConfig]:
    """Rebuild a model from a checkpoint (``best.pt`` or ``last.pt``) in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; train one with tools/train.py")
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = dict(state["config"])
    mcfg = dict(cfg.pop("model"))
    mcfg["decoder_channels"] = tuple(mcfg["decoder_channels"])
    config = TrainConfig(model=ModelConfig(**mcfg), **cfg)
    model = UnetPlusPlus(config.model, pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), config
