// The teleconsult page: join, camera and microphone, the waiting room, remote video with
// each peer's name and institution, chat over the data channel, mute and camera toggles,
// leave, the host's end button, reconnection with ICE restart, and quality samples.
//
// The page's own routes (cookie session + CSRF header) do the join and take the stats,
// so no access token reaches this script; the join token it gets opens one socket to one
// room, once, for a short while (every reconnection joins afresh).

import { Call } from "./call.js";
import { Signalling } from "./signalling.js";
import { STATS_INTERVAL_MS, summarise } from "./stats.js";

const root = document.getElementById("tc");
const strings = JSON.parse(document.getElementById("tc-strings").textContent);
const config = {
  session: root.dataset.session,
  csrf: root.dataset.csrf,
  joinUrl: root.dataset.joinUrl,
  statsUrl: root.dataset.statsUrl,
  consentUrl: root.dataset.consentUrl,
};
const $ = (id) => document.getElementById(id);
const t = (key, params = {}) =>
  (strings[key] || key).replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));

const state = {
  signalling: null,
  call: null,
  stream: null,
  me: null,
  role: null,
  waiting: false,
  roster: new Map(), // peer id -> { name, institution, role, waiting }
  statsTimer: null,
  counters: new Map(),
  framesDecoded: 0,
  restarts: 0,
  lowBandwidth: root.dataset.lowBandwidth === "true",
};
window.jisrTeleconsult = state; // read by the end-to-end test and handy in the console

function show(section) {
  for (const id of ["lobby", "waiting", "room", "interrupted", "over"]) $(id).hidden = id !== section;
}

function status(text) {
  $("status").textContent = text;
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": config.csrf },
    body: JSON.stringify(body || {}),
  });
  if (!response.ok) {
    let detail = "";
    try {
      detail = (await response.json()).detail || "";
    } catch {
      detail = response.statusText;
    }
    const error = new Error(detail || String(response.status));
    error.status = response.status;
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

// Media -------------------------------------------------------------------------------

function constraints() {
  const video = state.lowBandwidth
    ? { width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: 15, max: 15 } }
    : { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } };
  return { audio: true, video };
}

async function startMedia() {
  if (state.stream) return state.stream;
  state.stream = await navigator.mediaDevices.getUserMedia(constraints());
  $("local").srcObject = state.stream;
  return state.stream;
}

function toggle(kind, button) {
  if (!state.stream) return;
  const tracks = kind === "audio" ? state.stream.getAudioTracks() : state.stream.getVideoTracks();
  const on = !tracks.every((track) => track.enabled);
  for (const track of tracks) track.enabled = on;
  button.setAttribute("aria-pressed", String(!on));
  button.textContent = t(kind === "audio" ? (on ? "tc.mute" : "tc.unmute") : on ? "tc.camera_off" : "tc.camera_on");
}

// Roster and remote video --------------------------------------------------------------

function remember(peer) {
  const id = String(peer.peer_id || peer.from || "");
  if (!id || id === state.me) return null;
  const known = state.roster.get(id) || {};
  const entry = {
    name: peer.name ?? known.name ?? "",
    institution: peer.institution ?? known.institution ?? "",
    role: peer.role ?? known.role ?? "",
    waiting: Boolean(peer.waiting ?? known.waiting),
  };
  state.roster.set(id, entry);
  renderWaitlist();
  renderRecording();
  return id;
}

/** Everyone sees when the consented recorder is in the room. */
function renderRecording() {
  const recording = [...state.roster.values()].some((peer) => peer.role === "recorder");
  $("recording").hidden = !recording;
}

function renderWaitlist() {
  const list = $("waitlist-items");
  list.replaceChildren();
  if (state.role !== "host") return;
  let any = false;
  for (const [id, peer] of state.roster) {
    if (!peer.waiting) continue;
    any = true;
    const item = document.createElement("li");
    item.dataset.peer = id;
    const who = document.createElement("span");
    who.textContent = peer.institution ? `${peer.name} · ${peer.institution}` : peer.name || id;
    const admit = document.createElement("button");
    admit.type = "button";
    admit.className = "primary admit";
    admit.textContent = t("tc.admit");
    admit.addEventListener("click", () => state.signalling.send({ type: "admit", peer_id: id }));
    item.append(who, " ", admit);
    list.append(item);
  }
  $("waitlist").hidden = !any;
}

function remoteFigure(peerId) {
  let figure = document.querySelector(`figure.remote[data-peer="${CSS.escape(peerId)}"]`);
  if (!figure) {
    figure = document.createElement("figure");
    figure.className = "remote";
    figure.dataset.peer = peerId;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    const caption = document.createElement("figcaption");
    figure.append(video, caption);
    $("remotes").append(figure);
  }
  const peer = state.roster.get(peerId) || {};
  const caption = figure.querySelector("figcaption");
  caption.replaceChildren();
  const name = document.createElement("strong");
  name.className = "peer-name";
  name.textContent = peer.name || t("tc.someone");
  const institution = document.createElement("span");
  institution.className = "peer-institution";
  institution.textContent = peer.institution || "";
  caption.append(name, " ", institution);
  return figure;
}

