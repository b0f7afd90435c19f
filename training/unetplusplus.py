"""UNet++ (Zhou et al., 2018) with nested dense skips, optional ASPP and deep supervision.

The node layout follows segmentation_models_pytorch: nodes live in a ``ModuleDict`` keyed
``x_{depth}_{layer}`` and are built by plain loops, so the model traces and exports to ONNX without
surprises. Upsampling is nearest-neighbour, which every runtime supports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from polyp_live.core.errors import PolypLiveError
from polyp_live.training.encoders import EfficientNetLiteEncoder, load_pretrained


class InputShapeError(PolypLiveError, ValueError):
    """Raised when an input side is not a multiple of the encoder's total stride."""


def check_input_size(height: int, width: int, stride: int = 32) -> None:
    """Refuse sizes the encoder cannot divide, proposing the nearest valid one."""
    bad = [s for s in (height, width) if s % stride or s <= 0]
    if bad:
        def near(s: int) -> int:
            return max(stride, int(round(s / stride)) * stride)
        raise InputShapeError(
            f"input size {height}x{width} is not a multiple of {stride}; use {near(height)}x{near(width)}"
        )


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, dilation: int = 1):
        pad = dilation * (kernel // 2)
        super().__init__(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Upsample x2, concatenate the skip features, two conv-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv1 = ConvBNReLU(cin + cskip, cout)
        self.conv2 = ConvBNReLU(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling at the bottleneck (dilations 1, 6, 12 plus image pooling)."""

    def __init__(self, channels: int, mid: int = 128, rates: tuple[int, ...] = (6, 12)):
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(channels, mid, 1)] + [ConvBNReLU(channels, mid, 3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, mid, 1, bias=False), nn.ReLU(inplace=True))
        self.project = ConvBNReLU(mid * (len(rates) + 2), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class UnetPlusPlusDecoder(nn.Module):
    """Nested dense decoder. ``forward`` returns the final node and the top-row nodes for supervision."""

    def __init__(self, encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...]):
        super().__init__()
        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels needs 5 widths, got {len(decoder_channels)}")
        enc = list(encoder_channels[1:])[::-1]  # deepest first; the raw input is not a skip
        self.in_channels = [enc[0]] + list(decoder_channels[:-1])
        self.skip_channels = enc[1:] + [0]
        self.out_channels = list(decoder_channels)
        self.depth = len(self.in_channels) - 1
        blocks = {}
        for layer in range(self.depth):
            for depth in range(layer + 1):
                if depth == 0:
                    cin, cout = self.in_channels[layer], self.out_channels[layer]
                    cskip = self.skip_channels[layer] * (layer + 1)
                else:
                    cin, cout = self.skip_channels[layer - 1], self.skip_channels[layer]
                    cskip = self.skip_channels[layer] * (layer + 1 - depth)
                blocks[f"x_{depth}_{layer}"] = DecoderBlock(cin, cskip, cout)
        blocks[f"x_0_{self.depth}"] = DecoderBlock(self.in_channels[-1], 0, self.out_channels[-1])
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = features[1:][::-1]
        dense: dict[str, torch.Tensor] = {}
        for layer in range(self.depth):
            for depth in range(self.depth - layer):
                if layer == 0:
                    dense[f"x_{depth}_{depth}"] = self.blocks[f"x_{depth}_{depth}"](feats[depth], feats[depth + 1])
                else:
                    top = depth + layer
                    skips = [dense[f"x_{i}_{top}"] for i in range(depth + 1, top + 1)] + [feats[top + 1]]
                    dense[f"x_{depth}_{top}"] = self.blocks[f"x_{depth}_{top}"](dense[f"x_{depth}_{top - 1}"], torch.cat(skips, 1))
        last = self.depth - 1
        # The nodes at the finest skip level (stride 2): Zhou's top row, used for deep supervision.
        top_row = [dense[f"x_{d}_{last}"] for d in range(last, 0, -1)]
        out = self.blocks[f"x_0_{self.depth}"](dense[f"x_0_{last}"])
        return out, top_row


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model from a checkpoint."""

    encoder: str = "efficientnet-lite0"
    decoder_channels: tuple[int, ...] = (128, 64, 32, 24, 16)
    aspp: bool = False
    deep_supervision: bool = False


class UnetPlusPlus(nn.Module):
    """UNet++ segmenter returning one-channel logits at the input resolution.

    In training mode with deep supervision it returns ``[final, aux1, aux2, ...]``; in eval mode (and
    in export) it returns the final head only.
    """

    def __init__(self, config: ModelConfig, pretrained: bool = False):
        super().__init__()
        self.config = config
        self.encoder = EfficientNetLiteEncoder(config.encoder)
        if pretrained:
            load_pretrained(self.encoder, config.encoder)
        chans = self.encoder.out_channels
        self.aspp = ASPP(chans[-1]) if config.aspp else nn.Identity()
        self.decoder = UnetPlusPlusDecoder(chans, tuple(config.decoder_channels))
        self.head = nn.Conv2d(config.decoder_channels[-1], 1, 3, padding=1)
        if config.deep_supervision:
            top_channels = self.decoder.skip_channels[self.decoder.depth - 1]
            self.aux_heads = nn.ModuleList(nn.Conv2d(top_channels, 1, 1) for _ in range(self.decoder.depth - 1))

    def forward(self, x: torch.Tensor):
        check_input_size(x.shape[2], x.shape[3])
        features = self.encoder(x)
        features[-1] = self.aspp(features[-1])
        out, top_row = self.decoder(features)
        logits = self.head(out)
        if self.training and self.config.deep_supervision:
            aux = [F.interpolate(h(t), scale_factor=2.0, mode="bilinear", align_corners=False)
                   for h, t in zip(self.aux_heads, top_row)]
            return [logits] + aux
        return logits


class ProbabilityModel(nn.Module):
    """Wraps a logits model so the export has one probability output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(x))
