#!/usr/bin/env python3
"""Train the UNet++ polyp segmenter on a dataset folder (images/, masks/, optional splits/).

Example:
    python tools/train.py --data ../shared/data/kvasir-seg --out runs/lite0-256 --epochs 30
    python tools/train.py --data ../shared/data/kvasir-seg --out runs/lite0-256 --epochs 30 --resume
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def parse_args(argv=None) -> argparse.Namespace:
    from polyp_live.training.encoders import ENCODERS
    from polyp_live.training.losses import LOSSES
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder with images/ and masks/")
    p.add_argument("--out", required=True, help="run folder for checkpoints, log.csv and curves.png")
    p.add_argument("--encoder", default="efficientnet-lite0", choices=sorted(ENCODERS))
    p.add_argument("--size", type=int, default=256, help="square input side, a multiple of 32 (default 256)")
    p.add_argument("--decoder-channels", default="128,64,32,24,16", help="five decoder widths, deepest first")
    p.add_argument("--aspp", action="store_true", help="add an ASPP block at the bottleneck")
    p.add_argument("--no-deep-supervision", action="store_true", help="train the final head only")
    p.add_argument("--loss", default="bce_dice", choices=LOSSES)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--no-pretrained", action="store_true", help="random encoder initialisation")
    p.add_argument("--max-steps-per-epoch", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from polyp_live.training.dataset import DatasetError
    from polyp_live.training.trainer import TrainConfig, train
    from polyp_live.training.unetplusplus import InputShapeError, ModelConfig

    console = Console(stderr=True)
    try:
        widths = tuple(int(v) for v in args.decoder_channels.split(","))
        config = TrainConfig(
            data=args.data, out=args.out, size=args.size,
            model=ModelConfig(encoder=args.encoder, decoder_channels=widths, aspp=args.aspp,
                              deep_supervision=not args.no_deep_supervision),
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
            warmup_epochs=args.warmup_epochs, loss=args.loss, seed=args.seed, threads=args.threads,
            pretrained=not args.no_pretrained, max_steps_per_epoch=args.max_steps_per_epoch)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            result = train(config, resume=args.resume, progress=progress)
    except (DatasetError, InputShapeError, FileNotFoundError, ValueError, ImportError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; the last completed epoch is in last.pt, continue with --resume")
        return 130
    console.print(f"best validation Dice {result['best_val_dice']:.4f} after {result['epochs']} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
