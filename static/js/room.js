// The room page: the history the server rendered, then the live feed over the
// WebSocket. Every text is set with textContent (never parsed as HTML).
//
// Connection: on a drop, reconnect with exponential backoff and jitter and
// resume with ?after=<last id seen>; ids grow by one per room, so a duplicate
// is skipped and a gap makes the page resume again. A close for policy (1008)
// sends the reader away with an explanation instead of retrying; a handshake
// the server keeps refusing for this page's origin (a proxy that drops the
// port from the Host header, or security.allowed_origins) stops the retries
// and says what an operator should check.
//
// Sending: a message goes out with a client_id and the text stays in the input
// until the server echoes that client_id; an error frame (or a drop) that
// leaves it unconfirmed keeps the text and says why.
import { mentionNodes, mentionsMe } from "./mentions.js";
import { storeNotice } from "./notice.js";

const $ = (id) => document.getElementById(id);
const root = $("room");
const room = root.dataset.room;
// The conversation's socket: /ws/chat/{room}/, or /ws/dm/{username}/ for a direct one.
const socketPath = root.dataset.socketPath || `/ws/chat/${encodeURIComponent(room)}/`;
const me = root.dataset.me;
const log = $("log");
const statusEl = $("status");
const retryButton = $("retry");
const form = $("composer");
const input = $("message-input");
const sendButton = $("send");
const help = $("composer-help");
const announcer = $("announcer");
const pill = $("new-pill");
const presenceList = $("presence");
const presenceCount = $("presence-count");
const presenceEmpty = $("presence-empty");
const maxLength = Number(root.dataset.maxLength) || 4000;
// Lengths in code points, as the server counts them: an emoji is one
// character here, not the two UTF-16 units `text.length` would count.
const length = (text) => [...text].length;

const GROUP_SECONDS = 60; // same author within a minute: one group
const NEAR_BOTTOM_PX = 48;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 10000;
const OFFLINE_AFTER_ATTEMPTS = 6; // then the status says offline (still retrying)
const CONFIRM_TIMEOUT_MS = 10000;
const REFUSED_AFTER = 2; // handshakes in a row the server says it refuses for this origin

let lastId = 0;
let socket = null;
let attempt = 0;
let retryTimer = null;
let stopped = false; // leaving the page, or closed for policy
let state = "connecting";
let pending = null; // {clientId, text, timer}: sent, not yet echoed
let stale = null; // the last message that was not confirmed in time (it may still come)
let unseen = 0;
let refusals = 0; // failed handshakes in a row that /api/socket-check says were refused

// -- rendering -------------------------------------------------------------------

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "short",
});

function timeElement(ts) {
  const when = new Date(ts * 1000);
  const time = document.createElement("time");
  time.dateTime = when.toISOString();
  time.title = dateTimeFormat.format(when);
  const today = new Date().toDateString() === when.toDateString();
  time.textContent = today ? timeFormat.format(when) : dateTimeFormat.format(when);
  return time;
}

function lastMessage() {
  const items = log.querySelectorAll("li.msg");
  return items.length ? items[items.length - 1] : null;
}

function renderMessage(m) {
  const li = document.createElement("li");
  li.className = "msg" + (m.username === me ? " mine" : "");
  li.dataset.id = String(m.id);
  li.dataset.user = m.username;
  li.dataset.ts = String(m.ts);
  const previous = lastMessage();
  if (
    previous &&
    previous === log.lastElementChild &&
    previous.dataset.user === m.username &&
    m.ts - Number(previous.dataset.ts) < GROUP_SECONDS
  ) {
    li.classList.add("grouped");
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = m.username;
  meta.append(author, " ", timeElement(m.ts));
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.append(...mentionNodes(m.text, me)); // text nodes and <mark>s, never HTML
  if (m.username !== me && mentionsMe(m.text, me)) li.classList.add("mentions-me");
  li.append(meta, bubble);
  return li;
}

function nearBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  log.scrollTop = log.scrollHeight;
  unseen = 0;
  pill.hidden = true;
}

function addNotice(text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  log.append(li);
}

