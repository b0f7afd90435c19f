// polyp-live's files page: upload a still or a clip, show what the model outlines, offer the masks.
// Served from the package; the Content-Security-Policy allows nothing else.
"use strict";

const $ = (id) => document.getElementById(id);
const STILLS = [".jpg", ".jpeg", ".png"];
const POLL_MS = 300;

function suffix(name) { const i = name.lastIndexOf("."); return i < 0 ? "" : name.slice(i).toLowerCase(); }

function showError(text) {
  $("error").hidden = !text;
  $("error").textContent = text || "";
}

function link(href, name, text) {
  const a = document.createElement("a");
  a.className = "download"; a.href = href; a.download = name; a.textContent = text;
  $("downloads").appendChild(a);
  return a;
}

function reset() {
  showError("");
  $("result").hidden = true;
  $("progress-box").hidden = true;
  for (const id of ["still-out", "mask-out", "clip-out", "scores"]) $(id).hidden = true;
  $("downloads").replaceChildren();
  $("video").removeAttribute("src");
}

async function answerOf(response) {
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `the server answered ${response.status}`);
  return body;
}

function showStill(answer, stem) {
  const png = (data) => `data:image/png;base64,${data}`;
  $("result").dataset.kind = "still";
  $("result").dataset.polyp = answer.polyp ? "1" : "0";
  $("verdict").textContent = answer.polyp ? "polyp outlined" : "no polyp found";
  $("outlined").src = png(answer.outlined);
  $("mask").src = png(answer.mask);
  $("still-out").hidden = $("mask-out").hidden = false;
  if ("dice" in answer) {
    $("dice").textContent = answer.dice.toFixed(3);
    $("iou").textContent = answer.iou.toFixed(3);
    $("scores").hidden = false;
  }
  link(png(answer.outlined), `${stem}-outlined.png`, "outlined PNG").id = "download-outlined";
  link(png(answer.mask), `${stem}-mask.png`, "mask PNG").id = "download-mask";
  $("result").hidden = false;
}

async function followClip(job) {
  $("progress-box").hidden = false;
  for (;;) {
    const progress = await answerOf(await fetch(`/jobs/${job}`));
    $("progress").max = Math.max(1, progress.frames);
    $("progress").value = progress.done;
    $("progress-text").textContent = `${progress.done} / ${progress.frames} frames`;
    if (progress.state === "failed") throw new Error(progress.error);
    if (progress.state === "done") return progress;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function showClip(job, stem) {
  const progress = await followClip(job);
  $("result").dataset.kind = "clip";
  $("result").dataset.polyp = "";
  $("verdict").textContent = `${progress.frames} frames outlined`;
  $("video").src = `/jobs/${job}/outlined.mp4`;
  $("clip-out").hidden = false;
  link(`/jobs/${job}/outlined.mp4?download=1`, `${stem}-outlined.mp4`, "outlined MP4").id = "download-video";
  link(`/jobs/${job}/masks.zip`, `${stem}-masks.zip`, "masks ZIP").id = "download-masks";
  $("result").hidden = false;
}

async function upload(event) {
  event.preventDefault();
  reset();
  const file = $("file").files[0];
  if (!file) { showError("choose a still or a clip first"); return; }
  const stem = file.name.replace(/\.[^.]*$/, "") || "upload";
  const still = STILLS.includes(suffix(file.name));
  const form = new FormData();
  form.append(still ? "image" : "clip", file, file.name);
  const truth = $("truth").files[0];
  if (still && truth) form.append("truth", truth, truth.name);
  $("send").disabled = true;
  document.body.dataset.busy = "1";
  try {
    const answer = await answerOf(await fetch(still ? "/still" : "/clip", { method: "POST", body: form }));
    if (still) showStill(answer, stem); else await showClip(answer.job, stem);
  } catch (error) {
    showError(error.message);
  } finally {
    $("send").disabled = false;
    document.body.dataset.busy = "0";
  }
}

$("upload").addEventListener("submit", upload);
document.body.dataset.busy = "0";
