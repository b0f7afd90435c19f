"""Segmentation losses on logits: BCE + batch Dice (default), BCE + per-image Dice, focal, weighted IoU.

Polyp-free frames have empty masks. A per-image soft Dice on such a frame is 1 - eps/(sum(p) + eps):
it saturates at 1 as soon as a few pixels are predicted, so its gradient, eps/(sum(p) + eps)^2,
all but vanishes on exactly the frames that need correcting, those with a large false outline. The
default computes Dice over the whole batch (positives and negatives pooled), where every
false-positive pixel on a negative frame enlarges the denominator beside the true polyp mass, and
BCE supplies the per-pixel signal on negatives.

The presence decision scores a region by its *peak* probability, while a mean BCE over 65,536 pixels
hardly notices a confident false region of a few hundred. :func:`negative_peak_loss` adds BCE over
the most confident pixels of each frame whose mask is empty, which is the quantity the decision
thresholds.

The other side of that decision is a polyp that never reaches it: a fine-tune that only pushes peaks
down on polyp-free frames can silence a small polyp entirely while the pooled Dice hardly changes
(release 5's fine-tunes lost one 3 %-of-the-image validation polyp that way).
:func:`polyp_core_loss` adds BCE towards 1 over the most confident pixels *inside each polyp* (each
connected region of the mask, so a small polyp beside a large one keeps its own term): every polyp
must own a confident core about twice the decision's minimum region.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from polyp_live.core.errors import InvalidValue

LOSSES = ("bce_batch_dice", "bce_dice", "focal_dice", "wiou_bce")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum((1, 2, 3))
    total = prob.sum((1, 2, 3)) + target.sum((1, 2, 3))
    return (1 - (2 * inter + eps) / (total + eps)).mean()


def batch_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice over the whole batch: defined and informative when some (or all) masks are empty."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    return 1 - (2 * inter + eps) / (prob.sum() + target.sum() + eps)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * (1 - p_t) ** gamma * bce).mean()


def weighted_iou_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PraNet's structure loss: boundary-weighted BCE plus weighted IoU."""
    weight = 1 + 5 * torch.abs(F.avg_pool2d(target, 31, stride=1, padding=15) - target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    wbce = (weight * bce).sum((2, 3)) / weight.sum((2, 3))
    prob = torch.sigmoid(logits)
    inter = (prob * target * weight).sum((2, 3))
    union = ((prob + target) * weight).sum((2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def negative_peak_loss(logits: torch.Tensor, target: torch.Tensor, fraction: float = 0.01) -> torch.Tensor:
    """BCE towards 0 over the top ``fraction`` of logits of each image whose mask is empty.

    Zero (with a gradient path) when the batch holds no such image.
    """
    empty = target.flatten(1).amax(1) == 0
    if not bool(empty.any()):
        return logits.sum() * 0.0
    flat = logits[empty].flatten(1)
    k = max(1, int(round(fraction * flat.shape[1])))
    return F.softplus(flat.topk(k, dim=1).values).mean()  # BCE with target 0 is softplus(logit)


def polyp_core_loss(logits: torch.Tensor, target: torch.Tensor, fraction: float = 0.004,
                    min_pixels: int = 16) -> torch.Tensor:
    """BCE towards 1 over the top ``fraction`` of the image's pixels inside each polyp region.

    A region is a connected component (8-connectivity) of the mask; one smaller than ``min_pixels``
    (a sliver left by a crop at the border) is ignored, and a region smaller than the top-k uses all
    its pixels. The mean over regions is returned: each polyp weighs the same whatever its size.
    Zero (with a gradient path) when the batch holds no polyp. At 256x256 the default fraction is
    262 pixels, twice the shipped decision's minimum region (0.2 % of the input).
    """
    masks = (target[:, 0] > 0.5).to("cpu", torch.uint8).numpy()
    k = max(1, int(round(fraction * masks.shape[1] * masks.shape[2])))
    terms = []
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        count, labels = cv2.connectedComponents(mask, connectivity=8)
        labels_t = torch.from_numpy(labels.astype(np.int64)).to(logits.device)
        for c in range(1, count):
            inside = logits[i, 0][labels_t == c]
            if inside.numel() < min_pixels:
                continue
            top = inside.topk(min(k, inside.numel())).values
            terms.append(F.softplus(-top).mean())  # BCE with target 1 is softplus(-logit)
    if not terms:
        return logits.sum() * 0.0
    return torch.stack(terms).mean()


def segmentation_loss(name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss by name; ``target`` is float 0/1 shaped like ``logits``."""
    if name == "bce_batch_dice":
        return F.binary_cross_entropy_with_logits(logits, target) + batch_dice_loss(logits, target)
    if name == "bce_dice":
        return F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(logits, target)
    if name == "focal_dice":
        return 10 * focal_loss(logits, target) + soft_dice_loss(logits, target)
    if name == "wiou_bce":
        return weighted_iou_bce(logits, target)
    raise InvalidValue(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
