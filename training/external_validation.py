"""Scoring on external validation sets: frames from hospitals that no training image comes from.

Two kinds of set are recognised by their layout (``../shared/data/external-val`` holds one of each):

* a **masked set** (``images/`` and ``masks/`` of matching stems, optionally ``sequences.csv`` with
  ``stem,sequence`` rows; without it all frames are one sequence in name order), such as ClinicDB.
  Every frame is scored as a still (the mask the single-frame decision draws) and every sequence is
  run through the live path's :class:`~polyp_live.core.segmenter.Segmenter` in frame order, as
  ``polyp-live`` would play it: mean Dice of the drawn mask, frames until the polyp is first shown
  and the share of frames it is shown on after that, per smoothing variant;
* a **labelled set** (``polyp/`` with polyp frames and ``polyp-free/`` with polyp-free frames, each
  either images or one subfolder of images per sequence), such as PolypGen C1. Every frame gets the
  single-frame candidate score the presence decision thresholds; sweeping it gives the
  detection-vs-false-alarm curve and its area, and the polyp-free sequences are also played through
  the live path for the false alarms ``polyp-live`` would raise on them.

These sets are for choosing (recipes, checkpoints, the operating point) and never for training or
calibration; nothing here writes into them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.backend import Backend
from polyp_live.core.preprocess import resize_for_model
from polyp_live.core.spec import ModelSpec
from polyp_live.core.config import PipelineConfig
from polyp_live.core.decision import DecisionConfig, region_scores, score_text
from polyp_live.core.roi import detect_fov
from polyp_live.core.segmenter import Segmenter
from polyp_live.core.readers import IMAGE_SUFFIXES, read_whole_image
from polyp_live.core.datasets import DatasetError
from polyp_live.training.evaluation import still_probability
from polyp_live.training.frame_evaluation import detection_plot, infer_still, save_detection_plot, still_segmenter
from polyp_live.core.metrics import image_metrics
from polyp_live.training.video_evaluation import Variant
from polyp_live.core.config import RoiConfig

# The polyp is "shown" on a frame when the drawn outline overlaps the true polyp by at least this
# share of the drawn area: an outline beside the polyp is a false alarm, not a finding.
SHOWN_MIN_PRECISION = 0.1


@dataclass(frozen=True)
class MaskedSet:
    """Frames with polyp masks, grouped into sequences (name -> [(image, mask)] in frame order)."""

    name: str
    root: Path
    sequences: dict[str, list[tuple[Path, Path]]]

    @property
    def frames(self) -> list[tuple[Path, Path]]:
        return [pair for seq in self.sequences.values() for pair in seq]


@dataclass(frozen=True)
class LabelledSet:
    """Frames labelled polyp / polyp-free, each kind grouped into sequences (name -> [image])."""

    name: str
    root: Path
    polyp: dict[str, list[Path]]
    polyp_free: dict[str, list[Path]]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _sequences(folder: Path) -> dict[str, list[Path]]:
    """Images directly in ``folder`` form one sequence named after it; each subfolder is another."""
    out = {}
    direct = _images(folder)
    if direct:
        out[folder.name] = direct
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = _images(sub)
        if files:
            out[sub.name] = files
    return out


def _masked_set(root: Path) -> MaskedSet:
    masks = {p.stem: p for p in _images(root / "masks")}
    images = _images(root / "images")
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise DatasetError(f"external set {root}: image {missing[0]} has no mask in {root / 'masks'}")
    if not images:
        raise DatasetError(f"external set {root}: {root / 'images'} holds no images")
    table = root / "sequences.csv"
    if not table.is_file():
        return MaskedSet(root.name, root, {root.name: [(p, masks[p.stem]) for p in images]})
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"stem", "sequence"} <= set(rows[0]):
        raise DatasetError(f"external set {root}: {table.name} needs a 'stem,sequence' header")
    sequence_of = {r["stem"]: r["sequence"] for r in rows}
    unlisted = [p.name for p in images if p.stem not in sequence_of]
    if unlisted:
        raise DatasetError(f"external set {root}: image {unlisted[0]} is not listed in {table.name}")
    sequences: dict[str, list[tuple[Path, Path]]] = {}
    for p in images:  # name order within a sequence is frame order
        sequences.setdefault(sequence_of[p.stem], []).append((p, masks[p.stem]))
    return MaskedSet(root.name, root, sequences)


def _labelled_set(root: Path) -> LabelledSet:
    polyp, free = _sequences(root / "polyp"), _sequences(root / "polyp-free")
    if not polyp or not free:
        raise DatasetError(f"external set {root}: both polyp/ and polyp-free/ need images")
    return LabelledSet(root.name, root, polyp, free)


def _set_at(root: Path) -> MaskedSet | LabelledSet | None:
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return _masked_set(root)
    if (root / "polyp").is_dir() and (root / "polyp-free").is_dir():
        return _labelled_set(root)
    return None


def find_external_sets(root: str | Path) -> list[MaskedSet | LabelledSet]:
    """The external sets at ``root``: ``root`` itself when it is one, else each of its subfolders that is.

    Raises:
        DatasetError: no set is found, or a set's files do not pair up.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"external validation folder {root} does not exist; give --external the folder "
                           "that holds the sets (for example ../shared/data/external-val)")
    own = _set_at(root)
    if own is not None:
        return [own]
    sets = [s for s in (_set_at(p) for p in sorted(root.iterdir()) if p.is_dir()) if s is not None]
    if not sets:
        raise DatasetError(f"{root} holds no external set (a folder with images/ and masks/, or with polyp/ "
                           "and polyp-free/)")
    return sets


