"""The training loop: AdamW with warm-up and cosine decay, atomic resumable checkpoints.

Batches mix polyp images (a segmentation set) and polyp-free frames (a negatives set) at a fixed
number of each per batch. Validation reports Dice on the polyp images and the false-alarm rate on
the polyp-free frames, and the best checkpoint maximises ``Dice - false-alarm rate``, so a model that
outlines something on every ordinary frame cannot win on Dice alone.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(..., weights_only=True)``: a checkpoint from elsewhere cannot run code when loaded.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from polyp_live.core.errors import MissingFile, InvalidValue, PolypLiveError
from polyp_live.core.preprocess import normalize
from polyp_live.core.spec import ModelSpec
from polyp_live.core.decision import candidate_score
from polyp_live.training.augment import CLOSE_UP_ZOOM, augment
from polyp_live.training.dataset import load_split
from polyp_live.training.external_validation import curve_area, load_external_arrays
from polyp_live.training.losses import negative_peak_loss, polyp_core_loss, segmentation_loss
from polyp_live.core.metrics import MetricAccumulator
from polyp_live.training.mining import check_mining_share, mined_schedule, polyp_hardness
from polyp_live.training.unetplusplus import ModelConfig, UnetPlusPlus, check_input_size
from polyp_live.engines.onnx_file import read_onnx
from polyp_live.training.warm_start import load_folded_onnx


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
    loss: str = "bce_batch_dice"
    aux_weight: float = 0.4
    seed: int = 0
    threads: int = 0
    pretrained: bool = True
    max_steps_per_epoch: int = 0  # 0 = the whole split; tests use a handful
    negatives: str = ""           # a polyp-free set (images/ and splits/), "" for none
    negatives_per_batch: int = 3  # of batch_size; the rest are polyp images
    negative_peak_weight: float = 0.0  # weight of BCE on the top 1 % pixels of empty-mask frames
    polyp_core_weight: float = 0.0  # weight of BCE towards 1 on the core of every polyp region
    negative_mining: float = 0.0  # share of polyp-free picks drawn by the model's peak on each frame
    polyp_mining: float = 0.0     # share of polyp picks drawn by how close each image is to a missed polyp
    freeze_batchnorm: bool = False  # keep BatchNorm statistics fixed (fine-tuning with small batches)
    init: str = ""                # start from an exported ONNX model (fine-tuning), "" for the encoder's weights
    device: str = "cpu"
    cache: str = ""               # resized-image cache folder; "" = OUT/../cache
    external: str = ""            # external validation sets (other hospitals) scored at each validation; "" for none
    external_every: int = 2       # score every N-th frame of each external set (a cheap subsample)
    style_mix: float = 0.0        # share of training images restyled as a random training frame of either set
    close_up: float = 0.0         # share of polyp-free training frames first seen nearer
    close_up_zoom: tuple[float, float] = CLOSE_UP_ZOOM  # how much nearer, at least and at most
    processor_look: float = 0.0   # share of training images rendered as another processor would (CLAHE, sharpening, vignette)
    keep_epochs: bool = False     # also keep every epoch's weights as epoch_NNN.pt (for choosing and averaging)


# A polyp-free validation frame is a false alarm when any region of at least this fraction of the
# image reaches probability 0.5 (about 65 pixels at 256x256: specks are removed downstream anyway).
FALSE_ALARM_MIN_AREA = 0.001


def model_spec(size: int, info: dict | None = None, threshold: float = 0.5) -> ModelSpec:
    """The spec (and sidecar) of models trained here."""
    return ModelSpec(input_height=size, input_width=size, threshold=threshold, info=info or {})


class CheckpointWriteError(PolypLiveError, OSError):
    """A checkpoint could not be written (a full disk); the earlier checkpoints are intact."""


def atomic_save(obj: object, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a checkpoint is never half written.

    Raises:
        CheckpointWriteError: the write failed (the temporary file is removed, ``path`` is untouched).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        # Through a Python file: a full disk then raises OSError(ENOSPC), where torch's own writer
        # reports an "unexpected pos" RuntimeError.
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        what = "disk full" if full else f"cannot write ({getattr(exc, 'strerror', None) or exc})"
        raise CheckpointWriteError(f"{what} writing {path}; free space, then continue with --resume "
                                   "(the last completed epoch is in last.pt)") from None


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def to_input(images: np.ndarray, spec: ModelSpec, device: str = "cpu") -> torch.Tensor:
    """Model-size BGR uint8 images -> the normalised N x 3 x H x W network input (channels-last)."""
    x = np.stack([normalize(im, spec) for im in images])
    return torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)


def to_batch(images: np.ndarray, masks: np.ndarray, spec: ModelSpec,
             device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    return to_input(images, spec, device), torch.from_numpy(masks[:, None].astype(np.float32)).to(device)


@torch.no_grad()
def predict_batches(model: torch.nn.Module, images: np.ndarray, spec: ModelSpec, batch_size: int = 8,
                    device: str = "cpu"):
    """Yield probability maps (model size, float32) for model-size images, in order."""
    model.eval()
    for i in range(0, len(images), batch_size):
        x = to_input(images[i:i + batch_size], spec, device)
        yield from torch.sigmoid(model(x)).float().cpu().numpy()[:, 0]


def validate(model: torch.nn.Module, images: np.ndarray, masks: np.ndarray, spec: ModelSpec,
             batch_size: int = 8, negatives: np.ndarray | None = None, device: str = "cpu") -> dict[str, float]:
    """Mean per-image Dice at 0.5 on polyp images and the false-alarm rate on polyp-free frames.

    Returns ``{"dice", "false_alarm", "score"}`` with ``score = dice - false_alarm`` (false_alarm is
    0 without negatives).
    """
    acc = MetricAccumulator()
    for p, m in zip(predict_batches(model, images, spec, batch_size, device), masks):
        acc.add(p >= 0.5, m.astype(bool))
    dice = float(acc.mean()["dice"])
    alarms = 0
    count = 0 if negatives is None else len(negatives)
    if count:
        for p in predict_batches(model, negatives, spec, batch_size, device):
            alarms += candidate_score(p, p >= 0.5, FALSE_ALARM_MIN_AREA) >= 0.5
    false_alarm = float(alarms / count) if count else 0.0
    return {"dice": dice, "false_alarm": false_alarm, "score": dice - false_alarm}


def validate_external(model: torch.nn.Module, external, spec: ModelSpec, batch_size: int = 8,
                      device: str = "cpu") -> dict[str, float]:
    """Figures on other hospitals' frames: Dice at 0.5 per masked set, curve area per labelled set.

    A labelled set's frames are scored by the single-frame candidate score (peak of the best region
    of at least :data:`FALSE_ALARM_MIN_AREA` at pixel threshold 0.5), as the presence decision scores them.
    """
    out = {}
    for name, (images, masks) in external.masked.items():
        acc = MetricAccumulator()
        for p, m in zip(predict_batches(model, images, spec, batch_size, device), masks):
            acc.add(p >= 0.5, m.astype(bool))
        out[f"ext_{name}_dice"] = float(acc.mean()["dice"])
    for name, (polyp, free) in external.labelled.items():
        scores = [np.array([candidate_score(p, p >= 0.5, FALSE_ALARM_MIN_AREA)
                            for p in predict_batches(model, images, spec, batch_size, device)])
                  for images in (polyp, free)]
        out[f"ext_{name}_area"] = curve_area(*scores)
    return out


def checkpoint_score(val: dict[str, float], external: dict[str, float]) -> float:
    """What the best checkpoint maximises: ``val Dice - val false alarms`` alone, or with external
    sets the mean of it and every external figure (each set's Dice or curve area), so that a
    checkpoint that learns the training hospital at the cost of the others does not win."""
    if not external:
        return val["score"]
    return float(np.mean([val["score"], *external.values()]))


def set_training_mode(model: torch.nn.Module, freeze_batchnorm: bool) -> None:
    """Train mode; with ``freeze_batchnorm`` every BatchNorm keeps normalising by its stored statistics.

    A fine-tune from an exported model starts from BatchNorms re-centred on its training images
    (:mod:`warm_start`); in train mode an 8-image batch of polyps and polyp-free frames then
    normalises by its own statistics, which perturbs the model it started from (val Dice dips after
    the first epoch). Frozen, the fine-tune continues the exported function; scale and shift still learn.
    """
    model.train()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def build_model(config: TrainConfig) -> UnetPlusPlus:
    model = UnetPlusPlus(config.model, pretrained=config.pretrained and not config.init)
    return model.to(memory_format=torch.channels_last)


def check_config(config: TrainConfig) -> None:
    """Refuse settings that cannot train, with a one-line ValueError, before anything is read or written."""
    check_input_size(config.size, config.size)
    if config.epochs < 1 or config.batch_size < 1:
        raise InvalidValue(f"--epochs and --batch-size need at least 1, got {config.epochs} and {config.batch_size}")
    for name, weight in (("negative peak", config.negative_peak_weight), ("polyp core", config.polyp_core_weight)):
        if weight < 0:
            raise InvalidValue(f"{name} weight must be >= 0, got {weight}")
    check_mining_share(config.negative_mining)
    check_mining_share(config.polyp_mining, "polyp")
    if not 0.0 <= config.style_mix <= 1.0:
        raise InvalidValue(f"style mix share must lie in [0, 1], got {config.style_mix}")
    if not 0.0 <= config.close_up <= 1.0:
        raise InvalidValue(f"close-up share must lie in [0, 1], got {config.close_up}")
    if not 0.0 <= config.processor_look <= 1.0:
        raise InvalidValue(f"processor-look share must lie in [0, 1], got {config.processor_look}")
    low, high = config.close_up_zoom
    if not 1.0 <= low <= high:
        raise InvalidValue(f"close-up zoom must be MIN,MAX with 1 <= MIN <= MAX, got {low:g},{high:g}")
    if config.external_every < 1:
        raise InvalidValue(f"external subsample step must be 1 or more, got {config.external_every}")
    if config.negatives and not 0 <= config.negatives_per_batch < config.batch_size:
        raise InvalidValue(f"negatives per batch must lie in [0, {config.batch_size - 1}] for batch size "
                         f"{config.batch_size}, got {config.negatives_per_batch}")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidValue(f"--device {config.device} asked for but torch sees no CUDA GPU; use --device cpu")


@dataclass
class TrainingData:
    """The arrays one run trains and validates on, at the model size (see :func:`load_training_data`)."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    neg_train: np.ndarray | None
    neg_val: np.ndarray | None
    external: dict | None
    styles: np.ndarray | None


@dataclass
class Optimisation:
    """The model and what steps it, with the schedule's shape and where a (resumed) run stands."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    steps_per_epoch: int
    start_epoch: int = 0
    best: float = -math.inf
    history: list = field(default_factory=list)


def train(config: TrainConfig, resume: bool = False, progress=None, header: str = "") -> dict:
    """Train (or resume) and return the final state summary.

    Writes into ``config.out``: ``last.pt`` and ``best.pt`` (atomic), ``log.csv`` and ``curves.png``.
    ``progress`` (a rich Progress) is started when the first epoch begins, so that a data or
    checkpoint error before it is reported alone; the caller stops it. ``header`` (the learning rate
    used, and why) is printed through it then, as the first line of the run.
    """
    check_config(config)
    out = Path(config.out)
    last_path = out / "last.pt"
    if resume and not last_path.is_file():
        raise MissingFile(f"--resume given but {last_path} does not exist; drop --resume to start afresh")
    init_model = None
    if config.init and not resume:
        init_model = read_onnx(config.init)  # read once, before the data: a damaged --model is found first
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = model_spec(config.size)
    data = load_training_data(config, spec)   # data errors surface here, before any weights are touched
    run = set_up_optimisation(config, spec, data, init_model, last_path if resume else None)
    # Created only now: a run refused for its data, model or settings leaves no empty run folder.
    out.mkdir(parents=True, exist_ok=True)
    if progress:
        progress.start()
        if header:
            progress.print(header)
    for epoch in range(run.start_epoch, config.epochs):
        row = train_epoch(config, spec, data, run, epoch, progress)
        run.history.append(row)
        save_epoch(config, run, epoch, row, last_path)
    return {"best_val_score": run.best, "epochs": len(run.history), "history": run.history}


def load_training_data(config: TrainConfig, spec: ModelSpec) -> TrainingData:
    """The training and validation splits of both sets (and external-val when asked), cached resized."""
    cache = Path(config.cache) if config.cache else Path(config.out).parent / "cache"
    _, train_x, train_y = load_split(config.data, "train", spec, cache, seed=config.seed)
    _, val_x, val_y = load_split(config.data, "val", spec, cache, seed=config.seed)
    neg_train = neg_val = None
    if config.negatives:
        _, neg_train, _ = load_split(config.negatives, "train", spec, cache, seed=config.seed, negatives=True)
        _, neg_val, _ = load_split(config.negatives, "val", spec, cache, seed=config.seed, negatives=True)
    external = load_external_arrays(config.external, spec, config.external_every) if config.external else None
    # Styles come from the training splits of both sets only: never from validation or external frames.
    styles = (np.concatenate([train_x] + ([neg_train] if neg_train is not None else []))
              if config.style_mix else None)
    return TrainingData(train_x, train_y, val_x, val_y, neg_train, neg_val, external, styles)


def batch_shares(config: TrainConfig, data: TrainingData) -> tuple[int, int]:
    """(polyp images, polyp-free frames) in each batch."""
    n_neg = config.negatives_per_batch if data.neg_train is not None else 0
    return config.batch_size - n_neg, n_neg


def set_up_optimisation(config: TrainConfig, spec: ModelSpec, data: TrainingData, init_model,
                        resume_from: Path | None) -> Optimisation:
    """The seeded model (warm-started from ``init_model``), AdamW and the warm-up + cosine schedule;
    with ``resume_from``, everything restored from that ``last.pt``."""
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    model = build_model(config)
    if init_model is not None:
        calib = np.stack([normalize(im, spec) for im in data.train_x[:32]])
        load_folded_onnx(model, init_model, calib)
    model = model.to(config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(data.train_x) / batch_shares(config, data)[0])
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))
    run = Optimisation(model, optimizer, scheduler, steps_per_epoch)
    if resume_from is not None:
        state = torch.load(resume_from, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        run.start_epoch, run.best, run.history = state["epoch"] + 1, state["best_score"], state["history"]
        torch.set_rng_state(state["torch_rng"])
    return run


def epoch_schedule(config: TrainConfig, spec: ModelSpec, data: TrainingData, run: Optimisation, epoch: int):
    """(polyp order, polyp-free order, polyp-free hardness, polyp hardness, rng) for one epoch.

    Hardness is each frame's score under this epoch's starting weights (which a resumed run restores
    exactly), un-augmented; ``predict_batches`` leaves the model in eval mode.
    """
    n_pos, n_neg = batch_shares(config, data)
    hardness = polyp_hard = None
    if n_neg and config.negative_mining:
        hardness = np.array([p.max() for p in predict_batches(run.model, data.neg_train, spec, 16, config.device)],
                            np.float64)
    if config.polyp_mining:
        # How near each polyp image is to losing its polyp.
        polyp_hard = np.array([polyp_hardness(p, m) for p, m in
                               zip(predict_batches(run.model, data.train_x, spec, 16, config.device), data.train_y)],
                              np.float64)
    rng = np.random.default_rng([config.seed, epoch])  # per-epoch stream: resume reproduces it
    if polyp_hard is None:
        order = rng.permutation(len(data.train_x))  # the order training always used (a short last batch)
    else:
        order = mined_schedule(len(data.train_x), run.steps_per_epoch * n_pos, polyp_hard, config.polyp_mining,
                               rng, "polyp")
    neg_order = (mined_schedule(len(data.neg_train), run.steps_per_epoch * n_neg, hardness, config.negative_mining,
                                rng) if n_neg else None)
    return order, neg_order, hardness, polyp_hard, rng


def train_step(config: TrainConfig, spec: ModelSpec, data: TrainingData, run: Optimisation, pos, neg, rng) -> float:
    """One optimiser step on the polyp images ``pos`` and the polyp-free frames ``neg``; its loss."""
    pairs = [augment(data.train_x[i], data.train_y[i], rng, data.styles, config.style_mix,
                     processor_probability=config.processor_look) for i in pos]
    if len(neg):
        empty = np.zeros(data.train_y.shape[1:], np.uint8)
        pairs += [augment(data.neg_train[i], empty, rng, data.styles, config.style_mix, config.close_up,
                           config.close_up_zoom, config.processor_look) for i in neg]
    x, y = to_batch(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), spec, config.device)
    outputs = run.model(x)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    loss = segmentation_loss(config.loss, outputs[0], y)
    for aux in outputs[1:]:
        loss = loss + config.aux_weight / len(outputs[1:]) * segmentation_loss(config.loss, aux, y)
    if config.negative_peak_weight:
        loss = loss + config.negative_peak_weight * negative_peak_loss(outputs[0], y)
    if config.polyp_core_weight:
        loss = loss + config.polyp_core_weight * polyp_core_loss(outputs[0], y)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    return loss.item()


def train_epoch(config: TrainConfig, spec: ModelSpec, data: TrainingData, run: Optimisation, epoch: int,
                progress=None) -> dict:
    """Train one epoch and validate; the epoch's row of the log."""
    n_pos, n_neg = batch_shares(config, data)
    # One random stream per epoch: the orders, then the augmentations (a resumed run reproduces both).
    order, neg_order, hardness, polyp_hard, rng = epoch_schedule(config, spec, data, run, epoch)
    set_training_mode(run.model, config.freeze_batchnorm)
    t0, losses = time.time(), []
    name = f"epoch {epoch + 1}/{config.epochs}"
    task = progress.add_task(name, total=run.steps_per_epoch) if progress else None
    for step in range(run.steps_per_epoch):
        neg = neg_order[step * n_neg:(step + 1) * n_neg] if n_neg else []
        losses.append(train_step(config, spec, data, run, order[step * n_pos:(step + 1) * n_pos], neg, rng))
        if progress:
            progress.update(task, advance=1, description=f"{name} loss {np.mean(losses):.4f}")
    val = validate(run.model, data.val_x, data.val_y, spec, negatives=data.neg_val, device=config.device)
    ext = validate_external(run.model, data.external, spec, device=config.device) if data.external is not None else {}
    row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": val["dice"],
           "val_false_alarm": val["false_alarm"], "val_score": checkpoint_score(val, ext), **ext,
           "lr": float(run.optimizer.param_groups[0]["lr"]), "seconds": float(time.time() - t0)}
    if hardness is not None:
        # Training negatives the model called polyps (peak >= 0.5) when the epoch began.
        row["train_negatives_above_half"] = int((hardness >= 0.5).sum())
    if polyp_hard is not None:
        # Training polyp images with a polyp whose peak was below 0.5 when the epoch began.
        row["train_polyps_below_half"] = int((polyp_hard > 0.5).sum())
    if progress:
        progress.update(task, description=f"{name} loss {row['loss']:.4f} val Dice {val['dice']:.4f} false alarms "
                                          f"{val['false_alarm']:.3f}" + "".join(f" {k[4:]} {v:.3f}" for k, v in ext.items()))
    return row


