// The room page: history and live messages over the WebSocket, rendered with
// textContent only (never as HTML), reconnecting with ?after=<last id seen>.
const root = document.getElementById("room");
const room = root.dataset.room;
const me = root.dataset.me;
const log = document.getElementById("log");
const statusEl = document.getElementById("status");
const input = document.getElementById("message-input");
const sendButton = document.getElementById("send");
const form = document.getElementById("composer");
const presenceList = document.getElementById("presence");
const presenceCount = document.getElementById("presence-count");
const help = document.getElementById("composer-help");

let lastId = Number(root.dataset.lastId || 0);
let socket = null;
let attempt = 0;
let policyClosed = false;

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
  const online = state === "connected";
  input.disabled = !online;
  sendButton.disabled = !online;
}

function appendMessage(m) {
  if (m.id <= lastId && log.querySelector(`[data-id="${m.id}"]`)) return;
  document.getElementById("empty-log")?.remove();
  const li = document.createElement("li");
  li.className = "msg" + (m.username === me ? " mine" : "");
  li.dataset.id = String(m.id);
  li.dataset.user = m.username;
  const meta = document.createElement("div");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = m.username;
  meta.append(author);
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = m.text;
  li.append(meta, bubble);
  log.append(li);
  lastId = Math.max(lastId, m.id);
  log.scrollTop = log.scrollHeight;
}

function showPresence(users) {
  presenceList.replaceChildren(...users.map((u) => {
    const li = document.createElement("li");
    li.textContent = u;
    return li;
  }));
  presenceCount.textContent = String(users.length);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws/chat/${encodeURIComponent(room)}/?after=${lastId}`;
  socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    attempt = 0;
    setStatus("connected", "Connected");
  });
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "history") {
      frame.messages.forEach(appendMessage);
    } else if (frame.type === "message") {
      appendMessage(frame);
    } else if (frame.type === "presence") {
      showPresence(frame.users);
    } else if (frame.type === "error") {
      help.textContent = frame.detail;
    }
  });
  socket.addEventListener("close", (event) => {
    if (event.code === 1008) {
      policyClosed = true;
      setStatus("offline", "Disconnected");
      location.assign("/chat/");
      return;
    }
    if (policyClosed) return;
    setStatus("reconnecting", "Reconnecting…");
    const delay = Math.min(10000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    setTimeout(connect, delay);
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (!text.trim() || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: "message", text, client_id: crypto.randomUUID() }));
  input.value = "";
  help.textContent = "";
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

setStatus("connecting", "Connecting…");
connect();