// Append messages in id order, skipping any already shown. Returns false when
// a gap shows that something was missed (the caller resumes from lastId).
function appendMessages(messages, { live }) {
  const follow = nearBottom();
  let added = 0;
  for (const m of messages) {
    if (m.id <= lastId) continue; // already shown (a resume overlaps)
    if (live && lastId > 0 && m.id > lastId + 1) return false;
    $("empty-log")?.remove();
    log.append(renderMessage(m));
    lastId = m.id;
    added += 1;
    if (m.username === me && m.client_id) confirmSent(m.client_id);
    if (live && m.username !== me) announce(m);
  }
  if (!added) return true;
  const mineJustNow = messages.some((m) => m.username === me && live);
  if (follow || mineJustNow) {
    scrollToBottom();
  } else {
    unseen += added;
    pill.textContent = `${unseen} new message${unseen === 1 ? "" : "s"} ↓`;
    pill.hidden = false;
  }
  return true;
}

function announce(m) {
  const chars = [...m.text];
  const text = chars.length > 200 ? `${chars.slice(0, 200).join("")}…` : m.text;
  // First-strong isolates (U+2068 … U+2069): the text cannot reorder the name.
  announcer.textContent = `\u2068${m.username}\u2069: \u2068${text}\u2069`;
}

function showPresence(users) {
  const sorted = [...users].sort((a, b) => (a === me ? -1 : b === me ? 1 : a.localeCompare(b)));
  presenceList.replaceChildren(
    ...sorted.map((name) => {
      const li = document.createElement("li");
      const bdi = document.createElement("bdi"); // isolated: see app.css
      bdi.textContent = name;
      li.append(bdi);
      if (name !== me) {
        const dm = document.createElement("a"); // a direct conversation with them
        dm.className = "button button-quiet button-small dm-link";
        dm.href = `/dm/${encodeURIComponent(name)}/`;
        dm.setAttribute("aria-label", `Message ${name}`);
        dm.textContent = "Message";
        li.append(" ", dm);
      }
      if (name === me) {
        li.className = "me";
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = " (you)";
        li.append(you);
      }
      return li;
    }),
  );
  presenceCount.textContent = String(users.length);
  presenceEmpty.hidden = users.length > 0;
}

// The server rendered the recent history (readable without JavaScript): give
// those items the same shape as live ones (time, grouping).
function hydrate() {
  const items = [...log.querySelectorAll("li.msg")];
  const messages = items.map((li) => ({
    id: Number(li.dataset.id),
    username: li.dataset.user,
    ts: Number(li.dataset.ts),
    text: li.querySelector(".bubble").textContent,
  }));
  items.forEach((li) => li.remove());
  // The "new messages" divider the server placed before the first unread one.
  const divider = $("new-divider");
  const dividerBefore = Number(root.dataset.dividerBefore) || 0;
  for (const m of messages) {
    if (divider && m.id === dividerBefore) log.append(divider);
    log.append(renderMessage(m));
    lastId = Math.max(lastId, m.id);
  }
  scrollToBottom();
  if (divider?.isConnected) {
    // More unread than fits: start at the divider rather than the bottom.
    const above = divider.getBoundingClientRect().top - log.getBoundingClientRect().top;
    if (above < 0) log.scrollTop += above - 8;
  }
  const names = [...presenceList.children].map((li) => (li.querySelector("bdi") || li).textContent);
  if (names.length) showPresence(names);
}

// -- connection state --------------------------------------------------------------

const STATUS_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  refused: "Refused by the server",
};

function setState(next, text) {
  state = next;
  statusEl.dataset.state = next;
  statusEl.textContent = text || STATUS_TEXT[next];
  retryButton.hidden = !(next === "reconnecting" || next === "offline") || stopped;
  updateComposer();
}

function updateComposer() {
  const online = state === "connected";
  sendButton.disabled = !online || pending !== null;
  input.readOnly = pending !== null;
  input.setAttribute("aria-busy", String(pending !== null));
  form.classList.toggle("is-offline", !online);
}

function setHelp(text, isError = false, reason = "") {
  help.textContent = text;
  help.classList.toggle("is-error", isError);
  help.dataset.reason = reason;
}

function url() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // sidebar=1: this page shows the person's conversations, so the socket
  // follows them (activity frames for messages elsewhere).
  const after = lastId > 0 ? `&after=${lastId}` : "";
  return `${scheme}://${location.host}${socketPath}?sidebar=1${after}`;
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (stopped || socket) return;
  const ws = new WebSocket(url());
  socket = ws;
  let opened = false;
  ws.addEventListener("open", () => {
    opened = true;
  });
  ws.addEventListener("message", (event) => {
    if (ws !== socket) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    handleFrame(ws, frame);
  });
  ws.addEventListener("close", (event) => {
    if (ws !== socket) return;
    socket = null;
    closed(event, opened);
  });
}