def _read(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = read_whole_image(path, flags)
    if image is None:
        raise DatasetError(f"cannot decode {path} (damaged or cut short); replace or remove it")
    return image


def _truth(mask_path: Path, shape: tuple[int, ...]) -> np.ndarray:
    mask = _read(mask_path, cv2.IMREAD_GRAYSCALE)
    if mask.shape != shape[:2]:
        raise DatasetError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                           f"{shape[1]}x{shape[0]}; masks must match their images")
    return mask >= 128


def shown(pred: np.ndarray, truth: np.ndarray) -> bool:
    """The drawn mask shows the true polyp: it overlaps it, mostly not beside it."""
    overlap = np.count_nonzero(pred & truth)
    return overlap > 0 and overlap >= SHOWN_MIN_PRECISION * np.count_nonzero(pred)


def frame_score(prob: np.ndarray, pixel_threshold: float, min_area_fraction: float) -> float:
    """The single-frame candidate score: the best peak among regions large enough (0 when none)."""
    _, peaks, areas = region_scores(prob, prob >= pixel_threshold)
    ok = areas >= min_area_fraction
    ok[0] = False
    return float(peaks[ok].max()) if ok.any() else 0.0


# --- curves -----------------------------------------------------------------------------------------

def curve_area(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the detection-vs-false-alarm curve swept over every score threshold.

    Equal to the probability that a polyp frame scores above a polyp-free one, ties counted half
    (the Mann-Whitney statistic), which is the trapezoidal area of the full sweep.
    """
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if not len(positive) or not len(negative):
        return float("nan")
    ranks = _average_ranks(np.concatenate([positive, negative]))
    u = ranks[:len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), np.float64)
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def roc_points(positive: np.ndarray, negative: np.ndarray) -> list[dict]:
    """(threshold, detection rate, false-alarm rate) at every distinct score, highest threshold first."""
    thresholds = np.unique(np.concatenate([positive, negative]))[::-1]
    return [{"score_threshold": float(t), "detection_rate": float(np.mean(positive >= t)),
             "false_alarm_rate": float(np.mean(negative >= t))} for t in thresholds]


def detection_at_false_alarms(positive: np.ndarray, negative: np.ndarray, rate: float) -> dict:
    """The lowest score threshold whose false-alarm rate stays within ``rate``, and the detection there."""
    within = [p for p in roc_points(positive, negative) if p["false_alarm_rate"] <= rate and p["score_threshold"] > 0]
    if not within:
        return {"score_threshold": 1.0, "detection_rate": 0.0, "false_alarm_rate": 0.0}
    return within[-1]


# --- scoring ----------------------------------------------------------------------------------------

@dataclass
class LabelledScores:
    """Single-frame scores of a labelled set's polyp and polyp-free frames."""

    name: str
    polyp_stems: list[str]
    polyp_scores: np.ndarray
    free_stems: list[str]
    free_scores: np.ndarray

    def at(self, threshold: float) -> dict:
        det, fa = self.polyp_scores >= threshold, self.free_scores >= threshold
        return {"score_threshold": threshold, "polyp_frames": int(len(det)), "detected": int(det.sum()),
                "detection_rate": float(det.mean()), "polyp_free_frames": int(len(fa)),
                "false_alarms": int(fa.sum()), "false_alarm_rate": float(fa.mean())}


def _stem(path: Path, root: Path) -> str:
    return str(path.relative_to(root).with_suffix(""))


def score_labelled(backend: Backend, lset: LabelledSet, pixel_threshold: float, min_area_fraction: float,
                   progress=None) -> LabelledScores:
    """Every frame of ``lset`` as a still through the live path's preparation and backend."""
    segmenter = still_segmenter(backend)
    out = {}
    for kind, sequences in (("polyp", lset.polyp), ("free", lset.polyp_free)):
        paths = [p for seq in sequences.values() for p in seq]
        task = progress.add_task(f"scoring {lset.name} {kind}", total=len(paths)) if progress else None
        scores = []
        for path in paths:
            prob, _ = infer_still(segmenter, _read(path))
            scores.append(frame_score(prob, pixel_threshold, min_area_fraction))
            if progress:
                progress.advance(task)
        out[kind] = ([_stem(p, lset.root) for p in paths], np.asarray(scores, np.float64))
    return LabelledScores(lset.name, *out["polyp"], *out["free"])


def live_config(base: PipelineConfig, decision: DecisionConfig, variant: Variant) -> PipelineConfig:
    """``base`` with the variant's smoothing mode and persistence applied to ``decision``."""
    if variant.persistence is not None:
        decision = replace(decision, k=variant.persistence[0], n=variant.persistence[1])
    return replace(base, smoothing=replace(base.smoothing, mode=variant.smoothing), decision=decision)


def live_false_alarms(backend: Backend, lset: LabelledSet, config: PipelineConfig, progress=None) -> dict:
    """Play each polyp-free sequence through the live path; the share of frames with the alert up."""
    per_sequence, alarms, frames = {}, 0, 0
    task = progress.add_task(f"playing {lset.name} polyp-free",
                             total=sum(map(len, lset.polyp_free.values()))) if progress else None
    for name, paths in lset.polyp_free.items():
        segmenter = Segmenter(backend, config)
        up = 0
        for path in paths:
            up += segmenter.process(_read(path)).present
            if progress:
                progress.advance(task)
        per_sequence[name] = {"frames": len(paths), "alarm_frames": int(up)}
        alarms, frames = alarms + up, frames + len(paths)
    return {"frames": frames, "alarm_frames": int(alarms), "false_alarm_rate": alarms / frames if frames else
            float("nan"), "sequences": per_sequence}


@dataclass
class SequenceRun:
    """One masked sequence played through the live path."""

    name: str
    frames: int
    dice: list[float] = field(default_factory=list)
    shown: list[bool] = field(default_factory=list)

    @property
    def first_shown(self) -> int | None:
        """Frames before the polyp is first shown (0: on the first frame), None when never."""
        return self.shown.index(True) if True in self.shown else None

    @property
    def shown_after_first(self) -> float:
        """Share of frames from the first shown one on where the polyp is shown (0 when never shown)."""
        first = self.first_shown
        return float(np.mean(self.shown[first:])) if first is not None else 0.0


def run_masked_sequences(backend: Backend, mset: MaskedSet, config: PipelineConfig, progress=None) -> list[SequenceRun]:
    """Each sequence of ``mset`` through a fresh live-path Segmenter, frame by frame."""
    runs = []
    task = progress.add_task(f"playing {mset.name}", total=len(mset.frames)) if progress else None
    for name, pairs in mset.sequences.items():
        segmenter = Segmenter(backend, config)
        run = SequenceRun(name, len(pairs))
        for image_path, mask_path in pairs:
            image = _read(image_path)
            truth = _truth(mask_path, image.shape)
            pred = segmenter.process(image).mask > 0
            run.dice.append(image_metrics(pred, truth)["dice"])
            run.shown.append(shown(pred, truth))
            if progress:
                progress.advance(task)
        runs.append(run)
    return runs


def summarise_runs(runs: list[SequenceRun], within: int = 3) -> dict:
    """Mean Dice over frames, shown rate, and the per-sequence first-shown and coverage figures."""
    dice = [d for r in runs for d in r.dice]
    seen = [s for r in runs for s in r.shown]
    per_sequence = {r.name: {"frames": r.frames, "dice": float(np.mean(r.dice)), "first_shown": r.first_shown,
                             "shown_after_first": r.shown_after_first} for r in runs}
    return {"frames": len(dice), "dice": float(np.mean(dice)), "shown_rate": float(np.mean(seen)),
            "sequences": len(runs),
            "sequences_never_shown": sum(r.first_shown is None for r in runs),
            f"sequences_shown_within_{within}_frames": sum(r.first_shown is not None and r.first_shown < within
                                                           for r in runs),
            "min_shown_after_first": float(min(r.shown_after_first for r in runs)),
            "per_sequence": per_sequence}


def still_dice(backend: Backend, mset: MaskedSet, pixel_threshold: float, decision: DecisionConfig,
               progress=None) -> dict:
    """Mean Dice of the masks the single-frame decision draws on each frame as a still."""
    segmenter = still_segmenter(backend)
    single = replace(decision, k=1, n=1)
    dice, shown_count = [], 0
    task = progress.add_task(f"scoring {mset.name} stills", total=len(mset.frames)) if progress else None
    for image_path, mask_path in mset.frames:
        image = _read(image_path)
        truth = _truth(mask_path, image.shape)
        pred = still_probability(segmenter, image, pixel_threshold, single) >= pixel_threshold
        dice.append(image_metrics(pred, truth)["dice"])
        shown_count += shown(pred, truth)
        if progress:
            progress.advance(task)
    return {"frames": len(dice), "dice": float(np.mean(dice)), "shown_rate": shown_count / len(dice)}


def evaluate_external(backend: Backend, sets: list[MaskedSet | LabelledSet], pixel_threshold: float,
                      decision: DecisionConfig, variants: list[Variant], base: PipelineConfig | None = None,
                      progress=None) -> tuple[dict, dict[str, LabelledScores]]:
    """Score every set: returns the JSON-ready summary and the labelled sets' scores (for the choice)."""
    base = base or PipelineConfig()
    summary, scores = {}, {}
    for s in sets:
        if isinstance(s, MaskedSet):
            entry = {"kind": "masks", "root": str(s.root), "still": still_dice(backend, s, pixel_threshold, decision,
                                                                               progress), "live": {}}
            for v in variants:
                entry["live"][v.name] = summarise_runs(run_masked_sequences(
                    backend, s, live_config(base, decision, v), progress))
                entry["live"][v.name].update({"smoothing": v.smoothing, "persistence": _persistence(decision, v)})
        else:
            ls = score_labelled(backend, s, pixel_threshold, decision.min_area_fraction, progress)
            scores[s.name] = ls
            entry = {"kind": "labels", "root": str(s.root),
                     "curve_area": curve_area(ls.polyp_scores, ls.free_scores),
                     "at_operating_point": ls.at(decision.score_threshold),
                     "at_2_percent_false_alarms": detection_at_false_alarms(ls.polyp_scores, ls.free_scores, 0.02),
                     "missed": [st for st, sc in zip(ls.polyp_stems, ls.polyp_scores) if sc < decision.score_threshold],
                     "false_alarm_frames": [st for st, sc in zip(ls.free_stems, ls.free_scores)
                                            if sc >= decision.score_threshold],
                     "live_polyp_free": {}}
            for v in variants:
                entry["live_polyp_free"][v.name] = live_false_alarms(backend, s, live_config(base, decision, v))
                entry["live_polyp_free"][v.name]["persistence"] = _persistence(decision, v)
        summary[s.name] = entry
    return summary, scores


def _persistence(decision: DecisionConfig, variant: Variant) -> str:
    k, n = variant.persistence if variant.persistence is not None else (decision.k, decision.n)
    return f"{k}/{n}"


def plot_curve(scores: LabelledScores, threshold: float, path: str | Path, title: str) -> None:
    """PNG: detection on polyp frames against false alarms on polyp-free frames, operating point marked."""
    plot = detection_plot(path)
    if plot is None:
        return
    plt, fig, ax = plot
    points = roc_points(scores.polyp_scores, scores.free_scores)
    fa = [0.0] + [100 * p["false_alarm_rate"] for p in points]
    det = [0.0] + [100 * p["detection_rate"] for p in points]
    at = scores.at(threshold)
    ax.plot(fa, det, "-", lw=1.5, label=f"area {curve_area(scores.polyp_scores, scores.free_scores):.3f}")
    ax.plot([100 * at["false_alarm_rate"]], [100 * at["detection_rate"]], "r*", ms=14,
            label=f"operating point: score {score_text(threshold)}")
    ax.axvline(2.0, color="grey", lw=0.8, ls=":")
    save_detection_plot(plt, fig, ax, path, title, "polyp frames detected (%)")


def write_external_report(summary: dict, scores: dict[str, LabelledScores], out: str | Path, model: str,
                          threshold: float) -> Path:
    """``out/external_summary.json`` and one ``external_<set>_detection_vs_false_alarms.png`` per labelled set."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, ls in scores.items():
        plot_curve(ls, threshold, out / f"external_{name}_detection_vs_false_alarms.png",
                   f"{Path(model).name} on {name}: {len(ls.polyp_scores)} polyp frames, "
                   f"{len(ls.free_scores)} polyp-free frames")
    path = out / "external_summary.json"
    path.write_text(json.dumps({"model": model, "sets": summary}, indent=2) + "\n")
    return path


# --- model-size arrays for the trainer ------------------------------------------------------------

@dataclass
class ExternalArrays:
    """External sets cropped to their field of view and resized to the model input, for validation in training."""

    masked: dict[str, tuple[np.ndarray, np.ndarray]]     # name -> (images, masks 0/1)
    labelled: dict[str, tuple[np.ndarray, np.ndarray]]   # name -> (polyp images, polyp-free images)


def _model_size(path: Path, spec: ModelSpec, mask_path: Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    image = _read(path)
    x, y, w, h = detect_fov(image, RoiConfig().brightness)
    small = resize_for_model(image[y:y + h, x:x + w], spec)
    if mask_path is None:
        return small, None
    truth = _truth(mask_path, image.shape)[y:y + h, x:x + w].astype(np.uint8) * 255
    mask = resize_for_model(np.dstack([truth] * 3), spec)[..., 0] >= 128
    return small, mask.astype(np.uint8)


def load_external_arrays(root: str | Path, spec: ModelSpec, every: int = 1) -> ExternalArrays:
    """Every ``every``-th frame of each external set at model size (field of view first, as the live path)."""
    masked, labelled = {}, {}
    for s in find_external_sets(root):
        if isinstance(s, MaskedSet):
            pairs = [_model_size(i, spec, m) for i, m in s.frames[::every]]
            masked[s.name] = (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
        else:
            pos = [p for seq in s.polyp.values() for p in seq][::every]
            neg = [p for seq in s.polyp_free.values() for p in seq][::every]
            labelled[s.name] = (np.stack([_model_size(p, spec)[0] for p in pos]),
                                np.stack([_model_size(p, spec)[0] for p in neg]))
    return ExternalArrays(masked, labelled)
