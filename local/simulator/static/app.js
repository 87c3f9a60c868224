// The chat page: you are a WhatsApp user writing to the bot. Plain JS, no build step.
// State comes from /api/state, then live from /api/events (Server-Sent Events).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { users: new Map(), messages: new Map(), current: null, typingUntil: {} };
let recorder = null;
const micIcon = $("mic").innerHTML;
// The simulator's per-run token: every state-changing call carries it (another site's page cannot).
const TOKEN = document.querySelector('meta[name="simulator-token"]').content;
const JSON_HEADERS = { "Content-Type": "application/json", "X-Simulator-Token": TOKEN };

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// WhatsApp's formatting: *bold*, _italic_, ~strike~, ```mono```.
function formatText(text) {
  return escapeHtml(text)
    .replace(/```([\s\S]+?)```/g, "<code>$1</code>")
    .replace(/(^|\W)\*(\S[^*\n]*?)\*(?=\W|$)/g, "$1<b>$2</b>")
    .replace(/(^|\W)_(\S[^_\n]*?)_(?=\W|$)/g, "$1<i>$2</i>")
    .replace(/(^|\W)~(\S[^~\n]*?)~(?=\W|$)/g, "$1<s>$2</s>");
}

const clock = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const CLOCK = '<svg viewBox="0 0 16 16" width="12" height="12"><circle cx="8" cy="8" r="6.5" fill="none" stroke="currentColor"/><path d="M8 4v4l3 2" fill="none" stroke="currentColor"/></svg>';
const STOP = '<svg viewBox="0 0 24 24" width="22" height="22"><rect x="6" y="6" width="12" height="12" rx="2" fill="currentColor"/></svg>';
const ticks = { pending: CLOCK, delivered: "✓✓", read: "✓✓", failed: "!" };

function summary(message) {
  if (!message) return "a message";
  if (message.type === "audio") return message.voice ? "Voice message" : "Audio";
  if (message.type === "image") return `Photo${message.text ? ": " + message.text : ""}`;
  if (message.type === "document") return `${message.extra?.filename || "Document"}${message.text ? ": " + message.text : ""}`;
  return message.text || `[${message.type}]`;  // text, and the body of reply buttons
}

function bubble(message) {
  const div = document.createElement("div");
  div.className = `msg ${message.sender}`;
  div.dataset.id = message.id;
  let html = "";
  if (message.context_id) {
    const quoted = state.messages.get(message.context_id);
    const who = quoted && quoted.sender === "bot" ? "WhatsBot" : "You";
    html += `<div class="quote"><div class="who">${who}</div>${escapeHtml(summary(quoted)).slice(0, 160)}</div>`;
  }
  if (message.type === "audio") {
    const preload = message.sender === "bot" ? "metadata" : "none"; // the bot's voice notes show their length
    html += `<audio controls preload="${preload}" src="/api/media/${message.media_id}"></audio>`;
    html += `<div class="voice-label">${message.voice ? "voice note" : escapeHtml(message.mime_type || "audio")}</div>`;
  } else if (["image", "sticker", "document"].includes(message.type) && message.media_id) {
    html += attachmentHtml(message);
  } else if (message.type === "text") {
    html += `<span class="text">${formatText(message.text || "")}</span>`;
  } else if (message.type === "interactive") {  // the bot's reply buttons, or the user's tap on one
    html += `<span class="text${message.sender === "user" ? " tap" : ""}">${formatText(message.text || "")}</span>`;
    if (message.sender === "bot") html += buttonsHtml(message);
  } else {
    html += `<span class="text"><i>[${escapeHtml(message.type)} message]</i></span>`;
  }
  let foot = clock(message.timestamp);
  if (message.sender === "user") {
    const title = message.error ? ` title="${escapeHtml(message.error)}"` : "";
    foot += `<span class="ticks ${message.status}"${title}>${ticks[message.status] || "✓"}</span>`;
  }
  div.innerHTML = html + `<span class="foot">${foot}</span>`;
  div.querySelectorAll(".reply-button").forEach((button) => {  // a tap sends a real button_reply
    button.onclick = () => post({ user: message.user, reply_id: button.dataset.id, context_id: message.id });
  });
  return div;
}

