// polyp-live's live view: the annotated video over WebRTC (MJPEG when WebRTC fails), the panel and the
// controls over one WebSocket. Served from the package; the Content-Security-Policy allows nothing else.
"use strict";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const video = $("video");
const mjpeg = $("mjpeg");
const probe = $("probe");
const WEBRTC_START_MS = 6000;   // no picture over WebRTC by then: fall back to MJPEG
const state = { transport: "", painted: 0, frame: -1, polyp: false, beeps: 0, reports: [] };
window.polypLive = state;

// ---- the frame number drawn by realtime/web/frame_counter.py (keep the layout in step) ---------------
const BITS = 16, CELL = 16, MARGIN = 8;

function currentPicture() {
  if (state.transport === "mjpeg") return [mjpeg, mjpeg.naturalWidth, mjpeg.naturalHeight];
  return [video, video.videoWidth, video.videoHeight];
}

function copyPicture() {
  const [source, w, h] = currentPicture();
  if (!w || !h) return null;
  probe.width = w; probe.height = h;
  const context = probe.getContext("2d", { willReadFrequently: true });
  context.drawImage(source, 0, 0, w, h);
  return context;
}

// Reading the number needs only the strip that carries it: copying the whole picture for every frame
// (as the measuring page once did) is work no viewer's page does, on cores the pipeline may share
// (on two cores the difference was within noise; docs/PERFORMANCE.md).
const STRIP_W = MARGIN + BITS * CELL, STRIP_H = CELL;
const strip = document.createElement("canvas");
strip.width = STRIP_W; strip.height = STRIP_H;
const stripContext = strip.getContext("2d", { willReadFrequently: true });

function copyStrip() {
  const [source, w, h] = currentPicture();
  if (!w || !h) return null;
  stripContext.drawImage(source, 0, h - MARGIN - CELL, STRIP_W, STRIP_H, 0, 0, STRIP_W, STRIP_H);
  return stripContext;
}

// The number in a context holding the strip with its top edge at row `top`.
function counterIn(context, top) {
  const y = top + CELL / 2;
  let number = 0;
  for (let bit = 0; bit < BITS; bit++) {
    const x = MARGIN + bit * CELL + CELL / 2;
    const px = context.getImageData(x - 2, y - 2, 4, 4).data;
    let sum = 0;
    for (let i = 0; i < px.length; i += 4) sum += (px[i] + px[i + 1] + px[i + 2]) / 3;
    number = (number << 1) | (sum / (px.length / 4) > 128 ? 1 : 0);
  }
  return number;
}

window.readFrameCounter = function () {
  const context = copyStrip();
  return context ? counterIn(context, 0) : -1;
};

// The picture on screen now as PNG, with the number it carries (one copy: the two always agree).
window.capturePicture = function () {
  const context = copyPicture();
  return context ? { frame: counterIn(context, probe.height - MARGIN - CELL), png: probe.toDataURL("image/png") } : null;
};

window.samplePixel = function (x, y) {
  const context = copyPicture();
  if (!context) return null;
  return Array.from(context.getImageData(x, y, 1, 1).data.slice(0, 3));
};

// ---- painting: count pictures, and with ?measure=1 report when each frame was painted ------------------
// A report is [frame, shown at (ms since the epoch), transport, this callback's time]: for video, "shown
// at" is when the browser puts the frame on screen (its expectedDisplayTime), which the callback, on a
// busy page, may run well after; for MJPEG, which has no such time, the callback's.
function painted(displayedMs) {
  state.painted += 1;
  if (state.painted === 1) $("waiting").hidden = true;
  if (params.get("measure") === "1") {
    const frame = window.readFrameCounter();
    const now = Date.now();
    if (frame >= 0 && frame !== state.frame) state.reports.push([frame, displayedMs ?? now, state.transport, now]);
    state.frame = frame;
  }
}

function watchVideo() {
  const step = (_, metadata) => {
    painted(metadata && metadata.expectedDisplayTime ? performance.timeOrigin + metadata.expectedDisplayTime : null);
    video.requestVideoFrameCallback(step);
  };
  video.requestVideoFrameCallback(step);
}