def save_epoch(config: TrainConfig, run: Optimisation, epoch: int, row: dict, last_path: Path) -> None:
    """``best.pt`` when this epoch scores best, ``epoch_NNN.pt`` with ``--keep-epochs``, always ``last.pt``
    (each written atomically), and the log."""
    out = last_path.parent
    weights = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
    ext = {k: v for k, v in row.items() if k.startswith("ext_")}
    chosen = {"model": weights, "config": asdict(config), "epoch": epoch, "val_dice": row["val_dice"],
              "val_false_alarm": row["val_false_alarm"], "val_score": row["val_score"], **ext}
    if row["val_score"] > run.best:
        run.best = row["val_score"]
        atomic_save(chosen, out / "best.pt")
    if config.keep_epochs:
        atomic_save(chosen, out / f"epoch_{epoch + 1:03d}.pt")
    state = {"model": weights, "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
             "epoch": epoch, "best_score": float(run.best), "history": run.history,
             "config": asdict(config), "torch_rng": torch.get_rng_state()}
    atomic_save(state, last_path)
    write_log(run.history, out)


def write_log(history: list[dict], out: Path) -> None:
    """CSV log and a PNG of the loss and validation Dice curves."""
    with open(out / "log.csv", "w", newline="") as fh:
        # Every key of every row: a run resumed with --negative-mining switched on adds a column.
        fields = list(dict.fromkeys(k for row in history for k in row))
        writer = csv.DictWriter(fh, fieldnames=fields)
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
    ax[1].plot(epochs, [r["val_dice"] for r in history], label="Dice (polyp images)")
    if any(r.get("val_false_alarm") for r in history):
        ax[1].plot(epochs, [r["val_false_alarm"] for r in history], label="false-alarm rate (polyp-free)")
    for key in dict.fromkeys(k for row in history for k in row if k.startswith("ext_")):
        ax[1].plot(epochs, [r.get(key, float("nan")) for r in history], "--", label=key[4:].replace("_", " "))
    ax[1].set_title("validation"); ax[1].set_xlabel("epoch"); ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=80)
    plt.close(fig)


