#!/usr/bin/env python3
"""Train the UNet++ polyp segmenter on polyp images (images/, masks/, splits/) and polyp-free frames.

Examples:
    python tools/train.py --data ../shared/data/kvasir-seg --negatives ../shared/data/negatives --out runs/neg
    python tools/train.py --data ../shared/data/kvasir-seg --negatives ../shared/data/negatives --out runs/neg --resume
    python tools/train.py ... --model engines/models/polyp-unetpp-lite0-256.onnx   # fine-tune an exported model
    python tools/train.py ... --device cuda --cache runs/cache                      # on a GPU machine
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from polyp_live.arguments import printable



# Listed here as well as in training/, so --help works without torch (training imports it);
# main() checks them against the real tables.
ENCODER_NAMES = ("efficientnet-lite0", "efficientnet-lite2")
LOSS_NAMES = ("bce_batch_dice", "bce_dice", "focal_dice", "wiou_bce")


# Peak learning rates: from ImageNet encoder weights, and when fine-tuning a trained model (--model),
# where 1e-3 wrecked the bundled model within two steps.
SCRATCH_LR = 1e-3
FINE_TUNE_LR = 1e-4


def zoom_range(text: str) -> tuple[float, float]:
    """``MIN,MAX`` as two numbers (argparse type of --close-up-zoom); the trainer checks their range."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX such as 1.2,2, got {text!r}") from None
    return low, high


def parse_args(argv=None) -> argparse.Namespace:
    """The options, their values checked (main checks the datasets); ``lr_origin`` says where --lr came from."""
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def build_parser() -> argparse.ArgumentParser:
    """``polyp-live train``'s options."""
    from polyp_live.arguments import command_parser
    p = command_parser("train", __doc__)
    p.add_argument("--data", required=True, metavar="DIR", help="polyp dataset folder with images/ and masks/")
    p.add_argument("--negatives", default="", metavar="DIR",
                   help="polyp-free frames (images/, splits/): taught as empty masks, scored as false alarms")
    p.add_argument("--negatives-per-batch", type=int, default=3, metavar="N",
                   help="polyp-free frames in each batch (default 3 of 8)")
    p.add_argument("--negative-peak-weight", type=float, default=0.0, metavar="W",
                   help="add W x BCE on the most confident 1 %% of pixels of each polyp-free frame, the pixels "
                        "the presence decision thresholds (default 0: off)")
    p.add_argument("--polyp-core-weight", type=float, default=0.0, metavar="W",
                   help="add W x BCE towards 1 on the most confident pixels inside each polyp, so that no "
                        "polyp, however small, loses the region the presence decision needs (default 0: off)")
    p.add_argument("--negative-mining", type=float, default=0.0, metavar="F",
                   help="draw this share of each epoch's polyp-free frames in proportion to the model's peak "
                        "probability on them, scored before the epoch (hard-negative mining; default 0: off)")
    p.add_argument("--polyp-mining", type=float, default=0.0, metavar="F",
                   help="draw this share of each epoch's polyp images in proportion to how close the model is to "
                        "missing one of their polyps (1 - its weakest polyp's peak), scored before the epoch: keeps "
                        "a fine-tune that teaches 'nothing here' from silencing small polyps (default 0: off)")
    p.add_argument("--freeze-batchnorm", action="store_true",
                   help="keep BatchNorm statistics fixed while training (for fine-tuning a model with --model: "
                        "small mixed batches otherwise renormalise it away from where it started)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder for checkpoints, log.csv and curves.png")
    p.add_argument("--model", default="", metavar="PATH",
                   help="start from this exported .onnx model (fine-tuning) instead of ImageNet encoder weights")
    p.add_argument("--device", default="cpu", metavar="DEV", help="torch device: cpu (default), cuda, cuda:1")
    p.add_argument("--cache", default="", metavar="DIR",
                   help="resized-image cache (default OUT/../cache; tens of MB, copy it to a GPU machine)")
    p.add_argument("--external", default="", metavar="DIR",
                   help="external validation sets (frames from other hospitals, e.g. ../shared/data/external-val): "
                        "scored at each validation and part of the best checkpoint's choice; never trained on")
    p.add_argument("--external-every", type=int, default=2, metavar="N",
                   help="score every N-th frame of each external set (default 2: a cheap subsample)")
    p.add_argument("--style-mix", type=float, default=0.0, metavar="F",
                   help="give this share of training images the look (Fourier low band or Lab colour statistics) of a "
                        "random training frame of either set, so colour cannot tell polyp frames from polyp-free "
                        "ones (default 0: off)")
    p.add_argument("--close-up", type=float, default=0.0, metavar="F",
                   help="show this share of polyp-free training frames from nearer first (a random window "
                        "enlarged), as folds and mucosa look from close by (default 0: off)")
    p.add_argument("--close-up-zoom", type=zoom_range, default=None, metavar="MIN,MAX",
                   help="how much nearer a close-up is, at least and at most (default 1.5,3)")
    p.add_argument("--processor-look", type=float, default=0.0, metavar="F",
                   help="render this share of training images as another endoscope processor would: contrast-limited "
                        "equalisation (CLAHE), structure enhancement (sharpening) or a vignette (default 0: off)")
    p.add_argument("--keep-epochs", action="store_true",
                   help="also keep each epoch's weights as OUT/epoch_NNN.pt (for choosing and weight averaging)")
    add_model_and_schedule_options(p)
    return p


