"""Polyp appearances: the per-frame presence decision grouped into the polyps an endoscopist counts.

An appearance starts when the alert rises on a region, follows that region from frame to frame (its
outline's box overlaps the last one, or its centre lies within the region's own size of it, so a
moving camera keeps the same polyp), survives gaps of up to ``gap_s`` seconds and ends after one.
Two regions reported at once are two appearances. A scene cut, a lost signal or a new field of view
ends every open appearance. The tracker holds no thread and no queue: the stage that has each
frame's result feeds it in frame order; :meth:`AppearanceTracker.current` may be read from another
thread (the HUD).

What each appearance keeps: first and last frame index and time, frames shown, peak score, largest
area (fraction of the field of view), the time from the first candidate frame to the alert (what
persistence costs) and its best frame (highest score) as a small image with the outline drawn.
"""

from __future__ import annotations

import base64
import threading
from array import array
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from polyp_live.core.errors import InvalidValue

THUMB_WIDTH = 192
SHORT_S = 0.5  # an appearance shorter than this is a flash (what commercial detectors are judged on)


@dataclass
class Region:
    """One reported region of one frame, in frame pixels."""

    box: tuple[int, int, int, int]  # x, y, w, h
    score: float                     # its peak probability on this frame
    area: float                      # fraction of the field of view
    contours: list[np.ndarray] = field(default_factory=list)

# Regions of one frame whose boxes lie within this share of the larger one's side of each other are one
# polyp: an outline split by a fold or a highlight, not two polyps side by side.
MERGE_GAP = 0.2


def merge_close(regions: list[Region]) -> list[Region]:
    """Merge the regions of one frame that touch or nearly touch (see :data:`MERGE_GAP`)."""
    merged = list(regions)
    changed = True
    while changed and len(merged) > 1:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                pad = max(8.0, MERGE_GAP * max(a.box[2], a.box[3], b.box[2], b.box[3]))
                ax, ay, aw, ah = a.box
                bx, by, bw, bh = b.box
                if bx <= ax + aw + pad and ax <= bx + bw + pad and by <= ay + ah + pad and ay <= by + bh + pad:
                    x0, y0 = min(ax, bx), min(ay, by)
                    x1, y1 = max(ax + aw, bx + bw), max(ay + ah, by + bh)
                    merged[i] = Region((x0, y0, x1 - x0, y1 - y0), max(a.score, b.score), a.area + b.area,
                                       a.contours + b.contours)
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


@dataclass
class Appearance:
    """One polyp, from the frame its alert rose to the last frame it was shown."""

    id: int
    first_frame: int
    first_time: float
    last_frame: int
    last_time: float
    frames_shown: int = 1
    peak_score: float = 0.0
    largest_area: float = 0.0
    time_to_alert: float = 0.0       # seconds from the first candidate frame to the alert
    best_frame: int = 0
    end_reason: str = ""
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    velocity: tuple[float, float] = (0.0, 0.0)  # of the box centre, pixels per second
    thumb_jpeg: bytes = field(default=b"", repr=False)
    _best_image: np.ndarray | None = field(default=None, repr=False)

    def predicted(self, time_s: float) -> tuple[int, int, int, int]:
        """Where the box should be at ``time_s`` if it kept moving as it did (camera or polyp motion)."""
        dt = time_s - self.last_time
        x, y, w, h = self.box
        return (int(round(x + self.velocity[0] * dt)), int(round(y + self.velocity[1] * dt)), w, h)

    def move_to(self, box: tuple[int, int, int, int], time_s: float) -> None:
        dt = time_s - self.last_time
        if dt > 0 and self.frames_shown > 0:
            (ax, ay), (bx, by) = _centre(self.box), _centre(box)
            v = ((bx - ax) / dt, (by - ay) / dt)
            self.velocity = (0.5 * self.velocity[0] + 0.5 * v[0], 0.5 * self.velocity[1] + 0.5 * v[1]) \
                if self.frames_shown > 1 else v
        self.box = box

    @property
    def duration(self) -> float:
        return max(0.0, self.last_time - self.first_time)

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_") and k not in ("thumb_jpeg", "velocity")}
        out["box"] = list(self.box)
        out["duration_s"] = self.duration
        out["thumbnail_jpeg_base64"] = base64.b64encode(self.thumb_jpeg).decode() if self.thumb_jpeg else ""
        return out