def load_checkpoint(path: str | Path) -> tuple[UnetPlusPlus, TrainConfig]:
    """Rebuild a model from a checkpoint (``best.pt`` or ``last.pt``) in eval mode.

    Loads with ``weights_only=True``: a file that carries pickled objects (which could run code) is
    refused with :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"checkpoint {path} not found; train one with tools/train.py")
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path} is an exported ONNX model, not a training checkpoint (.pt); pass the best.pt "
                              "of a polyp-live train run, or run the .onnx with the onnxruntime backend")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError or RuntimeError here
        raise CheckpointError(f"checkpoint {path} holds more than weights and settings (or is damaged), so it is "
                              f"not loaded: it could run code; use a checkpoint written by tools/train.py "
                              f"({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"checkpoint {path} has no model weights and config; use one written by tools/train.py")
    cfg = dict(state["config"])
    mcfg = dict(cfg.pop("model"))
    mcfg["decoder_channels"] = tuple(mcfg["decoder_channels"])
    known = {f for f in TrainConfig.__dataclass_fields__}
    config = TrainConfig(model=ModelConfig(**mcfg), **{k: v for k, v in cfg.items() if k in known})
    model = UnetPlusPlus(config.model, pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), config


class CheckpointError(PolypLiveError, ValueError):
    """A checkpoint cannot be loaded safely or lacks what a model needs."""
