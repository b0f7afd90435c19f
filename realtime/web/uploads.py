"""What the files page does with an upload: save it safely, segment a still, run a clip through the product.

An upload is written under a private temporary folder with a generated name (never a name or path
the user gave), counted as it arrives and refused past the size limit. A still is decoded and
segmented by the live path's :class:`~polyp_live.core.segmenter.Segmenter` in a worker thread;
a clip runs through the ``polyp-live`` command itself (``--record --save-masks``) in a child process
that is killed past the time limit, so a clip's outline and masks are exactly the product's.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from polyp_live.core.config import RenderConfig
from polyp_live.realtime.render import overlay
from polyp_live.core.segmenter import Segmenter
from polyp_live.core.errors import PolypLiveError, SourceError
from polyp_live.realtime.video_file import VideoFileSource
from polyp_live.core.readers import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, VIDEO_SUFFIXES, read_whole_image
from polyp_live.core.metrics import image_metrics

STILL_SUFFIXES = {".jpg", ".jpeg", ".png"}
CLIP_SUFFIXES = {".mp4", ".mkv", ".avi"}
assert STILL_SUFFIXES <= IMAGE_SUFFIXES and CLIP_SUFFIXES <= VIDEO_SUFFIXES


class UploadError(PolypLiveError, ValueError):
    """A bad upload: ``status`` is the HTTP code to answer with, the message says what to do."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one upload may cost."""

    max_bytes: int = 100 * 1024 * 1024      # per request, all files together
    max_clip_seconds: float = 60.0          # a clip's duration
    still_seconds: float = 30.0             # decoding and segmenting a still
    clip_seconds: float = 600.0             # the whole run of a clip through polyp-live
    result_seconds: float = 600.0           # a clip's results are deleted this long after it ended


async def save_parts(request, folder: Path, wanted: dict[str, set[str]], limits: Limits) -> dict[str, Path]:
    """Stream the multipart form's file fields named in ``wanted`` (name -> allowed suffixes) to ``folder``.

    Each is saved as ``NAME.SUFFIX`` (our name, the upload's suffix). Returns name -> path.

    Raises:
        UploadError: 413 past ``limits.max_bytes``; 400 for a missing form, an unknown suffix or no file.
    """
    length = request.content_length
    if length is not None and length > limits.max_bytes:
        raise UploadError(too_large(limits), 413)
    if not request.content_type.startswith("multipart/"):
        raise UploadError("send the file as a multipart form (the page's upload form does)")
    reader = await request.multipart()
    saved: dict[str, Path] = {}
    total = 0
    while (part := await reader.next()) is not None:
        if part.name not in wanted or not part.filename:
            await part.release()
            continue
        suffix = Path(part.filename).suffix.lower()
        if suffix not in wanted[part.name]:
            raise UploadError(f"{printable_name(part.filename)}: a {suffix or 'suffix-less'} file cannot be the "
                              f"{part.name}; send {', '.join(sorted(wanted[part.name]))}", 415)
        path = folder / f"{part.name}{suffix}"
        with open(path, "wb") as out:
            while chunk := await part.read_chunk(256 * 1024):
                total += len(chunk)
                if total > limits.max_bytes:
                    raise UploadError(too_large(limits), 413)
                out.write(chunk)
        saved[part.name] = path
    return saved


def too_large(limits: Limits) -> str:
    return f"the upload is larger than {limits.max_bytes // (1024 * 1024)} MB; send a smaller file or a shorter clip"


def printable_name(name: str) -> str:
    """A user's file name, safe to put in a one-line message."""
    return "".join(c if c.isprintable() else "?" for c in Path(name).name)[:80]