// Reply buttons as WhatsApp shows them under the message; each stays tappable (try a double tap).
function buttonsHtml(message) {
  const buttons = message.extra?.interactive?.action?.buttons || [];
  const items = buttons.map((b) => `<button type="button" class="reply-button" data-id="${escapeHtml(b.reply.id)}">${escapeHtml(b.reply.title)}</button>`);
  return `<div class="reply-buttons">${items.join("")}</div>`;
}

// A photo or sticker shows itself; a document shows its name; the caption follows.
function attachmentHtml(message) {
  const src = `/api/media/${encodeURIComponent(message.media_id)}`;
  let html = message.type === "document"
    ? `<a class="doc" href="${src}" target="_blank">📄 ${escapeHtml(message.extra?.filename || "document")}</a>`
    : `<img class="${message.type === "sticker" ? "sticker" : "photo"}" src="${src}" alt="${message.type}">`;
  if (message.text) html += `<span class="text caption">${formatText(message.text)}</span>`;
  return html;
}

// Unchanged bubbles keep their element, so an audio player is not reset by the next event.
const nodes = new Map();
function cachedBubble(message) {
  const signature = JSON.stringify(message) + (state.messages.has(message.context_id) ? "q" : "");
  const cached = nodes.get(message.id);
  if (cached && cached.signature === signature) return cached.element;
  const element = bubble(message);
  nodes.set(message.id, { signature, element });
  return element;
}

function render() {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const list = [...state.messages.values()].filter((m) => m.user === state.current).sort((a, b) => a.seq - b.seq);
  box.replaceChildren(...list.map(cachedBubble));
  const typing = (state.typingUntil[state.current] || 0) > Date.now() / 1000;
  if (typing) {
    const dots = document.createElement("div");
    dots.className = "typing-bubble";
    dots.innerHTML = "<span></span><span></span><span></span>";
    box.append(dots);
  }
  $("bot-status").className = typing ? "status typing" : "status";
  const me = state.users.get(state.current);
  $("bot-status").innerHTML = typing ? "typing…" : `as <span id="me">${me ? escapeHtml(me.name) : "…"}</span>`;
  if (atBottom || typing) box.scrollTop = box.scrollHeight;
  renderUsers();
  markRead();
}

function renderUsers() {
  const items = [...state.users.values()].map((user) => {
    const li = document.createElement("li");
    li.dataset.key = user.key;
    li.className = user.key === state.current ? "current" : "";
    const unread = [...state.messages.values()].filter((m) => m.user === user.key && m.sender === "bot" && m.status !== "read").length;
    const badge = unread && user.key !== state.current ? `<span class="badge">${unread}</span>` : "";
    li.innerHTML = `<div class="avatar">${escapeHtml(user.name.slice(0, 1).toUpperCase())}</div>
      <div class="meta"><div>${escapeHtml(user.name)}${isAdmin(user.key) ? ' <span class="admin-tag">admin</span>' : ""}</div><div class="phone">${escapeHtml(user.phone ? "+" + user.phone : user.user_id)}</div></div>${badge}`;
    li.onclick = () => select(user.key);
    if (isAdmin(state.current) && !isAdmin(user.key)) li.append(...adminButtons(user.key));
    return li;
  });
  $("users").replaceChildren(...items);
}

// Guardrails: while an admin (ADMIN_USERS) is the current user, each other user gets pause/resume
// buttons that send the admin's command into the admin's own chat, as typing it would.
function isAdmin(key) {
  return (state.admins || []).includes(key);
}

// A handoff: the admin's chat holds the bot's notifications and the user's forwarded messages;
// "reply" starts `/reply <user> ` in the composer, "resume" gives the chat back to the bot.
function adminButtons(key) {
  const reply = document.createElement("button");
  reply.className = "ghost admin-action";
  reply.textContent = "reply";
  reply.title = `Answer ${key} as a person (/reply ${key} …)`;
  reply.onclick = (event) => {
    event.stopPropagation();
    $("text").value = `/reply ${key} `;
    $("text").focus();
  };
  return [reply, ...["pause", "resume"].map((verb) => {
    const button = document.createElement("button");
    button.className = "ghost admin-action";
    button.textContent = verb;
    button.title = `Send /${verb} ${key} as the admin`;
    button.onclick = (event) => {
      event.stopPropagation();
      post({ user: state.current, text: `/${verb} ${key}` });
    };
    return button;
  })];
}

