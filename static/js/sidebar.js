// The conversations sidebar (templates/_sidebar.html): rooms and direct
// messages with unread counts and mention badges, kept live; the tab title's
// total; the drawer on a phone; browser notifications.
//
// The server renders the sidebar from the data of GET /api/conversations.
// On a room or DM page, room.js passes on every socket frame (a "chatapp:frame"
// event): `activity` (a message elsewhere) raises a count, `notify` (a mention
// or a direct message) raises the mention badge and may show a notification,
// `read` (read on another tab) clears a count, `conversations` refetches the
// list. Counts are deduplicated by message id: an id at or below what an
// entry already accounts for is not counted again, so the `notify` and the
// `activity` of one message count once. The room list page has no socket: it
// asks /api/conversations every few seconds while visible.
import { _, format, ngettext } from "./i18n.js";
import "./search.js";

const $ = (id) => document.getElementById(id);
const nav = $("sidebar");
const POLL_MS = 5000; // the room list page only
const NOTIFY_CHARS = 200;

// -- the entries ---------------------------------------------------------------------

const me = (nav?.dataset.me || "").toLowerCase();
const current = nav?.dataset.current || "";
const lists = { rooms: $("sidebar-rooms"), dms: $("sidebar-dms") };
const entries = new Map(); // conversation -> entry
let hiddenUnseen = 0; // messages in the conversation on screen while the tab was hidden
const baseTitle = document.title.replace(/^\(\d+\) /, "");

function entryFromItem(li) {
  const link = li.querySelector("a");
  return {
    li,
    conversation: li.dataset.conversation,
    kind: li.dataset.kind,
    name: li.querySelector(".conv-name").textContent,
    url: link.getAttribute("href"),
    unread: Number(li.dataset.unread) || 0,
    mentions: Number(li.dataset.mentions) || 0,
    lastId: Number(li.dataset.lastId) || 0,
    live: new Set(), // ids counted here since the server's figures
    mentioned: new Set(),
  };
}

function svgLock() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "conv-icon");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "14");
  svg.setAttribute("height", "14");
  const body = document.createElementNS(ns, "rect");
  for (const [k, v] of Object.entries({ x: 3, y: 7, width: 10, height: 7, rx: 1.5, fill: "currentColor" })) {
    body.setAttribute(k, String(v));
  }
  const shackle = document.createElementNS(ns, "path");
  shackle.setAttribute("d", "M5.5 7V5a2.5 2.5 0 0 1 5 0v2");
  shackle.setAttribute("fill", "none");
  shackle.setAttribute("stroke", "currentColor");
  shackle.setAttribute("stroke-width", "1.6");
  svg.append(body, shackle);
  return svg;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A new item, the same shape as the server's (every text through textContent).
function newItem(summary) {
  const li = document.createElement("li");
  li.dataset.conversation = summary.conversation;
  li.dataset.kind = summary.kind;
  const link = el("a", "conv-link");
  link.href = summary.url;
  if (summary.kind === "private") {
    link.append(svgLock(), el("span", "sr-only", _("Private room") + " "));
  } else if (summary.kind === "dm") {
    const avatar = el("span", "conv-icon conv-avatar", [...summary.name][0]?.toUpperCase() || "?");
    avatar.setAttribute("aria-hidden", "true");
    link.append(avatar);
  } else {
    const hash = el("span", "conv-icon conv-hash", "#");
    hash.setAttribute("aria-hidden", "true");
    link.append(hash);
  }
  const badges = el("span", "conv-badges");
  const mention = el("span", "mention-badge");
  mention.dataset.mentionsBadge = "";
  const mentionN = el("span", "", "0");
  mentionN.dataset.n = "";
  mention.append("@", mentionN, el("span", "sr-only", ""));
  const unread = el("span", "unread-count");
  unread.dataset.unreadBadge = "";
  const unreadN = el("span", "", "0");
  unreadN.dataset.n = "";
  unread.append(unreadN, el("span", "sr-only", ""));
  badges.append(mention, " ", unread);
  link.append(" ", el("bdi", "conv-name", summary.name), " ", badges);
  li.append(link);
  return li;
}

function show(entry) {
  const { li } = entry;
  if (entry.conversation === current) entry.unread = entry.mentions = 0; // on screen
  li.dataset.unread = String(entry.unread);
  li.dataset.mentions = String(entry.mentions);
  li.dataset.lastId = String(entry.lastId);
  const unread = li.querySelector("[data-unread-badge]");
  unread.hidden = !entry.unread;
  unread.querySelector("[data-n]").textContent = String(entry.unread);
  unread.querySelector(".sr-only").textContent = " " + ngettext("unread", "unread", entry.unread);
  const mention = li.querySelector("[data-mentions-badge]");
  mention.hidden = !entry.mentions;
  mention.querySelector("[data-n]").textContent = String(entry.mentions);
  mention.querySelector(".sr-only").textContent = " " + ngettext("mention", "mentions", entry.mentions);
  li.classList.toggle("has-unread", entry.unread > 0);
  const link = li.querySelector("a");
  if (entry.conversation === current) link.setAttribute("aria-current", "page");
  else link.removeAttribute("aria-current");
}