// Chat ---------------------------------------------------------------------------------

function addChat(from, text, mine = false) {
  const item = document.createElement("li");
  if (mine) item.className = "mine";
  const who = document.createElement("strong");
  who.textContent = from;
  const body = document.createElement("bdi");
  body.textContent = text;
  item.append(who, ": ", body);
  $("chat-log").append(item);
  item.scrollIntoView({ block: "nearest" });
}

// Signalling messages ------------------------------------------------------------------

function callAdmittedPeers(peers) {
  for (const peer of peers || []) {
    const id = remember(peer);
    if (id && !state.roster.get(id).waiting) state.call.call(id, state.roster.get(id));
  }
}

async function onMessage({ detail: message }) {
  const call = state.call;
  const from = message.from ? String(message.from) : "";
  switch (message.type) {
    case "welcome": {
      state.me = String(message.peer_id);
      call.me = state.me;
      state.role = message.role || state.role;
      state.waiting = Boolean(message.waiting);
      if (Array.isArray(message.ice_servers)) call.iceServers = message.ice_servers;
      $("end").hidden = state.role !== "host";
      const present = new Set((message.peers || []).map((p) => String(p.peer_id)));
      for (const id of [...call.peers.keys()]) if (!present.has(id)) call.drop(id);
      if (state.waiting) {
        show("waiting");
        for (const peer of message.peers || []) remember(peer);
        return;
      }
      show("room");
      if (message.reconnected) {
        // The room kept us (our old socket was still open there): the others kept their
        // connections too, so an ICE restart on ours is enough.
        status(t("tc.reconnected"));
        for (const peer of message.peers || []) remember(peer);
        for (const id of call.peers.keys()) call.restart(id);
        callAdmittedPeers((message.peers || []).filter((p) => !call.peers.has(String(p.peer_id))));
      } else {
        // A fresh entry: the others saw us leave and dropped their side, so start afresh.
        if (call.peers.size) status(t("tc.reconnected"));
        else status(t("tc.connected"));
        call.close();
        callAdmittedPeers(message.peers);
      }
      return;
    }
    case "admitted": {
      const id = String(message.peer_id || "");
      if (!id || id === state.me) {
        state.waiting = false;
        show("room");
        status(t("tc.admitted"));
        callAdmittedPeers(message.peers);
      } else {
        const peer = state.roster.get(id);
        if (peer) peer.waiting = false;
        remember({ ...message, peer_id: id, waiting: false });
      }
      return;
    }
    case "peer-joined":
      remember({ ...message, peer_id: message.peer_id || from });
      if (!message.waiting) status(t("tc.peer_joined", { name: message.name || "" }));
      return;
    case "peer-reconnected":
      // It will offer again (an ICE restart from a browser, a new connection from aiortc).
      remember({ ...message, peer_id: message.peer_id || from });
      call.expectRestart(String(message.peer_id || from));
      return;
    case "peer-left": {
      const id = String(message.peer_id || from);
      state.roster.delete(id);
      renderWaitlist();
      renderRecording();
      call.drop(id);
      return;
    }
    case "offer":
      remember({ peer_id: from, name: message.name, institution: message.institution });
      await call.onOffer(from, message.sdp, state.roster.get(from));
      return;
    case "answer":
      await call.onAnswer(from, message.sdp);
      return;
    case "candidate":
      await call.onCandidate(from, message.candidate);
      return;
    case "chat":
      addChat((state.roster.get(from) || {}).name || from, String(message.text || ""));
      return;
    case "ended":
      finish(t("tc.ended"));
      return;
    case "error":
      status(t("tc.error", { detail: message.detail || message.code || "" }));
      return;
    default:
  }
}

// Joining and leaving ------------------------------------------------------------------

async function join() {
  $("join").disabled = true;
  status(t("tc.joining"));
  try {
    // The first join tells the role, the ICE servers and low-bandwidth mode before media
    // starts; the socket uses it once, and joins afresh when it reconnects.
    const answer = await post(config.joinUrl);
    let spare = answer;
    const signalling = new Signalling(async () => {
      const grant = spare || (await post(config.joinUrl));
      spare = null;
      return grant;
    });
    state.signalling = signalling;
    state.role = answer.role;
    state.lowBandwidth = state.lowBandwidth || Boolean(answer.low_bandwidth);
    $("low-bandwidth").hidden = !state.lowBandwidth;
    const stream = await startMedia();
    state.call = new Call({
      signalling,
      iceServers: answer.ice_servers,
      localStream: stream,
      lowBandwidth: state.lowBandwidth,
    });
    wireCall(state.call);
    signalling.addEventListener("message", (event) => {
      onMessage(event).catch((error) => console.warn("signalling", error));
    });
    signalling.addEventListener("down", () => status(t("tc.reconnecting")));
    signalling.addEventListener("replaced", () => finish(t("tc.replaced")));
    signalling.addEventListener("refused", ({ detail }) =>
      interrupted(t("tc.refused_socket", { detail: detail.reason || detail.code })),
    );
    signalling.addEventListener("closed", ({ detail }) =>
      interrupted(t("tc.closed_socket", { detail: detail.reason || detail.code })),
    );
    await signalling.open();
    startStats();
  } catch (error) {
    $("join").disabled = false;
    status(error.status === 403 || error.status === 404 ? t("tc.refused", { detail: error.message }) : t("tc.error", { detail: error.message }));
  }
}