let readTimer = null;
function markRead() {  // the page shows the bot's messages: WhatsApp would report them read
  const unread = [...state.messages.values()].some((m) => m.user === state.current && m.sender === "bot" && m.status !== "read");
  if (!unread || document.hidden || readTimer) return;
  readTimer = setTimeout(() => {
    readTimer = null;
    fetch("/api/read", { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ user: state.current }) });
  }, 600);
}

function select(key) {
  state.current = key;
  localStorage.setItem("whatsbot-user", key);
  render();
  $("text").focus();
}

function showError(text) {
  $("composer-error").textContent = text || "";
}

async function post(body) {
  showError("");
  const isForm = body instanceof FormData;
  const response = await fetch("/api/messages", {
    method: "POST",
    headers: isForm ? { "X-Simulator-Token": TOKEN } : JSON_HEADERS,
    body: isForm ? body : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) showError(answer.error || answer.message?.error || `the simulator answered ${response.status}`);
}

function sendAudio(blob, voice, name) {
  const form = new FormData();
  form.append("user", state.current);
  form.append("voice", voice);
  form.append("audio", blob, name);
  return post(form);
}

async function toggleRecording() {
  if (recorder) { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) { showError("this browser cannot record audio here (it needs http://127.0.0.1 or https)"); return; }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (error) { showError(`microphone: ${error.message}`); return; }
  const type = ["audio/ogg;codecs=opus", "audio/webm;codecs=opus", "audio/webm"].find((t) => MediaRecorder.isTypeSupported(t));
  recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const parts = [];
  recorder.ondataavailable = (event) => parts.push(event.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((track) => track.stop());
    $("mic").classList.remove("recording");
    $("mic").innerHTML = micIcon;
    const blob = new Blob(parts, { type: recorder.mimeType });
    recorder = null;
    if (blob.size) sendAudio(blob, "1", blob.type.includes("ogg") ? "voice.ogg" : "voice.webm");
  };
  recorder.start();
  $("mic").classList.add("recording");
  $("mic").innerHTML = STOP;
}

function connect() {
  const events = new EventSource("/api/events");
  events.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.kind === "message") {
      state.messages.set(data.message.id, data.message);
      if (data.message.sender === "bot") state.typingUntil[data.message.user] = 0;
    } else if (data.kind === "user") {
      state.users.set(data.user.key, data.user);
    } else if (data.kind === "typing") {
      state.typingUntil[data.user] = data.until;
      setTimeout(render, (data.until - Date.now() / 1000) * 1000 + 50);
    }
    render();
  };
  events.onopen = load; // (re)load everything on every (re)connect: nothing is missed
}

async function load() {
  const snapshot = await (await fetch("/api/state")).json();
  snapshot.users.forEach((user) => state.users.set(user.key, user));
  state.admins = snapshot.admins || [];
  snapshot.messages.forEach((message) => state.messages.set(message.id, message));
  const saved = localStorage.getItem("whatsbot-user");
  if (!state.current) state.current = state.users.has(saved) ? saved : snapshot.users[0]?.key;
  render();
}

$("composer").onsubmit = (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || !state.current) return;
  $("text").value = "";
  post({ user: state.current, text });
};
$("reset").onclick = () => state.current && post({ user: state.current, text: "/reset" });
$("mic").onclick = toggleRecording;
$("upload").onchange = (event) => {
  const file = event.target.files[0];
  if (file && state.current) sendAudio(file, "auto", file.name);
  event.target.value = "";
};
$("attach").onchange = (event) => {  // a photo or a document, with the typed text as its caption
  const file = event.target.files[0];
  event.target.value = "";
  if (!file || !state.current) return;
  const form = new FormData();
  form.append("user", state.current);
  form.append("text", $("text").value.trim());
  form.append("file", file, file.name);
  $("text").value = "";
  post(form);
};
$("new-user").onsubmit = async (event) => {
  event.preventDefault();
  const response = await fetch("/api/users", {
    method: "POST",
    headers: JSON_HEADERS,
    body: JSON.stringify({ phone: $("new-phone").value, name: $("new-name").value }),
  });
  const answer = await response.json();
  $("new-user-error").textContent = response.ok ? "" : answer.error;
  if (response.ok) {
    state.users.set(answer.user.key, answer.user);
    $("new-phone").value = $("new-name").value = "";
    select(answer.user.key);
  }
};
document.addEventListener("visibilitychange", markRead);
connect();
