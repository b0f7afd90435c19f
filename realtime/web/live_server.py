"""The live view in a browser: ``polyp-live --source ... --web [HOST:]PORT``.

A thread of its own runs an aiohttp server (its own asyncio loop) with:

- ``/``: the page (``static/live.html``): the video over WebRTC, MJPEG when WebRTC fails, the panel
  and the controls;
- ``/offer``: the WebRTC offer/answer (:mod:`.webrtc`); ``/stream.mjpg``: the MJPEG stream any
  ``<img>`` tag or VLC plays;
- ``/ws``: a WebSocket that pushes the panel (polyp indicator, FPS, delays, model, runtime, dropped
  frames, signal and server state) four times a second and takes the controls, which go to
  :meth:`LiveView.control <polyp_live.realtime.view.LiveView.control>` exactly as the window's keys do;
- ``/snapshot.png``: the picture on screen now; ``/glass.json``: what the pages reported about when
  they painted which frame (the glass-to-glass benchmark).

The pipeline only publishes pictures to its :class:`~polyp_live.realtime.view.LiveView`; the
encoders (:mod:`.encoders`) and every viewer run here, and nothing here can make it wait.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from typing import Callable

import cv2

from polyp_live.core.errors import UsageError
from polyp_live.realtime.view import LiveView
from polyp_live.realtime.web.encoders import H264Stream, JpegEncoder, RecordingTap
from polyp_live.realtime.web.security import (WebAddress, add_page_routes, listen, middlewares, same_origin,
                                              secure_headers)
from polyp_live.realtime.web.webrtc import WebRtcPeers, Wakeup

PANEL_PERIOD = 0.25      # seconds between panel updates on the WebSocket
GLASS_SAMPLES = 20000    # paint reports kept for /glass.json


class WebView:
    """Serves the browser view of one running pipeline.

    Args:
        address: where to listen and the access token (:func:`~.security.parse_web_address`).
        view: the pipeline's view: pictures in, controls out.
        panel: returns the panel's figures (:func:`live_panel`), called on the server's thread.
        fps: the source's frame rate (the H.264 stream's keyframe interval is one second of it).
        share_recording: the run records H.264: WebRTC viewers get the recorder's packets
            (:class:`~.encoders.RecordingTap`) instead of a second encoder's.
    """

    def __init__(self, address: WebAddress, view: LiveView, panel: Callable[[], dict], fps: float = 30.0,
                 share_recording: bool = False):
        self.address = address
        self.share_recording = share_recording
        self.view = view
        self.panel = panel
        self.fps = fps
        self.port = address.port
        self.error: BaseException | None = None
        self._start_error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="polyp-live-web", daemon=True)
        self.glass: deque = deque(maxlen=GLASS_SAMPLES)
        self.jpeg = self.h264 = None
        self.peers: WebRtcPeers | None = None
        self.mjpeg_viewers = 0

    @property
    def url(self) -> str:
        return WebAddress(self.address.host, self.port, self.address.token).url

    def start(self, timeout: float = 10.0) -> None:
        """Bind and start serving; returns once the port is open.

        Raises:
            UsageError: the address cannot be bound (in use, not this machine's, not allowed).
        """
        self._thread.start()
        if not self._ready.wait(timeout):
            raise UsageError(f"--web {self.address.host}:{self.address.port}: the server did not start in {timeout:g} s")
        if self._start_error is not None:
            raise self._start_error

    def failure(self) -> BaseException | None:
        """An encoder's or the server's own failure (not a viewer's), for the main thread to raise."""
        for part in (self, self.jpeg, self.h264):
            if part is not None and part.error is not None:
                return part.error
        return None

    def close(self, timeout: float = 3.0) -> None:
        """Close every viewer and stop the server and the encoders."""
        if self._loop is not None and self._closing is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._closing.set)
            except RuntimeError:
                pass  # the loop already ended
        if self._thread.is_alive():
            self._thread.join(timeout)
        for encoder in (self.jpeg, self.h264):
            if encoder is not None:
                encoder.close()

    # ---- the server's thread -------------------------------------------------------------------

    def _run(self) -> None:
        # Not lowered like the encoders: this thread needs little CPU, but when it waits its turn the
        # WebRTC packets leave in bursts and each viewer's jitter buffer grows to absorb them
        # (35 ms less added delay at the median p95, pipeline unchanged: docs/PERFORMANCE.md).
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except Exception as exc:
            self.error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        from aiohttp import web
        self._closing = asyncio.Event()
        wakeup = Wakeup(asyncio.get_running_loop())
        self.jpeg = JpegEncoder(self.view, wakeup.fire_threadsafe)
        if self.share_recording:
            self.h264 = self.view.recording_tap = RecordingTap(wakeup.fire_threadsafe)
        else:
            self.h264 = H264Stream(self.view, self.fps, wakeup.fire_threadsafe)
        self.peers = WebRtcPeers(self.h264, wakeup)
        self._wakeup = wakeup
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            self.port = await listen(runner, self.address, "--web")
        except UsageError as exc:
            self._start_error = exc
            self._ready.set()
            return
        self.jpeg.start()
        self.h264.start()
        self._ready.set()
        await self._closing.wait()
        await self.peers.close()
        await runner.cleanup()

    def _app(self):
        from aiohttp import web
        app = web.Application(middlewares=middlewares(self.address.token), client_max_size=256 * 1024)
        add_page_routes(app, "live.html")
        app.router.add_get("/stream.mjpg", self._mjpeg)
        app.router.add_get("/snapshot.png", self._snapshot)
        app.router.add_get("/ws", self._websocket)
        app.router.add_post("/offer", self._offer)
        app.router.add_get("/glass.json", self._glass)
        return app

    async def _mjpeg(self, request):
        from aiohttp import web
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        secure_headers(response.headers)
        await response.prepare(request)
        self.jpeg.add_viewer()
        seq = -1
        try:
            while not self._closing.is_set():
                newest = self.jpeg.newest()
                if newest is None or newest[0] == seq:
                    await self._wakeup.wait()
                    continue
                seq, data = newest
                # A slow viewer waits here alone; meanwhile the encoder moves on and it gets the newest next.
                await response.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(data), data))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.jpeg.add_viewer(-1)
        return response

    async def _snapshot(self, request):
        from aiohttp import web
        picture = self.view.picture()
        if picture is None:
            raise web.HTTPServiceUnavailable(text="no picture yet: the pipeline has not shown a frame\n")
        ok, data = await asyncio.get_running_loop().run_in_executor(None, cv2.imencode, ".png", picture.image)
        if not ok:
            raise web.HTTPInternalServerError(text="the picture could not be encoded as PNG\n")
        name = f"polyp-live-{time.strftime('%Y%m%d-%H%M%S')}.png"
        return web.Response(body=data.tobytes(), content_type="image/png",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def _offer(self, request):
        from aiohttp import web
        if not same_origin(request):
            raise web.HTTPForbidden(text="a WebRTC offer must come from this server's own page\n")
        try:
            body = await request.json()
            answer = await self.peers.answer(str(body["sdp"]), str(body.get("type", "")))
        except OverflowError as exc:
            raise web.HTTPServiceUnavailable(text=f"{exc}\n")
        except (ValueError, KeyError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"bad WebRTC offer: {exc}\n")
        return web.json_response(answer)

    async def _glass(self, request):
        from aiohttp import web
        return web.json_response({"samples": list(self.glass)})

    async def _websocket(self, request):
        from aiohttp import WSMsgType, web
        if not same_origin(request):
            raise web.HTTPForbidden(text="the panel's WebSocket must come from this server's own page\n")
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        pusher = asyncio.ensure_future(self._push_panel(ws))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await ws.send_str(json.dumps(self._on_message(message.data)))
        finally:
            pusher.cancel()
        return ws

    async def _push_panel(self, ws) -> None:
        try:
            while not ws.closed and not self._closing.is_set():
                await ws.send_str(json.dumps(self._panel_now()))
                await asyncio.sleep(PANEL_PERIOD)
        except (ConnectionError, RuntimeError):
            pass

    def _panel_now(self) -> dict:
        picture = self.view.picture()
        viewers = {"webrtc": len(self.peers.peers) if self.peers else 0, "mjpeg": self.jpeg.viewers if self.jpeg else 0}
        return {**self.panel(), "polyp": bool(picture and picture.polyp),
                "appearance": picture.appearance if picture else "", "frame": picture.frame_index if picture else -1,
                "signal": self.view.signal, "message": self.view.message, "controls": self.view.controls(),
                "viewers": viewers}

    def _on_message(self, text: str) -> dict:
        """One message from a page: a control, or paint reports ``{"painted": [[frame, ms, transport, callback ms], ...]}``."""
        try:
            message = json.loads(text)
            if "painted" in message:
                self._record_paints(message["painted"])
                return {"ok": True}
            return {"controls": self.view.control(str(message["action"]), message.get("value"))}
        except (ValueError, KeyError, TypeError) as exc:
            return {"error": f"control refused: {exc}"}

    def _record_paints(self, painted: list) -> None:
        sent = self.view.shown_at()
        for frame, painted_ms, transport, *callback in painted[:1000]:
            wall = sent.get(int(frame))
            if wall is not None:
                sample = {"frame": int(frame), "transport": str(transport), "added_ms": float(painted_ms) - 1000.0 * wall}
                if callback:   # when the page's callback ran, which can be later than the frame was shown
                    sample["callback_added_ms"] = float(callback[0]) - 1000.0 * wall
                self.glass.append(sample)


def live_panel(pipeline) -> Callable[[], dict]:
    """The panel's figures of a running :class:`~polyp_live.realtime.pipeline.Pipeline`."""
    def figures() -> dict:
        stats, model = pipeline.stats, pipeline.model
        return {"fps": round(stats.rolling_fps(), 1), "video_delay_ms": round(stats.rolling_ms("video_delay"), 1),
                "annotation_delay_ms": round(stats.rolling_ms("annotation_delay"), 1),
                "model": model.model, "precision": model.precision, "runtime": model.backend,
                "dropped": int(stats.counters.get("dropped", 0)), "frames": int(stats.counters.get("frames_out", 0)),
                "server": pipeline.backend.status, "live": pipeline.live,
                "ended": pipeline.done.is_set()}
    return figures
