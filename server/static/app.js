// The page's client of protocol v1 (see server/README.md): microphone -> AudioWorklet -> 16 kHz
// PCM16 -> ws://HOST/v1/stream; partial and final messages are shown as they arrive.
// A token given to the page (/?token=T) is passed on to the websocket.
"use strict";

const $ = (id) => document.getElementById(id);
let ws = null, audio = null, media = null, worklet = null;

function setStatus(text) { $("status").textContent = text; }

function streamUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = new URLSearchParams(location.search).get("token");
  return `${scheme}//${location.host}/v1/stream` + (token ? `?token=${encodeURIComponent(token)}` : "");
}

function showMessage(msg) {
  if (msg.type === "partial") {
    $("partial").textContent = msg.text;
  } else if (msg.type === "final") {
    $("partial").textContent = "";
    if (msg.text) {
      const p = document.createElement("p");
      const time = document.createElement("span");
      time.className = "time";
      time.textContent = `${msg.start.toFixed(1)}–${msg.end.toFixed(1)} s`;
      p.append(time, document.createTextNode(msg.text));
      $("finals").append(p);
    }
  } else if (msg.type === "ready") {
    setStatus(`listening (session ${msg.session})`);
  } else if (msg.type === "end") {
    setStatus("done");
  } else if (msg.type === "error") {
    setStatus(`error: ${msg.code}: ${msg.message}`);
  }
}

async function start() {
  $("start").disabled = true;
  try {
    media = await navigator.mediaDevices.getUserMedia(
      { audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
  } catch (e) {
    setStatus(`no microphone: ${e.message}`);
    $("start").disabled = false;
    return;
  }
  audio = new AudioContext();
  await audio.audioWorklet.addModule("/static/pcm-worklet.js");
  const source = audio.createMediaStreamSource(media);
  worklet = new AudioWorkletNode(audio, "pcm-worklet", { processorOptions: { outRate: 16000 } });
  ws = new WebSocket(streamUrl());
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "start", sample_rate: 16000, encoding: "pcm_s16le", partials: true, words: true }));
    worklet.port.onmessage = (e) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(e.data); };
    source.connect(worklet);
    worklet.connect(audio.destination);   // silent (the worklet writes no output), keeps it pulled
    $("stop").disabled = false;
  };
  ws.onmessage = (e) => showMessage(JSON.parse(e.data));
  ws.onclose = (e) => {
    if (e.code !== 1000) setStatus(`closed: ${e.code} ${e.reason}`);
    release();
  };
  ws.onerror = () => setStatus("connection failed");
}

function stop() {
  $("stop").disabled = true;
  if (worklet) worklet.port.onmessage = null;   // no audio after stop
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ type: "stop" }));
    setStatus("finishing…");
  }
  if (media) media.getTracks().forEach((t) => t.stop());
}

function release() {
  if (media) media.getTracks().forEach((t) => t.stop());
  if (audio) audio.close();
  media = audio = ws = worklet = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

$("start").onclick = start;
$("stop").onclick = stop;