function wireCall(call) {
  call.addEventListener("track", ({ detail }) => {
    const figure = remoteFigure(detail.peerId);
    const video = figure.querySelector("video");
    if (video.srcObject !== detail.stream) video.srcObject = detail.stream;
  });
  call.addEventListener("gone", ({ detail }) => {
    const figure = document.querySelector(`figure.remote[data-peer="${CSS.escape(detail.peerId)}"]`);
    if (figure) figure.remove();
  });
  call.addEventListener("chat", ({ detail }) => {
    addChat((state.roster.get(detail.peerId) || {}).name || detail.peerId, detail.text);
  });
  call.addEventListener("restart", () => {
    state.restarts += 1;
    status(t("tc.reconnecting"));
  });
  call.addEventListener("state", ({ detail }) => {
    if (detail.state === "connected") status(t("tc.connected"));
  });
}

function startStats() {
  window.clearInterval(state.statsTimer);
  state.statsTimer = window.setInterval(async () => {
    let frames = 0;
    for (const [peerId, peer] of state.call.peers) {
      try {
        const result = await summarise(peer.pc, state.counters.get(peerId));
        state.counters.set(peerId, result.counters);
        frames += result.framesDecoded;
        if (state.counters.size && result.sample.video_in_kbps !== null) {
          await post(config.statsUrl, result.sample);
        }
      } catch (error) {
        console.warn("stats", error);
      }
    }
    state.framesDecoded = frames;
  }, STATS_INTERVAL_MS);
}

/** The room refused or closed this socket: the others dropped us; the user may try again. */
function interrupted(text) {
  if (state.call) state.call.close();
  $("interrupted-text").textContent = text;
  $("rejoin").disabled = false;
  show("interrupted");
  status(text);
}

/** "Join again": a fresh join token from the page's route, then the room as usual. */
async function rejoin() {
  $("rejoin").disabled = true;
  status(t("tc.joining"));
  try {
    await state.signalling.rejoin();
  } catch (error) {
    interrupted(
      error.status === 403 || error.status === 404
        ? t("tc.refused", { detail: error.message })
        : t("tc.error", { detail: error.message }),
    );
  }
}

function finish(text) {
  window.clearInterval(state.statsTimer);
  if (state.call) state.call.close();
  if (state.stream) for (const track of state.stream.getTracks()) track.stop();
  $("over-text").textContent = text;
  show("over");
  status(text);
}

// Recording consent -----------------------------------------------------------------------

async function consent(agree) {
  try {
    const answer = await post(config.consentUrl, { recording: agree });
    $("consent-yes").setAttribute("aria-pressed", String(agree));
    $("consent-no").setAttribute("aria-pressed", String(!agree));
    $("consent-state").textContent = answer.recording_allowed
      ? t("tc.consent_all")
      : t(agree ? "tc.consent_given" : "tc.consent_refused");
  } catch (error) {
    $("consent-state").textContent = t("tc.consent_error", { detail: error.message });
  }
}

function leave() {
  if (state.signalling) state.signalling.close();
  finish(t("tc.left"));
}

function end() {
  if (!window.confirm(t("tc.end_confirm"))) return;
  state.signalling.send({ type: "end" });
}

function sendChat(event) {
  event.preventDefault();
  const input = $("chat-text");
  const text = input.value.trim();
  if (!text) return;
  if (!state.call || !state.call.chat(text)) {
    // No data channel open yet: the signalling socket carries it instead.
    state.signalling.send({ type: "chat", text });
  }
  addChat(t("tc.me"), text, true);
  input.value = "";
}

$("join").addEventListener("click", join);
$("consent-yes").addEventListener("click", () => consent(true));
$("consent-no").addEventListener("click", () => consent(false));
$("mute").addEventListener("click", (event) => toggle("audio", event.currentTarget));
$("camera").addEventListener("click", (event) => toggle("video", event.currentTarget));
$("leave").addEventListener("click", leave);
$("end").addEventListener("click", end);
$("rejoin").addEventListener("click", rejoin);
$("chat-form").addEventListener("submit", sendChat);
window.addEventListener("online", () => {
  if (state.call) state.call.restartAll();
});
show("lobby");
