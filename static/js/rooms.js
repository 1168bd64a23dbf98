// The room list: keep each room's count (and last activity) fresh by polling
// GET /api/rooms every few seconds, without a reload. New rooms appear, rooms
// gone from the server disappear; nothing is announced (counts change often).
import { _, ago, format, ngettext } from "./i18n.js";
const POLL_MS = 4000;
const list = document.getElementById("room-list");
const empty = document.getElementById("room-list-empty");
let timer = null;
let stopped = false;

function activity(ts) {
  if (!ts) return "";
  const when = ago(Math.max(0, Date.now() / 1000 - ts));
  return when ? format(_("active {when}"), { when }) : _("active just now");
}

function span(attr, className) {
  const el = document.createElement("span");
  el.setAttribute(attr, "");
  if (className) el.className = className;
  return el;
}

function newItem(name) {
  const li = document.createElement("li");
  li.dataset.room = name;
  const link = document.createElement("a");
  link.className = "room-link";
  link.href = `/chat/${encodeURIComponent(name)}/`;
  const title = document.createElement("span");
  title.className = "room-name";
  title.textContent = name;
  const meta = document.createElement("span");
  meta.className = "room-meta";
  meta.append(span("data-count", "count"), " ", span("data-people"), span("data-activity"));
  link.append(title, meta);
  li.append(link);
  return li;
}

function fill(li, room) {
  const count = li.querySelector("[data-count]");
  count.textContent = String(room.count);
  count.classList.toggle("count-zero", !room.count);
  li.querySelector("[data-people]").textContent = ngettext("person here", "people here", room.count);
  const active = activity(room.last_activity);
  li.querySelector("[data-activity]").textContent = active ? ` · ${active}` : "";
}

function render(rooms) {
  const items = new Map([...list.children].map((li) => [li.dataset.room, li]));
  const wanted = rooms.map((room) => {
    const li = items.get(room.name) || newItem(room.name);
    items.delete(room.name);
    fill(li, room);
    return li;
  });
  for (const li of items.values()) li.remove();
  // Re-insert only when the order changed, so a focused link keeps its focus.
  const current = [...list.children];
  if (wanted.length !== current.length || wanted.some((li, i) => li !== current[i])) {
    const focused = document.activeElement;
    list.append(...wanted);
    if (focused && list.contains(focused)) focused.focus();
  }
  list.hidden = rooms.length === 0;
  empty.hidden = rooms.length > 0;
}

async function refresh() {
  timer = null;
  try {
    const response = await fetch("/api/rooms", {
      headers: { Accept: "application/json" },
      redirect: "manual",
      cache: "no-store",
    });
    if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) {
      stopped = true; // logged out elsewhere: the next navigation shows the login page
      return;
    }
    if (response.ok) render((await response.json()).rooms || []);
  } catch {
    // Server unreachable: keep the last counts, try again later.
  }
  schedule();
}

function schedule() {
  if (stopped || document.hidden || timer) return;
  timer = setTimeout(refresh, POLL_MS);
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearTimeout(timer);
    timer = null;
  } else if (!stopped) {
    clearTimeout(timer);
    timer = null;
    refresh();
  }
});

if (list && empty) schedule();
