"""Hard-negative mining: which polyp-free training frames each epoch shows, weighted by how hard they are.

A uniform pass over the polyp-free frames spends most of its picks on frames the model already leaves
empty (release 4's median peak on the training negatives is 0.016) and few on the ones it still calls
polyps: stool, the appendiceal orifice, mucosa next to the painted corner box (25 of 1151 training
negatives pass its operating point). Before each epoch the model scores every training negative (no
augmentation, eval mode); a share of the epoch's negative picks is then drawn in proportion to each
frame's peak probability, the rest stays a uniform pass, so easy frames are still seen and a few
mislabelled frames (the set was screened by eye) cannot take over the batches.
"""

from __future__ import annotations

import numpy as np

# Weight of a frame the model already leaves empty: keeps every frame drawable, and keeps the mined
# picks from being spent only on the handful of frames above 0.5.
HARDNESS_FLOOR = 0.02


def check_mining_share(share: float) -> None:
    """Refuse a mining share outside [0, 1] (the trainer calls this before loading any data)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"negative mining share must lie in [0, 1], got {share}")


def negative_schedule(count: int, picks: int, hardness: np.ndarray | None, mined_fraction: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``picks`` polyp-free frames one epoch shows, in order.

    Args:
        count: number of polyp-free training frames.
        picks: how many the epoch shows (steps x negatives per batch).
        hardness: each frame's peak probability under the model, un-augmented; ``None`` or a
            ``mined_fraction`` of 0 gives the plain uniform pass (the order training always used).
        mined_fraction: share of the picks drawn in proportion to ``max(hardness, HARDNESS_FLOOR)``.
        rng: the epoch's generator (the trainer seeds it per epoch, so a resumed run repeats it).
    """
    check_mining_share(mined_fraction)
    uniform = rng.permutation(count)
    if hardness is None or mined_fraction == 0.0:
        return uniform[np.arange(picks) % count]
    if len(hardness) != count:
        raise ValueError(f"hardness has {len(hardness)} values for {count} polyp-free frames")
    mined = int(round(mined_fraction * picks))
    weights = np.maximum(hardness, HARDNESS_FLOOR)
    chosen = rng.choice(count, size=mined, p=weights / weights.sum())
    schedule = np.concatenate([uniform[np.arange(picks - mined) % count], chosen])
    return schedule[rng.permutation(picks)]