// Tell the server what this tab has shown, so the person's other tabs and
// their unread counts agree: at most once a second (the first at once), and
// only while visible.
let readSent = 0;
let readTimer = null;
let readAt = 0;
function markRead() {
  if (readTimer || document.visibilityState !== "visible") return;
  readTimer = setTimeout(() => {
    readTimer = null;
    if (socket && socket.readyState === WebSocket.OPEN && lastId > readSent) {
      readSent = lastId;
      readAt = Date.now();
      socket.send(JSON.stringify({ type: "read", id: lastId }));
    }
  }, Math.max(0, readAt + 1000 - Date.now()));
}
document.addEventListener("visibilitychange", markRead);

function handleFrame(ws, frame) {
  // Every frame, for the page's other modules (sidebar.js: unread, notify, read).
  document.dispatchEvent(new CustomEvent("chatapp:frame", { detail: frame }));
  if (frame.type === "history") {
    if (frame.truncated) {
      // Older messages than the history holds were missed: start again from it.
      log.querySelectorAll("li.msg, li.notice").forEach((li) => li.remove());
      lastId = 0;
      addNotice("Some messages were missed while you were away; showing the latest ones.");
    }
    appendMessages(frame.messages, { live: false });
    if (frame.truncated) scrollToBottom();
    markRead();
    attempt = 0;
    refusals = 0;
    setState("connected");
    if (pending) {
      unconfirmed("Not sent: the connection dropped before the server got it. Press Enter to try again.");
    } else if (help.dataset.reason === "connection") {
      setHelp("");
    }
  } else if (frame.type === "message") {
    if (!appendMessages([frame], { live: true })) ws.close(4000, "gap: resuming");
    else markRead();
  } else if (frame.type === "presence") {
    showPresence(frame.users || []);
  } else if (frame.type === "error") {
    if (pending && frame.client_id === pending.clientId) unconfirmed(frame.detail);
    else setHelp(frame.detail, true);
  }
}

function closed(event, opened) {
  if (stopped) return;
  if (event.code === 1008) {
    // The session ended (logout in another tab, expiry, signed out elsewhere):
    // to the login page, which brings the reader back here. Anything else (a
    // removed member, a deleted room) leaves the room with its reason.
    if (event.reason === "logged out") loggedOut();
    else leave(event.reason);
    return;
  }
  if (!navigator.onLine) {
    setState("offline", "Offline: waiting for the network");
    return;
  }
  if (event.code === 4000 || event.code === 1013) attempt = 0; // resume at once
  if (!opened) {
    handshakeFailed();
    return;
  }
  schedule();
}

// The handshake failed: the server is down, the session ended, or the server
// refuses this page's origin. The handshake's status is not visible here, so
// ask /api/socket-check: it answers an anonymous visitor 403 (a proxy may
// answer a redirect or 401), and otherwise whether this page's origin passes
// the handshake's check and what Host the server sees.
function handshakeFailed() {
  const query = `?origin=${encodeURIComponent(location.origin)}`;
  fetch(`/api/socket-check${query}`, { redirect: "manual", cache: "no-store" })
    .then(async (response) => {
      if (
        response.type === "opaqueredirect" ||
        response.status === 401 ||
        response.status === 403
      ) {
        loggedOut();
        return;
      }
      const answer = response.ok ? await response.json() : null;
      if (answer?.allowed === false) {
        refusals += 1;
        if (refusals >= REFUSED_AFTER) {
          refused(answer);
          return;
        }
      } else {
        refusals = 0;
      }
      schedule();
    })
    .catch(() => schedule());
}

// Retrying cannot help: say so, and what to check, and stop.
function refused(answer) {
  stopped = true;
  clearTimeout(retryTimer);
  retryTimer = null;
  setState("refused");
  const host = answer.host ? `"${answer.host}"` : "no Host header";
  setHelp(
    `The server refused the live connection: this page's origin (${answer.origin}) does not ` +
      `pass its origin check, and the server sees the host as ${host}. Reloading will not ` +
      "help. An operator should check security.allowed_origins, and that the proxy passes " +
      "the Host header with its port and the scheme " +
      "(nginx: proxy_set_header Host $http_host; proxy_set_header X-Forwarded-Proto $scheme).",
    true,
    "refused",
  );
}