def add_model_and_schedule_options(p: argparse.ArgumentParser) -> None:
    """The network (encoder, size, decoder) and the optimisation (loss, epochs, rate, steps, resume)."""
    p.add_argument("--encoder", default="efficientnet-lite0", choices=ENCODER_NAMES)
    p.add_argument("--size", type=int, default=256, metavar="N", help="square input side, a multiple of 32 (default 256)")
    p.add_argument("--decoder-channels", default="128,64,32,24,16", metavar="LIST",
                   help="five decoder widths, deepest first")
    p.add_argument("--aspp", action="store_true", help="add an ASPP block at the bottleneck")
    p.add_argument("--no-deep-supervision", action="store_true", help="train the final head only")
    p.add_argument("--loss", default="bce_batch_dice", choices=LOSS_NAMES)
    p.add_argument("--epochs", type=int, default=30, metavar="N")
    p.add_argument("--batch-size", type=int, default=8, metavar="N")
    p.add_argument("--lr", type=float, default=None, metavar="LR",
                   help=f"peak learning rate (default {SCRATCH_LR:g} from the ImageNet encoder, {FINE_TUNE_LR:g} when "
                        f"fine-tuning --model: {SCRATCH_LR:g} wrecks a trained model within a few steps)")
    p.add_argument("--weight-decay", type=float, default=1e-4, metavar="W")
    p.add_argument("--warmup-epochs", type=float, default=1.0, metavar="E")
    p.add_argument("--seed", type=int, default=0, metavar="N")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="torch CPU threads (0 = torch's default)")
    p.add_argument("--no-pretrained", action="store_true", help="random encoder initialisation")
    p.add_argument("--max-steps-per-epoch", type=int, default=0, metavar="N",
                   help="stop each epoch after N steps (0 = the whole split; for smoke runs and quick ablations)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad values in one line (before torch is imported) and fill in the learning rate."""
    import re

    from polyp_live.arguments import check_output_folder
    check_output_folder(p, "--out", args.out)
    args.lr_origin = "--lr"
    if args.lr is None:
        args.lr, args.lr_origin = (FINE_TUNE_LR, "the fine-tuning default, as --model starts from a trained model") \
            if args.model else (SCRATCH_LR, "the default from the ImageNet encoder")
    if not args.lr > 0:
        p.error(f"--lr must be above 0, got {args.lr}")
    if args.max_steps_per_epoch < 0:
        p.error(f"--max-steps-per-epoch must be 0 (the whole split) or more, got {args.max_steps_per_epoch}")
    if args.external_every < 1:
        p.error(f"--external-every must be 1 or more, got {args.external_every}")
    if not re.fullmatch(r"\d+(,\d+)*", args.decoder_channels):
        p.error(f"--decoder-channels must be comma-separated whole numbers such as 128,64,32,24,16, "
                f"got {args.decoder_channels!r}")


def main(argv=None) -> int:
    """``polyp-live train``: train (or resume, or fine-tune) and keep the best checkpoint."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    from rich.markup import escape

    from polyp_live.arguments import check_dataset
    from polyp_live.core.errors import PolypLiveError
    from polyp_live.realtime import terminal
    from polyp_live.training.trainer import CheckpointWriteError, check_config

    console = terminal.console(stderr=True)
    try:
        config = make_config(args)
        check_config(config)  # the settings before the data: a run refused for both names its settings
        check_dataset(parser, "--data", args.data, "polyps")
        check_dataset(parser, "--negatives", args.negatives, "negatives")
        result = run_training(args, config, console)
    except CheckpointWriteError as exc:   # before the rest: the run itself failed (exit 1), not its inputs
        console.print(f"polyp-live train: [red]error:[/red] {escape(printable(exc))}", highlight=False, soft_wrap=True)
        return 1
    except (PolypLiveError, OSError) as exc:
        console.print(f"polyp-live train: [red]error:[/red] {escape(printable(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; the last completed epoch is in last.pt, continue with --resume")
        return 130
    best = max(result["history"], key=lambda r: r["val_score"])
    console.print(f"best epoch {best['epoch']}: validation Dice {best['val_dice']:.4f}, false alarms "
                  f"{best['val_false_alarm']:.3f} after {result['epochs']} epochs")
    return 0


def make_config(args: argparse.Namespace):
    """The TrainConfig the options describe."""
    from polyp_live.training.encoders import ENCODERS
    from polyp_live.training.losses import LOSSES
    from polyp_live.training.trainer import TrainConfig
    from polyp_live.training.unetplusplus import ModelConfig
    assert set(ENCODER_NAMES) == set(ENCODERS) and set(LOSS_NAMES) == set(LOSSES), "update the name lists"

    widths = tuple(int(v) for v in args.decoder_channels.split(","))
    return TrainConfig(
        data=args.data, out=args.out, size=args.size,
        model=ModelConfig(encoder=args.encoder, decoder_channels=widths, aspp=args.aspp,
                          deep_supervision=not args.no_deep_supervision),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, loss=args.loss, seed=args.seed, threads=args.threads,
        pretrained=not args.no_pretrained, max_steps_per_epoch=args.max_steps_per_epoch,
        negatives=args.negatives, negatives_per_batch=args.negatives_per_batch,
        negative_peak_weight=args.negative_peak_weight, polyp_core_weight=args.polyp_core_weight,
        negative_mining=args.negative_mining, polyp_mining=args.polyp_mining, init=args.model,
        freeze_batchnorm=args.freeze_batchnorm, external=args.external, external_every=args.external_every,
        keep_epochs=args.keep_epochs, style_mix=args.style_mix, close_up=args.close_up,
        processor_look=args.processor_look,
        **({"close_up_zoom": args.close_up_zoom} if args.close_up_zoom else {}),   # else the trainer's default
        device=args.device, cache=args.cache)


def run_training(args: argparse.Namespace, config, console) -> dict:
    """Train with a progress bar on a terminal, else with plain progress lines; either way into OUT/train.log."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from polyp_live.training.progress_lines import LineProgress, LoggedProgress
    from polyp_live.training.trainer import train

    # train() opens the display when the first epoch starts: an error before it prints alone.
    log = Path(args.out) / "train.log"
    if console.is_terminal:
        progress = LoggedProgress(Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                           TimeElapsedColumn(), console=console), log)
    else:  # nohup, a pipe, CI: plain lines (rich draws nothing there)
        progress = LineProgress(log_path=log)
    # A resumed run continues with the rate (and schedule) stored in last.pt.
    header = "" if args.resume else f"learning rate {args.lr:g} ({args.lr_origin})"
    try:
        return train(config, resume=args.resume, progress=progress, header=header)
    finally:
        if progress.live.is_started:  # stop() of a display never opened still prints a line
            progress.stop()


if __name__ == "__main__":
    sys.exit(main())
