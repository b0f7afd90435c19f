"""Hard-example mining: which training frames each epoch shows, weighted by how hard they are.

A uniform pass over the polyp-free frames spends most of its picks on frames the model already leaves
empty (release 4's median peak on the training negatives is 0.016) and few on the ones it still calls
polyps: stool, the appendiceal orifice, mucosa next to the painted corner box (25 of 1151 training
negatives pass its operating point). Before each epoch the model scores every training negative (no
augmentation, eval mode); a share of the epoch's negative picks is then drawn in proportion to each
frame's peak probability, the rest stays a uniform pass, so easy frames are still seen and a few
mislabelled frames (the set was screened by eye) cannot take over the batches.

The same schedule serves the polyp images (``--polyp-mining``): a fine-tune that teaches "nothing
here" tends to silence small polyps first (every fine-tune of release 5 lost one 3 %-of-image
validation polyp), so a share of the polyp picks can go to the training polyps whose weakest region
the model is losing, scored the same way before each epoch (:func:`polyp_hardness`).
"""

from __future__ import annotations

import numpy as np

from polyp_live.core.errors import InvalidValue
from polyp_live.core.decision import region_scores

# Weight of a frame the model already leaves empty: keeps every frame drawable, and keeps the mined
# picks from being spent only on the handful of frames above 0.5.
HARDNESS_FLOOR = 0.02


def check_mining_share(share: float, kind: str = "negative") -> None:
    """Refuse a mining share outside [0, 1] (the trainer calls this before loading any data)."""
    if not 0.0 <= share <= 1.0:
        raise InvalidValue(f"{kind} mining share must lie in [0, 1], got {share}")


def polyp_hardness(prob: np.ndarray, mask: np.ndarray, min_pixels: int = 16) -> float:
    """How close a polyp image is to being missed: 1 - the lowest peak probability over its regions.

    A region is a connected component (8-connectivity) of the mask; one smaller than ``min_pixels``
    (a sliver left by a crop at the border) is ignored, as in the polyp-core loss. An image whose
    every polyp the model finds with a peak near 1 scores near 0; one polyp left at 0.2 scores 0.8,
    however well the others are found. A mask with no region counts as found (0.0).
    """
    _, peaks, areas = region_scores(prob, mask > 0)  # the decision's own region labelling
    kept = areas[1:] * mask.size >= min_pixels
    return 1.0 - float(peaks[1:][kept].min()) if kept.any() else 0.0


def mined_schedule(count: int, picks: int, hardness: np.ndarray | None, mined_fraction: float,
                   rng: np.random.Generator, kind: str = "negative") -> np.ndarray:
    """Indices of the ``picks`` frames of one kind that one epoch shows, in order.

    Args:
        count: number of training frames of the kind (polyp-free, or polyp images).
        picks: how many the epoch shows (steps x frames of the kind per batch).
        hardness: each frame's hardness under the model, un-augmented (a polyp-free frame's peak
            probability, a polyp image's :func:`polyp_hardness`); ``None`` or a
            ``mined_fraction`` of 0 gives the plain uniform pass (the order training always used).
        mined_fraction: share of the picks drawn in proportion to ``max(hardness, HARDNESS_FLOOR)``.
        rng: the epoch's generator (the trainer seeds it per epoch, so a resumed run repeats it).
        kind: "negative" or "polyp", for the error messages.
    """
    check_mining_share(mined_fraction, kind)
    uniform = rng.permutation(count)
    if hardness is None or mined_fraction == 0.0:
        return uniform[np.arange(picks) % count]
    if len(hardness) != count:
        raise ValueError(f"hardness has {len(hardness)} values for {count} {kind} frames")
    mined = int(round(mined_fraction * picks))
    weights = np.maximum(hardness, HARDNESS_FLOOR)
    chosen = rng.choice(count, size=mined, p=weights / weights.sum())
    schedule = np.concatenate([uniform[np.arange(picks - mined) % count], chosen])
    return schedule[rng.permutation(picks)]
