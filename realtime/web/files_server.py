"""The files page: ``polyp-live web``. A still or a short clip in, the outlined result and the masks out.

Routes (every one behind the access token and with the security headers of :mod:`.security`):

- ``/``: the page (``static/files.html``);
- ``POST /still``: form fields ``image`` (JPEG, PNG) and optional ``truth`` (its mask): answers JSON with
  the outlined still and the mask as base64 PNG, and Dice and IoU when a mask was sent. Nothing stays
  on the server;
- ``POST /clip``: form field ``clip`` (MP4, MKV, AVI): starts a job (one at a time) and answers its id;
  ``GET /jobs/ID``: its progress; ``GET /jobs/ID/outlined.mp4`` and ``/jobs/ID/masks.zip``: the
  results, deleted :attr:`Limits.result_seconds` after the job ended (and all at exit).

A bad upload gets a 4xx with one line saying what to send instead, and the server goes on serving.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from polyp_live.core.segmenter import Segmenter
from polyp_live.realtime.web.security import add_page_routes, middlewares, same_origin
from polyp_live.realtime.web.uploads import (CLIP_SUFFIXES, STILL_SUFFIXES, ClipJob, Limits, UploadError, new_job_folder,
                                             probe_clip, remove_job, run_clip, save_parts, segment_still)


class FilesPage:
    """The aiohttp application of the files page, with its jobs and its private upload folder.

    Args:
        segmenter: the live path's Segmenter over the loaded model (stills).
        model: the model file, handed to the ``polyp-live`` runs of clips.
        token: the access token (None: loopback without one).
        limits: sizes, durations and time limits.
    """

    def __init__(self, segmenter: Segmenter, model: str, token: str | None, limits: Limits = Limits()):
        self.segmenter, self.model, self.token, self.limits = segmenter, model, token, limits
        self.root = Path(tempfile.mkdtemp(prefix="polyp-live-web-"))
        self.jobs: dict[str, ClipJob] = {}
        self._tasks: set[asyncio.Task] = set()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="polyp-live-still")  # the Segmenter is not shared

    def app(self) -> web.Application:
        app = web.Application(middlewares=middlewares(self.token), client_max_size=1024 * 1024)
        add_page_routes(app, "files.html")
        app.router.add_post("/still", self._still)
        app.router.add_post("/clip", self._clip)
        app.router.add_get("/jobs/{id}", self._progress)
        app.router.add_get("/jobs/{id}/{name}", self._result)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, app) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._worker.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- stills ------------------------------------------------------------------------------------

    async def _still(self, request: web.Request) -> web.Response:
        refuse_other_sites(request)
        _, folder = new_job_folder(self.root)
        try:
            saved = await save_parts(request, folder, {"image": STILL_SUFFIXES, "truth": STILL_SUFFIXES}, self.limits)
            if "image" not in saved:
                raise UploadError("no still in the upload: choose a JPEG or PNG file")
            work = asyncio.get_running_loop().run_in_executor(self._worker, segment_still, self.segmenter,
                                                              saved["image"], saved.get("truth"))
            try:
                answer = await asyncio.wait_for(work, self.limits.still_seconds)
            except asyncio.TimeoutError:
                raise UploadError(f"the still took longer than {self.limits.still_seconds:g} s; send a smaller one",
                                  422) from None
            return web.json_response(answer)
        except UploadError as exc:
            return refusal(exc)
        finally:
            shutil.rmtree(folder, ignore_errors=True)   # the upload is gone once answered

    # ---- clips -------------------------------------------------------------------------------------

    async def _clip(self, request: web.Request) -> web.Response:
        refuse_other_sites(request)
        self._expire()
        if any(job.state == "running" for job in self.jobs.values()):
            return refusal(UploadError("a clip is already being processed (one at a time); try again when it ends",
                                       503))
        job_id, folder = new_job_folder(self.root)
        try:
            saved = await save_parts(request, folder, {"clip": CLIP_SUFFIXES}, self.limits)
            if "clip" not in saved:
                raise UploadError("no clip in the upload: choose an MP4, MKV or AVI file")
            frames, _ = await asyncio.get_running_loop().run_in_executor(None, probe_clip, saved["clip"], self.limits)
        except UploadError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return refusal(exc)
        job = self.jobs[job_id] = ClipJob(job_id, folder, frames)
        task = asyncio.ensure_future(run_clip(job, saved["clip"], self.model, self.limits))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(job.progress(), status=202)

    async def _progress(self, request: web.Request) -> web.Response:
        return web.json_response(self._job(request).progress())

    async def _result(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        files = {"outlined.mp4": job.video, "masks.zip": job.archive}
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound(text=f"no such result: {name} (outlined.mp4 or masks.zip)\n")
        if job.state != "done":
            raise web.HTTPConflict(text=f"the clip is {job.state}: {job.error or 'no results yet'}\n")
        disposition = "inline" if name.endswith(".mp4") and "download" not in request.query else "attachment"
        return web.FileResponse(files[name], headers={
            "Content-Disposition": f'{disposition}; filename="polyp-live-{job.id}-{name}"'})

    def _job(self, request: web.Request) -> ClipJob:
        self._expire()
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            raise web.HTTPNotFound(text="no such job: it never existed or its results were deleted "
                                        f"({self.limits.result_seconds:g} s after it ended); upload the clip again\n")
        return job

    def _expire(self) -> None:
        """Delete the results of jobs that ended more than ``result_seconds`` ago."""
        now = time.monotonic()
        for job_id, job in list(self.jobs.items()):
            if job.state != "running" and now - job.ended > self.limits.result_seconds:
                remove_job(job)
                del self.jobs[job_id]


def refuse_other_sites(request: web.Request) -> None:
    """An upload must come from this server's own page: another site's page cannot post to it."""
    if not same_origin(request):
        raise web.HTTPForbidden(text="uploads must come from this server's own page\n")


def refusal(exc: UploadError) -> web.Response:
    """A bad upload's answer: its HTTP status and the one-line message, as JSON for the page."""
    return web.json_response({"error": str(exc)}, status=exc.status)