function watchMjpeg() {
  // An <img> fed by multipart JPEG fires no event per part: look once per screen refresh.
  let last = null;
  const step = () => {
    if (state.transport !== "mjpeg") return;
    const context = copyStrip();
    if (context) {
      const key = context.getImageData(0, 0, STRIP_W, STRIP_H).data.join(",");
      if (key !== last) { last = key; painted(); }
    }
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

// ---- the video --------------------------------------------------------------------------------------
function useMjpeg(reason) {
  if (state.transport === "mjpeg") return;
  state.transport = "mjpeg";
  video.hidden = true;
  mjpeg.hidden = false;
  mjpeg.src = "/stream.mjpg";
  $("waiting").hidden = true;
  showTransport(reason ? `MJPEG (${reason})` : "MJPEG");
  watchMjpeg();
}

function showTransport(text) {
  $("transport").textContent = text;
  $("panel").dataset.transport = state.transport;
}

async function iceGathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

async function startWebRtc() {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (event) => {
    // A live view wants the newest picture, not a smooth one: ask for no jitter buffer beyond what
    // decoding needs (jitterBufferTarget is the standard name, playoutDelayHint Chromium's older one).
    if ("jitterBufferTarget" in event.receiver) event.receiver.jitterBufferTarget = 0;
    if ("playoutDelayHint" in event.receiver) event.receiver.playoutDelayHint = 0;
    video.srcObject = event.streams[0] || new MediaStream([event.track]);
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed" && params.get("mode") !== "webrtc") useMjpeg("WebRTC failed");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, 2000);
  const answer = await fetch("/offer", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
  });
  if (!answer.ok) throw new Error(`offer refused: ${answer.status} ${(await answer.text()).trim()}`);
  await pc.setRemoteDescription(await answer.json());
  state.transport = "webrtc";
  showTransport("WebRTC (H.264)");
  watchVideo();
  return pc;
}

async function startVideo() {
  if (params.get("mode") === "mjpeg") { useMjpeg(""); return; }
  try {
    window.polypLivePeer = await startWebRtc();
  } catch (error) {
    if (params.get("mode") === "webrtc") { $("message").textContent = String(error); return; }
    useMjpeg("WebRTC unavailable");
    return;
  }
  setTimeout(() => {
    if (state.transport === "webrtc" && state.painted === 0 && params.get("mode") !== "webrtc") {
      useMjpeg("no WebRTC picture");
    }
  }, WEBRTC_START_MS);
}

// ---- the panel and the controls ---------------------------------------------------------------------
let socket = null;

function ms(value) { return value === null || value === undefined ? "–" : `${Math.round(value)} ms`; }

function beep() {
  const AudioContext = window.AudioContext || window.webkitAudioContext;
  if (!AudioContext) return;
  state.audio = state.audio || new AudioContext();
  const osc = state.audio.createOscillator(), gain = state.audio.createGain();
  osc.frequency.value = 880;
  gain.gain.setValueAtTime(0.2, state.audio.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.001, state.audio.currentTime + 0.25);
  osc.connect(gain).connect(state.audio.destination);
  osc.start();
  osc.stop(state.audio.currentTime + 0.25);
  state.beeps += 1;
  document.body.dataset.beeps = String(state.beeps);
}

function reflect(controls) {
  $("pause").setAttribute("aria-pressed", String(controls.paused));
  $("pause").textContent = controls.paused ? "resume" : "pause";
  $("overlay").setAttribute("aria-pressed", String(controls.overlay));
  $("overlay").textContent = controls.overlay ? "overlay on" : "overlay off";
  if (document.activeElement !== $("style")) $("style").value = controls.style;
  if (document.activeElement !== $("smoothing")) $("smoothing").value = controls.smoothing;
  $("controls").dataset.state = JSON.stringify(controls);
}

function alert(id, text) { $(id).hidden = !text; $(id).textContent = text || ""; }

function show(panel) {
  if (panel.error) { $("message").textContent = panel.error; return; }
  if (panel.controls) reflect(panel.controls);
  if (!("fps" in panel)) return;
  const polyp = Boolean(panel.polyp);
  if (polyp && !state.polyp && $("sound").checked) beep();
  state.polyp = polyp;
  $("panel").dataset.polyp = polyp ? "1" : "0";
  $("indicator").textContent = polyp ? `POLYP ${panel.appearance || ""}`.trim() : "no polyp";
  $("fps").textContent = panel.fps.toFixed(1);
  $("video-delay").textContent = ms(panel.video_delay_ms);
  $("annotation-delay").textContent = ms(panel.annotation_delay_ms);
  $("model").textContent = `${panel.model} ${panel.precision}`;
  $("runtime").textContent = panel.runtime;
  $("dropped").textContent = String(panel.dropped);
  alert("signal", panel.signal);
  alert("server", panel.server);
  $("message").textContent = panel.message || (panel.ended ? "the source has ended" : "");
}

function send(action, value) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ action, value }));
}

function connectPanel() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/ws");
  socket.onopen = () => { $("link").textContent = "connected"; };
  socket.onmessage = (event) => show(JSON.parse(event.data));
  socket.onclose = () => {
    $("link").textContent = "disconnected: retrying";
    setTimeout(connectPanel, 1000);
  };
}

function sendReports() {
  if (state.reports.length && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ painted: state.reports.splice(0, state.reports.length) }));
  }
}

$("pause").addEventListener("click", () => send("pause"));
$("overlay").addEventListener("click", () => send("overlay"));
$("style").addEventListener("change", (e) => send("style", e.target.value));
$("smoothing").addEventListener("change", (e) => send("smoothing", e.target.value));
$("sound").addEventListener("change", (e) => {
  // Browsers start audio only from a user gesture: make the context now.
  if (e.target.checked && !state.audio && (window.AudioContext || window.webkitAudioContext)) {
    state.audio = new (window.AudioContext || window.webkitAudioContext)();
  }
});
setInterval(sendReports, 500);
connectPanel();
startVideo();
