"""One comparator for two runs of a model: does a candidate (an export, an engine, a lower precision)
give the reference's probability maps and masks?

Export parity (torch against its ONNX), ``build-engine --validate`` (an engine against ONNX Runtime
FP32) and ``benchmark`` (every backend against the first) all measure the same three figures with
:func:`compare` and judge them with one :class:`PassRule`, chosen by what the candidate is allowed to
change (:func:`rule_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polyp_live.core.metrics import image_metrics


@dataclass(frozen=True)
class Agreement:
    """How closely a candidate's maps follow the reference's over a set of inputs."""

    images: int
    max_abs_diff: float     # largest probability difference anywhere
    mean_dice: float        # Dice of the thresholded masks, candidate against reference, over the images
    min_dice: float         # the worst image's

    def line(self) -> str:
        return (f"{self.images} images: max abs diff {self.max_abs_diff:.4f}, mask Dice mean {self.mean_dice:.4f} "
                f"min {self.min_dice:.4f}")


@dataclass(frozen=True)
class PassRule:
    """Limits a candidate must keep; None: not judged."""

    max_abs_diff: float | None = None
    min_mean_dice: float | None = None
    min_dice: float | None = None

    def failures(self, agreement: Agreement) -> list[str]:
        """What the agreement breaks, one phrase each (empty: it passes)."""
        broken = []
        if self.max_abs_diff is not None and agreement.max_abs_diff > self.max_abs_diff:
            broken.append(f"max abs diff {agreement.max_abs_diff:.2e} > {self.max_abs_diff:g}")
        if self.min_mean_dice is not None and agreement.mean_dice < self.min_mean_dice:
            broken.append(f"mean mask Dice {agreement.mean_dice:.4f} < {self.min_mean_dice:g}")
        if self.min_dice is not None and agreement.min_dice < self.min_dice:
            broken.append(f"worst image's mask Dice {agreement.min_dice:.4f} < {self.min_dice:g}")
        return broken

    def passes(self, agreement: Agreement) -> bool:
        return not self.failures(agreement)


# The same network at the same precision on another runtime (torch -> ONNX, ONNX Runtime -> TensorRT FP32):
# only float rounding may differ.
SAME_PRECISION = PassRule(max_abs_diff=1e-3, min_mean_dice=0.99, min_dice=0.99)
# A lower precision moves probabilities near the threshold: masks must still agree on average.
LOWER_PRECISION = {"fp16": PassRule(min_mean_dice=0.99), "int8": PassRule(min_mean_dice=0.98)}


def rule_for(precision: str) -> PassRule:
    """The rule for a candidate at ``precision`` against an FP32 reference."""
    return LOWER_PRECISION.get(precision, SAME_PRECISION)


def compare(reference: list[np.ndarray], candidate: list[np.ndarray], threshold: float) -> Agreement:
    """Compare two lists of probability maps of the same inputs (masks at ``threshold``).

    Raises:
        ValueError: the lists differ in length or a pair in shape (they are not runs of the same inputs).
    """
    if len(reference) != len(candidate) or not reference:
        raise ValueError(f"cannot compare {len(candidate)} maps against {len(reference)}: not the same inputs")
    diffs, dices = [], []
    for ref, got in zip(reference, candidate):
        if ref.shape != got.shape:
            raise ValueError(f"a map of shape {got.shape} against one of {ref.shape}: not the same model input")
        diffs.append(float(np.abs(ref.astype(np.float32) - got.astype(np.float32)).max()))
        dices.append(image_metrics(got >= threshold, ref >= threshold)["dice"])
    return Agreement(len(reference), max(diffs), float(np.mean(dices)), float(min(dices)))
