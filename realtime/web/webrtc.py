"""WebRTC viewers (aiortc): each peer connection sends the one shared H.264 stream, already encoded.

aiortc's RTP sender takes ``av.Packet`` objects from a track as they are (it only packetises them), so
:class:`SharedVideoTrack` hands it the packets of the one shared ring (:mod:`~polyp_live.realtime.web.encoders`:
the web view's own encoder, or the recorder's when the run records): no viewer has an encoder of its
own, and a viewer that is slow only skips ahead in the ring.
"""

from __future__ import annotations

import asyncio

from polyp_live.realtime.web.encoders import SharedH264

MAX_PEERS = 8            # WebRTC viewers at once; more get HTTP 503 (MJPEG still works)
WAIT = 0.5


class Wakeup:
    """An asyncio event that another thread can fire: the encoder's "a packet is ready"."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._event = asyncio.Event()

    def fire_threadsafe(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float = WAIT) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            pass


def shared_video_track(stream: SharedH264, wakeup: Wakeup):
    """A ``MediaStreamTrack`` whose ``recv()`` returns the shared stream's packets from its own position."""
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class SharedVideoTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.position: int | None = None
            stream.add_viewer()
            stream.packets.request_keyframe()

        async def recv(self):
            while True:
                if self.readyState != "live":
                    raise MediaStreamError
                step = stream.packets.next_packet(self.position)
                if step is not None:
                    self.position, packet = step
                    return packet
                await wakeup.wait()

        def stop(self) -> None:
            if self.readyState == "live":
                stream.add_viewer(-1)
            super().stop()

    return SharedVideoTrack()


class WebRtcPeers:
    """The open peer connections; answers an offer with the shared stream and closes them all at the end."""

    def __init__(self, stream: SharedH264, wakeup: Wakeup):
        self.stream, self.wakeup = stream, wakeup
        self.peers: set = set()

    async def answer(self, sdp: str, kind: str) -> dict:
        """The SDP answer to a browser's offer (H.264 only: that is what the shared stream is).

        Raises:
            ValueError: the offer is not a valid SDP offer with a video section.
            OverflowError: :data:`MAX_PEERS` viewers are already connected.
        """
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
        if len(self.peers) >= MAX_PEERS:
            raise OverflowError(f"{MAX_PEERS} WebRTC viewers are connected already; use /stream.mjpg")
        if kind != "offer" or "m=video" not in sdp:
            raise ValueError("expected a WebRTC offer with a video section")
        pc = RTCPeerConnection()
        self.peers.add(pc)
        track = shared_video_track(self.stream, self.wakeup)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._drop(pc, track)

        try:
            # The track and its codec preference come before the offer: the offer's video section is
            # matched to this transceiver, and its codecs are filtered to H.264 as it is read.
            sender = pc.addTrack(track)
            h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
            next(t for t in pc.getTransceivers() if t.sender == sender).setCodecPreferences(h264)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await self._drop(pc, track)
            raise ValueError(f"the WebRTC offer could not be answered: {exc}") from None
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def _drop(self, pc, track) -> None:
        track.stop()
        self.peers.discard(pc)
        await pc.close()

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in list(self.peers)), return_exceptions=True)
        self.peers.clear()