function showTotal() {
  let total = hiddenUnseen;
  for (const entry of entries.values()) total += entry.unread;
  document.title = total ? `(${total}) ${baseTitle}` : baseTitle;
  const badge = $("sidebar-button-total");
  if (badge) {
    badge.hidden = !total;
    badge.replaceChildren(String(total), el("span", "sr-only", " " + ngettext("unread", "unread", total)));
  }
}

// Replace the entries with the server's list (the authority), keeping items.
function render(summaries) {
  const seen = new Set();
  const bySection = { rooms: [], dms: [] };
  const sorted = [...summaries].sort((a, b) => a.name.toLowerCase().localeCompare(b.name.toLowerCase()));
  for (const summary of sorted) {
    seen.add(summary.conversation);
    let entry = entries.get(summary.conversation);
    if (!entry) {
      entry = entryFromItem(newItem(summary));
      entries.set(summary.conversation, entry);
    }
    // Messages counted from frames while the answer was on its way are newer
    // than it says: they stay counted on top of it.
    const live = [...entry.live].filter((id) => id > summary.last_id);
    const mentioned = [...entry.mentioned].filter((id) => id > summary.last_id);
    Object.assign(entry, {
      unread: summary.unread + live.length,
      mentions: summary.mentions + mentioned.length,
      lastId: Math.max(summary.last_id, ...live),
      live: new Set(live),
      mentioned: new Set(mentioned),
    });
    show(entry);
    bySection[summary.kind === "dm" ? "dms" : "rooms"].push(entry.li);
  }
  for (const [name, entry] of entries) {
    if (seen.has(name) || name === current) continue; // the page's own stays listed
    entry.li.remove();
    entries.delete(name);
  }
  const own = entries.get(current);
  if (own && !seen.has(current)) bySection[own.kind === "dm" ? "dms" : "rooms"].push(own.li);
  for (const [section, items] of Object.entries(bySection)) {
    const list = lists[section];
    const now = [...list.children];
    if (items.length !== now.length || items.some((li, i) => li !== now[i])) {
      const focused = document.activeElement;
      list.replaceChildren(...items);
      if (focused && list.contains(focused)) focused.focus();
    }
    $(`sidebar-${section}-empty`).hidden = items.length > 0;
  }
  showTotal();
}

let fetching = null;
let again = false;
let readsMeanwhile = null; // while a fetch is on its way: the `read` frames that came
let pollTimer = null;

// Ask the server for the list (at most one request at a time; one more after
// it if asked meanwhile).
async function refetch() {
  if (fetching) {
    again = true;
    return;
  }
  fetching = (async () => {
    readsMeanwhile = [];
    try {
      const response = await fetch("/api/conversations", {
        headers: { Accept: "application/json" },
        redirect: "manual",
        cache: "no-store",
      });
      if (response.ok) {
        const conversations = (await response.json()).conversations || [];
        const reads = readsMeanwhile;
        readsMeanwhile = null;
        render(conversations);
        reads.forEach(applyRead); // the answer may predate them: they still hold
      }
    } catch {
      // unreachable: the counts stay as they are until the next frame or poll
    } finally {
      readsMeanwhile = null;
    }
  })();
  await fetching;
  fetching = null;
  if (again) {
    again = false;
    refetch();
  }
}

// -- live frames --------------------------------------------------------------------

// One message counted once: an id at or below the entry's last is accounted for.
function count(entry, id, { mention }) {
  if (id > entry.lastId) {
    entry.lastId = id;
    entry.unread += 1;
    entry.live.add(id);
  }
  if (mention && entry.live.has(id) && !entry.mentioned.has(id)) {
    entry.mentioned.add(id);
    entry.mentions += 1;
  }
  show(entry);
  showTotal();
}

function onActivity(frame) {
  if (frame.conversation === current) return;
  const entry = entries.get(frame.conversation);
  if (!entry) return refetch();
  if ((frame.username || "").toLowerCase() === me) {
    entry.lastId = Math.max(entry.lastId, frame.id); // mine: nothing unread
    return;
  }
  count(entry, frame.id, { mention: false });
}

function onNotify(frame) {
  const message = frame.message || {};
  if (frame.conversation !== current) {
    const entry = entries.get(frame.conversation);
    if (entry) count(entry, message.id, { mention: true });
    else refetch();
  }
  if (document.visibilityState === "hidden") showNotification(frame);
}

function onRead(frame) {
  readsMeanwhile?.push(frame);
  applyRead(frame);
}

function applyRead(frame) {
  const entry = entries.get(frame.conversation);
  if (!entry) return;
  if (frame.id >= entry.lastId) {
    entry.unread = entry.mentions = 0;
    entry.live.clear();
    entry.mentioned.clear();
    show(entry);
    showTotal();
  } else {
    refetch(); // read part of it: the server knows how much is left
  }
}