def regions_of(result) -> list[Region]:
    """The regions a :class:`~polyp_live.core.segmenter.SegmentationResult` reports, each with its own peak."""
    decided = result.decision.mask
    if not result.present or not decided.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(decided.astype(np.uint8), connectivity=8)
    x0, y0, w, h = result.roi
    sx, sy = w / decided.shape[1], h / decided.shape[0]
    regions = []
    for k in range(1, count):
        x, y, bw, bh, area = stats[k]
        inside = labels == k
        peak = float(result.raw_prob[inside].max())
        contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        outlines = [(c.astype(np.float32) * (sx, sy) + (x0, y0)).astype(np.int32) for c in contours]
        regions.append(Region((int(x0 + x * sx), int(y0 + y * sy), max(1, int(bw * sx)), max(1, int(bh * sy))),
                              peak, float(area) / decided.size, outlines))
    return merge_close(regions)


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


def _near(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Distance of the centres relative to the regions' size (0 = same centre, 1 = one size away)."""
    ca = (a[0] + a[2] / 2, a[1] + a[3] / 2)
    cb = (b[0] + b[2] / 2, b[1] + b[3] / 2)
    size = max(1.0, (max(a[2], a[3]) + max(b[2], b[3])) / 2)
    return float(np.hypot(ca[0] - cb[0], ca[1] - cb[1]) / size)


class AppearanceTracker:
    """Groups frames into appearances.

    Args:
        gap_s: an appearance survives this many seconds without its region (default 0.5).
        thumbnails: keep each appearance's best frame as a small JPEG with its outline.
    """

    def __init__(self, gap_s: float = 0.5, thumbnails: bool = True):
        if gap_s < 0:
            raise InvalidValue(f"appearance gap must be >= 0 seconds, got {gap_s}")
        self.gap_s, self.thumbnails = gap_s, thumbnails
        self.open: list[Appearance] = []
        self.closed: list[Appearance] = []
        self._next_id = 1
        self._candidate_since: float | None = None
        self._lock = threading.Lock()
        self._current: tuple[int, float] | None = None  # (id, first_time) of the newest open appearance
        self.times, self.scores = array("d"), array("f")  # the presence score per fed frame (timeline)
        self.first_time: float | None = None
        self.last_time: float | None = None

    def end_all(self, reason: str) -> None:
        """End every open appearance (a scene cut, a lost signal, the end of the run)."""
        for appearance in self.open:
            self._close(appearance, reason)
        self.open = []
        self._candidate_since = None
        self._set_current()

    def update(self, frame_index: int, time_s: float, regions: list[Region], candidate: bool, score: float,
               image: np.ndarray | None = None, reset: str = "") -> list[int]:
        """Feed one frame: ``regions`` reported on it (empty when the alert is down), whether it held a
        candidate, its presence score, and the frame (for the best-frame thumbnail). Returns the ids
        of the appearances shown on this frame."""
        if reset in ("scene cut", "roi", "size"):
            self.end_all(reset)
        self.first_time = time_s if self.first_time is None else self.first_time
        self.last_time = time_s
        self.times.append(time_s)
        self.scores.append(score)
        if candidate and self._candidate_since is None:
            self._candidate_since = time_s
        if not candidate:
            self._candidate_since = None
        matched: set[int] = set()
        before = {a.id: a.box for a in self.open}  # where each appearance was on the previous frame
        for region in sorted(merge_close(regions), key=lambda r: -r.score):
            best = self._match(region, time_s, matched)
            if best is None and self._absorb_piece(region, matched, before):
                continue
            if best is None:
                best = Appearance(self._next_id, frame_index, time_s, frame_index, time_s, 0,
                                  time_to_alert=time_s - (self._candidate_since if self._candidate_since is not None
                                                          else time_s))
                self._next_id += 1
                self.open.append(best)
            matched.add(best.id)
            self._extend(best, region, frame_index, time_s, image)
        still_open = []
        for appearance in self.open:
            if appearance.id not in matched and time_s - appearance.last_time > self.gap_s:
                self._close(appearance, "gap")
            else:
                still_open.append(appearance)
        self.open = still_open
        self._set_current()
        return sorted(matched)

    def _match(self, region: Region, time_s: float, matched: set[int]) -> Appearance | None:
        """The open appearance this region continues: the most overlapping (then nearest) where it is
        expected now, among those not yet matched on this frame."""
        best, best_key = None, None
        for appearance in self.open:
            if appearance.id in matched:
                continue
            expected = appearance.predicted(time_s)
            overlap, near = _overlap(region.box, expected), _near(region.box, expected)
            if overlap > 0 or near < 1.0:
                key = (overlap, -near)
                if best_key is None or key > best_key:
                    best, best_key = appearance, key
        return best

    def _absorb_piece(self, region: Region, matched: set[int], before: dict) -> bool:
        """A piece split off a polyp already followed on this frame (inside where it was) is that polyp:
        grow its box; True when it was one."""
        pieces = [a for a in self.open if a.id in matched and a.id in before and _overlap(region.box, before[a.id]) > 0]
        if not pieces:
            return False
        piece_of = pieces[0]
        x0, y0 = min(piece_of.box[0], region.box[0]), min(piece_of.box[1], region.box[1])
        x1 = max(piece_of.box[0] + piece_of.box[2], region.box[0] + region.box[2])
        y1 = max(piece_of.box[1] + piece_of.box[3], region.box[1] + region.box[3])
        piece_of.box = (x0, y0, x1 - x0, y1 - y0)
        piece_of.largest_area = max(piece_of.largest_area, region.area)
        return True

    def _extend(self, appearance: Appearance, region: Region, frame_index: int, time_s: float, image) -> None:
        """The appearance is shown on this frame at this region (and its best frame may be this one)."""
        appearance.move_to(region.box, time_s)
        appearance.frames_shown += 1
        appearance.last_frame, appearance.last_time = frame_index, time_s
        appearance.largest_area = max(appearance.largest_area, region.area)
        if region.score > appearance.peak_score or appearance._best_image is None:
            appearance.peak_score, appearance.best_frame = region.score, frame_index
            if self.thumbnails and image is not None:
                appearance._best_image = _thumbnail(image, region)

    def _close(self, appearance: Appearance, reason: str) -> None:
        appearance.end_reason = reason
        if appearance._best_image is not None:
            ok, jpeg = cv2.imencode(".jpg", appearance._best_image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            appearance.thumb_jpeg = jpeg.tobytes() if ok else b""
            appearance._best_image = None
        self.closed.append(appearance)

    def _set_current(self) -> None:
        newest = max(self.open, key=lambda a: a.first_time, default=None)
        with self._lock:
            self._current = (newest.id, newest.first_time) if newest is not None else None

    def current(self) -> tuple[int, float] | None:
        """(id, first time) of the newest open appearance, for the HUD; safe from any thread."""
        with self._lock:
            return self._current

    def finish(self) -> list[Appearance]:
        """End what is open (the run is over) and return every appearance in order of its start."""
        self.end_all("end of run")
        return sorted(self.closed, key=lambda a: (a.first_frame, a.id))

    def figures(self) -> dict:
        """The run's figures over the appearances ended so far (call :meth:`finish` first)."""
        done = self.closed
        minutes = ((self.last_time or 0.0) - (self.first_time or 0.0)) / 60.0
        delays = sorted(a.time_to_alert for a in done)
        return {"appearances": len(done),
                "minutes": minutes,
                "appearances_per_minute": len(done) / minutes if minutes > 0 else float("nan"),
                "share_shorter_than_0_5_s": (sum(a.duration < SHORT_S for a in done) / len(done)) if done else 0.0,
                "median_time_to_alert_s": float(np.median(delays)) if delays else float("nan"),
                "gap_s": self.gap_s}

    def timeline(self, points: int = 2000) -> dict:
        """The presence score over time, at most ``points`` samples (each the maximum of its span)."""
        times, scores = np.frombuffer(self.times, np.float64), np.frombuffer(self.scores, np.float32)
        if len(times) > points:
            edges = np.linspace(0, len(times), points + 1).astype(int)
            times = np.array([times[a] for a in edges[:-1]])
            scores = np.array([scores[a:b].max() for a, b in zip(edges[:-1], edges[1:])])
        start = self.first_time or 0.0
        return {"t_s": [round(float(t - start), 3) for t in times], "score": [round(float(s), 3) for s in scores]}


def _thumbnail(image: np.ndarray, region: Region) -> np.ndarray:
    """The frame, small, with the region's outline drawn (its box when it has no outline)."""
    scale = THUMB_WIDTH / image.shape[1]
    small = cv2.resize(image, (THUMB_WIDTH, max(1, int(round(image.shape[0] * scale)))), interpolation=cv2.INTER_AREA)
    if region.contours:
        cv2.drawContours(small, [(c.astype(np.float32) * scale).astype(np.int32) for c in region.contours], -1,
                         (0, 255, 0), 2)
    else:
        x, y, w, h = (int(round(v * scale)) for v in region.box)
        cv2.rectangle(small, (x, y), (x + w, y + h), (0, 255, 0), 2)
    return small


def tracker_summary(tracker: AppearanceTracker) -> dict:
    """What ``--stats-json`` and ``--report`` carry: the appearances, the figures and the timeline."""
    appearances = tracker.finish()
    start = tracker.first_time or 0.0
    rows = []
    for a in appearances:
        row = a.as_dict()
        row["first_time"], row["last_time"] = a.first_time - start, a.last_time - start  # from the run's start
        rows.append(row)
    return {"appearances": rows, "figures": tracker.figures(), "timeline": tracker.timeline()}