def png_base64(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise UploadError("the result could not be encoded as PNG", 500)
    return base64.b64encode(data.tobytes()).decode("ascii")


def segment_still(segmenter: Segmenter, image_path: Path, truth_path: Path | None) -> dict:
    """Outline one still as ``polyp-live --source STILL`` does; with a ground-truth mask, Dice and IoU.

    Runs on the files page's worker thread (the Segmenter keeps state: one caller at a time).
    """
    image = read_whole_image(image_path)
    if image is None:
        raise UploadError("the still cannot be decoded: not a JPEG or PNG image, cut short, or larger than "
                          f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels; send another file", 422)
    truth = None
    if truth_path is not None:
        truth = read_whole_image(truth_path, cv2.IMREAD_GRAYSCALE)
        if truth is None:
            raise UploadError("the ground-truth mask cannot be decoded; send a PNG or JPEG mask", 422)
        if truth.shape != image.shape[:2]:
            raise UploadError(f"the ground-truth mask is {truth.shape[1]}x{truth.shape[0]} but the still is "
                              f"{image.shape[1]}x{image.shape[0]}; send the mask made for this still", 422)
    segmenter.reset()    # a still is a new picture: no history from the previous upload
    result = segmenter.process(image)
    outlined = overlay(image.copy(), result.detection, result.prob, result.roi, RenderConfig(hud=False))
    answer = {"kind": "still", "width": int(image.shape[1]), "height": int(image.shape[0]),
              "polyp": bool(result.present), "outlined": png_base64(outlined), "mask": png_base64(result.mask)}
    if truth is not None:
        scores = image_metrics(result.mask > 0, truth > 127)
        answer.update(dice=round(scores["dice"], 4), iou=round(scores["iou"], 4))
    return answer


def probe_clip(path: Path, limits: Limits) -> tuple[int, float]:
    """(frames, fps) of an uploaded clip, opened with the product's own video reader (what the run will
    read); refused when it cannot be read or lasts too long."""
    source = VideoFileSource(str(path))
    try:
        source.open()
        if source.read() is None:
            raise SourceError("no frame")
        frames = source.frame_count
        # No count in the header: read on, but never past the longest clip allowed.
        while not frames and source.last_index < limits.max_clip_seconds * source.fps and source.read() is not None:
            pass
        frames = frames or source.last_index + 1
        fps = source.fps
    except SourceError:
        raise UploadError("the clip cannot be read as a video (MP4, MKV or AVI); send another file", 422) from None
    finally:
        source.close()
    if frames / fps > limits.max_clip_seconds:
        raise UploadError(f"the clip lasts {frames / fps:.0f} s, longer than the {limits.max_clip_seconds:g} s "
                          "allowed; cut it shorter", 413)
    return frames, fps


@dataclass
class ClipJob:
    """One clip going through ``polyp-live``: its folder, progress and outcome."""

    id: str
    folder: Path
    frames: int
    state: str = "running"          # running | done | failed
    error: str = ""
    ended: float = 0.0
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def video(self) -> Path:
        return self.folder / "outlined.mp4"

    @property
    def masks(self) -> Path:
        return self.folder / "masks"

    @property
    def archive(self) -> Path:
        return self.folder / "masks.zip"

    def progress(self) -> dict:
        """What the page shows: state, frames done (masks written so far) and frames in all."""
        done = self.frames if self.state == "done" else (
            sum(1 for _ in self.masks.glob("*.png")) if self.masks.is_dir() else 0)
        return {"job": self.id, "state": self.state, "done": min(done, self.frames), "frames": self.frames,
                "error": self.error}


def new_job_folder(root: Path) -> tuple[str, Path]:
    """A fresh folder under ``root`` named by a random id."""
    job_id = secrets.token_hex(8)
    folder = root / job_id
    folder.mkdir()
    return job_id, folder


async def run_clip(job: ClipJob, clip: Path, model: str, limits: Limits) -> None:
    """Run ``polyp-live --source CLIP --record --save-masks`` for ``job``; zip the masks; delete the upload."""
    log = job.folder / "polyp-live.log"
    command = [sys.executable, "-m", "polyp_live.realtime.cli", "--source", str(clip), "--model", model,
               "--record", str(job.video), "--save-masks", str(job.masks), "--headless", "--quiet"]
    try:
        with open(log, "wb") as err:
            job.process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                               stderr=err)
            try:
                code = await asyncio.wait_for(job.process.wait(), limits.clip_seconds)
            except asyncio.TimeoutError:
                job.process.kill()
                await job.process.wait()
                raise UploadError(f"the clip took longer than {limits.clip_seconds:g} s to process; send a shorter one")
        if code != 0:
            last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            raise UploadError(last[-1] if last else f"polyp-live ended with exit code {code}")
        await asyncio.get_running_loop().run_in_executor(None, zip_masks, job.masks, job.archive)
        job.state = "done"
    except UploadError as exc:
        job.state, job.error = "failed", str(exc)
    except asyncio.CancelledError:
        if job.process is not None and job.process.returncode is None:
            job.process.kill()
        raise
    finally:
        job.ended = time.monotonic()
        clip.unlink(missing_ok=True)


def zip_masks(folder: Path, archive: Path) -> None:
    """The masks of a clip as one ZIP (PNG is already compressed: stored, not deflated)."""
    tmp = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for path in sorted(folder.glob("*.png")):
            z.write(path, path.name)
    tmp.replace(archive)


def remove_job(job: ClipJob) -> None:
    shutil.rmtree(job.folder, ignore_errors=True)