function schedule() {
  if (stopped) return;
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  const delay = ceiling / 2 + Math.random() * (ceiling / 2); // "equal jitter"
  attempt += 1;
  if (attempt > OFFLINE_AFTER_ATTEMPTS) setState("offline", "Offline: still trying");
  else setState("reconnecting");
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, delay);
}

function leave(reason) {
  stopped = true;
  setState("offline", "Disconnected");
  const why = reason ? reason.replace(/\.$/, "") : "closed by the server";
  storeNotice(`You were disconnected from room ${room}: ${why}.`);
  location.assign("/chat/");
}

function loggedOut() {
  stopped = true;
  setState("offline", "Logged out");
  storeNotice(`Your session ended. Log in again to rejoin room ${room}.`);
  location.assign(`/login/?next=${encodeURIComponent(location.pathname)}`);
}

// -- sending -----------------------------------------------------------------------

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function send() {
  const text = input.value;
  if (pending) return;
  if (!text.trim()) return;
  if (state !== "connected" || !socket || socket.readyState !== WebSocket.OPEN) {
    setHelp("Not connected: your message stays here until you can send it.", true, "connection");
    return;
  }
  if (length(text) > maxLength) {
    setHelp(`Messages are at most ${maxLength} characters (this one has ${length(text)}).`, true);
    return;
  }
  const clientId = newClientId();
  pending = {
    clientId,
    text,
    timer: setTimeout(() => unconfirmed("No confirmation from the server yet; the text is kept."), CONFIRM_TIMEOUT_MS),
  };
  socket.send(JSON.stringify({ type: "message", text, client_id: clientId }));
  setHelp("");
  updateComposer();
}

// The echo of one of this page's messages: clear the input (if it still holds
// that text) and let the next one go.
function confirmSent(clientId) {
  const sent = pending?.clientId === clientId ? pending : stale?.clientId === clientId ? stale : null;
  if (!sent) return;
  clearTimeout(sent.timer);
  if (input.value === sent.text) input.value = "";
  if (sent === pending) pending = null;
  stale = null;
  setHelp("");
  updateComposer();
}

function unconfirmed(detail) {
  if (!pending) return;
  clearTimeout(pending.timer);
  stale = pending;
  pending = null;
  setHelp(detail, true, "send");
  updateComposer();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});

input.addEventListener("input", () => {
  if (help.dataset.reason === "send" || help.dataset.reason === "counter") setHelp("");
  const left = maxLength - length(input.value);
  if (left < 200) setHelp(`${left} character${left === 1 ? "" : "s"} left.`, false, "counter");
});

log.addEventListener("scroll", () => {
  if (nearBottom()) {
    unseen = 0;
    pill.hidden = true;
  }
});

pill.addEventListener("click", () => {
  scrollToBottom();
  input.focus();
});

retryButton.addEventListener("click", () => {
  attempt = 0;
  connect();
});

window.addEventListener("online", () => {
  if (stopped) return;
  attempt = 0;
  if (socket?.readyState === WebSocket.OPEN) setState("connected"); // it outlived the outage
  else connect();
});

window.addEventListener("offline", () => {
  if (stopped) return;
  // No retries while there is no network: "online" reconnects.
  clearTimeout(retryTimer);
  retryTimer = null;
  setState("offline", "Offline: waiting for the network");
});

window.addEventListener("pagehide", () => {
  stopped = true;
  clearTimeout(retryTimer);
  if (readTimer) {
    // Leaving within the second a read was due in: say it now.
    clearTimeout(readTimer);
    readTimer = null;
    if (socket?.readyState === WebSocket.OPEN && lastId > readSent) {
      socket.send(JSON.stringify({ type: "read", id: lastId }));
    }
  }
  socket?.close(1000, "leaving");
});

window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return; // back from the back/forward cache: reconnect
  stopped = false;
  socket = null;
  attempt = 0;
  setState("connecting");
  connect();
});

hydrate();
input.disabled = false;
setState("connecting");
if (document.activeElement === document.body || document.activeElement === null) input.focus();
connect();