document.addEventListener("chatapp:frame", (event) => {
  const frame = event.detail || {};
  if (frame.type === "activity") onActivity(frame);
  else if (frame.type === "notify") onNotify(frame);
  else if (frame.type === "read") onRead(frame);
  // Also sent once the socket follows the person's conversations (after each
  // connect): the counts rendered with the page may predate a read said as the
  // last page closed, and a list read from then on misses nothing.
  else if (frame.type === "conversations") refetch();
  else if (frame.type === "message" && document.visibilityState === "hidden") {
    if ((frame.username || "").toLowerCase() !== me) {
      hiddenUnseen += 1;
      showTotal();
    }
  }
});

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  if (hiddenUnseen) {
    hiddenUnseen = 0;
    showTotal();
  }
  if (!$("room")) {
    clearTimeout(pollTimer);
    poll();
  }
});

// The room list page: no socket, so ask every few seconds while visible.
async function poll() {
  pollTimer = null;
  if (document.visibilityState === "visible") await refetch();
  pollTimer = setTimeout(poll, POLL_MS);
}

// -- browser notifications ----------------------------------------------------------

const notifyButton = $("notify-button");
const notifyState = $("notify-state");

function showNotifyState() {
  if (!notifyButton) return;
  if (!("Notification" in window)) {
    notifyButton.hidden = true;
    notifyState.textContent = "";
    return;
  }
  const permission = Notification.permission;
  notifyButton.hidden = permission !== "default";
  notifyState.textContent =
    permission === "granted"
      ? _("Notifications are on while this tab is in the background.")
      : permission === "denied"
        ? _("Notifications are blocked in this browser's settings.")
        : "";
}

notifyButton?.addEventListener("click", async () => {
  // Asked only here, from the person's click: never on load.
  try {
    await Notification.requestPermission();
  } catch {
    // an old browser's callback form: its answer shows on the next load
  }
  showNotifyState();
});

function plain(text) {
  // What the notification shows: the text itself (a notification renders no HTML).
  const chars = [...(text || "")];
  return chars.length > NOTIFY_CHARS ? `${chars.slice(0, NOTIFY_CHARS).join("")}…` : chars.join("");
}

function showNotification(frame) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const message = frame.message || {};
  const entry = entries.get(frame.conversation);
  const isDm = (frame.conversation || "").startsWith("@");
  const place = `#${entry?.name || frame.conversation}`;
  const url = /^\/(chat|dm)\/[^/]+\/$/.test(frame.url || "") ? frame.url : "/chat/";
  try {
    const who = message.username || _("Someone");
    const heading = isDm ? format(_("{name} in a direct message"), { name: who }) : format(_("{name} in {place}"), { name: who, place });
    const note = new Notification(heading, {
      body: plain(message.text),
      tag: frame.conversation,
    });
    note.addEventListener("click", () => {
      window.focus();
      note.close();
      location.assign(url);
    });
  } catch {
    // no notification here (some browsers want a service worker): the badge says it
  }
}

// -- the drawer (phone) ----------------------------------------------------------------

const drawerButton = $("sidebar-button");
const closeButton = $("sidebar-close");
const backdrop = $("sidebar-backdrop");
const phone = window.matchMedia("(max-width: 760px)");

function others() {
  const shell = nav.parentElement;
  return [document.querySelector(".site-header"), document.querySelector(".skip-link"), ...shell.children]
    .filter((node) => node && node !== nav && node !== backdrop);
}

function isOpen() {
  return nav.classList.contains("is-open");
}

function openDrawer() {
  nav.classList.add("is-open");
  backdrop.hidden = false;
  drawerButton.setAttribute("aria-expanded", "true");
  for (const node of others()) node.inert = true; // the drawer is modal
  const target = nav.querySelector("a[aria-current=page]") || nav.querySelector("a, button:not([hidden])");
  target?.focus();
}

function closeDrawer({ returnFocus = true } = {}) {
  if (!isOpen()) return;
  nav.classList.remove("is-open");
  backdrop.hidden = true;
  drawerButton.setAttribute("aria-expanded", "false");
  for (const node of others()) node.inert = false;
  if (returnFocus) drawerButton.focus();
}

if (nav && drawerButton) {
  drawerButton.addEventListener("click", () => (isOpen() ? closeDrawer() : openDrawer()));
  closeButton.addEventListener("click", () => closeDrawer());
  backdrop.addEventListener("click", () => closeDrawer());
  nav.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && isOpen()) {
      event.preventDefault();
      closeDrawer();
    }
  });
  phone.addEventListener("change", () => {
    if (!phone.matches) closeDrawer({ returnFocus: false });
  });
}

// -- start --------------------------------------------------------------------------

if (nav) {
  for (const li of nav.querySelectorAll(".conv-list > li")) {
    const entry = entryFromItem(li);
    entries.set(entry.conversation, entry);
    show(entry);
  }
  showTotal();
  showNotifyState();
  if (!$("room")) pollTimer = setTimeout(poll, POLL_MS);
}
