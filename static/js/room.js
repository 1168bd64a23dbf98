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
// leaves it unconfirmed keeps the text and says why. An edit is confirmed by
// the `update` that carries its text.
//
// Message actions (reply, edit, delete, react): the page keeps each shown
// message's present state and the conversation's highest `rev` seen; an
// `update` frame re-renders its message in place (only when its rev is newer:
// updates may repeat), and a reconnect resumes with ?after=<id>&rev=<rev>, so
// the history frame's `updates` bring every change missed meanwhile.
// Message text is rendered by markdown.js (DOM nodes, never HTML).
//
// History (PROTOCOL.md, "History and search"): the socket's first frame is
// bounded; when it says `more` on a resume, the messages between what the page
// held and the frame are fetched from the history API (newest page first,
// each inserted in its place) while live ones keep arriving below: a "gap"
// with its own marker in the log, filled over HTTP, so a socket that drops
// meanwhile does not lose it. Reaching the top of the log (scrolling, Home,
// PageUp) loads the previous page and keeps the first message in view where
// it was; the top then says where the conversation begins. `?at=ID` opens the
// page at that message, marked, without following the bottom; a reply whose
// original is not on the page loads it (or opens the page at it).
import {
  closePopup,
  confirmDelete,
  initLogKeys,
  openMenu,
  openPicker,
  popupIn,
  prepareMessage,
} from "./actions.js";
import { _, dateTimeFormat as makeDateTimeFormat, format, ngettext } from "./i18n.js";
import { renderMarkdown } from "./markdown.js";
import { storeNotice } from "./notice.js";
import { typingIndicator, typingSender } from "./typing.js";

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
const presenceWords = $("presence-words");
const presenceEmpty = $("presence-empty");
const context = $("composer-context");
const contextText = $("composer-context-text");
const contextCancel = $("composer-cancel");
const olderStatus = $("older-status");
const maxLength = Number(root.dataset.maxLength) || 4000;
// The history API of this conversation: /api/chat/{room}/history or /api/dm/{username}/history.
const historyPath = `${socketPath.replace(/^\/ws\//, "/api/")}history`;
// `?at=ID`: the page opened at that message (the server rendered the ones around it).
const atId = Number(root.dataset.at) || 0;
// Superuser, or the owner of this private room: may delete anyone's message.
const canModerate = root.dataset.canModerate === "1";
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
const QUOTE_CHARS = 100; // a reply's quote of its original: the first line, cut here
const NEAR_TOP_PX = 64; // this close to the top: load the previous page
const OLDER_PAGE = 50; // messages per scroll-back page
const FILL_PAGE = 100; // messages per page when filling a gap (the API's most)
const REACH_BACK = 300; // a reply's original at most this far back is loaded in place
const FILL_RETRY_MS = 2000;
const DEFERRED_MAX = 1000; // updates kept for messages not loaded yet

let lastId = 0;
let socket = null;
let attempt = 0;
let retryTimer = null;
let stopped = false; // leaving the page, or closed for policy
let state = "connecting";
let pending = null; // {kind: "message"|"edit", clientId | id, text, timer}: sent, not yet confirmed
let stale = null; // the last one that was not confirmed in time (it may still come)
let unseen = 0;
let refusals = 0; // failed handshakes in a row that /api/socket-check says were refused
let rev = Number(root.dataset.rev) || 0; // the highest change number seen
let mode = null; // the composer: null, {kind: "reply", id} or {kind: "edit", id, draft}
const shown = new Map(); // id -> the message's present state, as last rendered
// Updates about messages not on the page (yet): id -> the newest one, applied
// when the message arrives from the history API with an older rev.
const deferred = new Map();
// Missing ranges being filled from the history API: ids low < id < high,
// marked in the log by `el`; `older`: a start-over's, down to the oldest held.
const gaps = [];
let filling = false;
let fillTimer = null;
let olderHeld = root.dataset.hasMoreBefore === "1"; // older messages than the first shown are held
let loadingOlder = null; // the scroll-back request on its way (one at a time)
let connectedAfter = 0; // the ?after= of the present socket (0: none)
let holdPosition = atId > 0; // ?at=: the first frame does not scroll to the bottom
const reactionOrder = new Map(); // id -> its emoji in the order this page first saw them
const isMine = (m) => m.username.toLowerCase() === me.toLowerCase();

// -- rendering -------------------------------------------------------------------

// In the page's language (<html lang>): "14:05", "2 дек. 2026 г., 14:05".
const timeFormat = makeDateTimeFormat({ hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = makeDateTimeFormat({ dateStyle: "medium", timeStyle: "short" });

function timeElement(ts) {
  const when = new Date(ts * 1000);
  const time = document.createElement("time");
  time.dateTime = when.toISOString();
  time.title = dateTimeFormat.format(when);
  const today = new Date().toDateString() === when.toDateString();
  time.textContent = today ? timeFormat.format(when) : dateTimeFormat.format(when);
  return time;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The first line with text, cut at QUOTE_CHARS characters.
function firstLine(text) {
  const line = (text.split("\n").find((l) => l.trim()) || "").trim();
  const chars = [...line];
  return chars.length > QUOTE_CHARS ? `${chars.slice(0, QUOTE_CHARS).join("")}…` : line;
}

// A message's item; `previous`: the item it follows (the same author within a
// minute: grouped with it), or null.
function renderMessage(m, previous) {
  const li = document.createElement("li");
  li.className = "msg" + (isMine(m) ? " mine" : "");
  li.dataset.id = String(m.id);
  li.dataset.user = m.username;
  li.dataset.ts = String(m.ts);
  if (
    previous?.matches?.("li.msg") &&
    previous.dataset.user === m.username &&
    m.ts - Number(previous.dataset.ts) < GROUP_SECONDS
  ) {
    li.classList.add("grouped");
  }
  fillMessage(li, m);
  return li;
}

// Messages from the history API (oldest first), as items to insert after
// `previous`: each in its present state (a newer update heard meanwhile wins).
function renderBatch(messages, previous) {
  const items = [];
  for (let m of messages) {
    const later = deferred.get(m.id);
    deferred.delete(m.id);
    if (later && (later.rev ?? 0) > (m.rev ?? 0)) m = later;
    const li = renderMessage(m, items.at(-1) || previous);
    items.push(li);
  }
  return items;
}

// After messages came in: replies on the page quoting one of them show it now.
function linkQuotes(messages) {
  for (const m of messages) {
    for (const quote of log.querySelectorAll(`.reply-quote.is-missing[data-reply-to="${Number(m.id)}"]`)) {
      quote.replaceWith(replyQuote(m.id));
    }
  }
}

// (Re)build what a message shows from its present state: author and time, the
// quote of the message it answers, the text (or the tombstone), the actions
// button, "(edited)", the reactions.
function fillMessage(li, m) {
  shown.set(m.id, m);
  const meta = el("div", "meta");
  meta.append(el("span", "author", m.username), " ", timeElement(m.ts));
  const parts = [meta];
  if (m.reply_to && !m.deleted) parts.push(replyQuote(m.reply_to));
  const row = el("div", "msg-row");
  const bubble = el("div", "bubble");
  row.append(bubble);
  if (m.deleted) {
    // The tombstone keeps its place: ids stay visibly whole. Nothing to act on.
    bubble.append(el("span", "tombstone", _("message deleted")));
  } else {
    bubble.append(renderMarkdown(m.text, me)); // DOM nodes, never HTML
    const button = el("button", "msg-actions", "⋯");
    button.type = "button";
    button.setAttribute("aria-label", _("Message actions"));
    button.setAttribute("aria-haspopup", "menu");
    button.setAttribute("aria-expanded", "false");
    button.addEventListener("click", () => {
      if (button.getAttribute("aria-expanded") === "true") closePopup();
      else openMenuFor(li, button);
    });
    row.append(button);
  }
  parts.push(row);
  const foot = footer(m);
  if (foot) parts.push(foot);
  li.replaceChildren(...parts);
  li.classList.toggle("deleted", Boolean(m.deleted));
  li.classList.toggle("mentions-me", !isMine(m) && bubble.querySelector("mark.mention-me") !== null);
  prepareMessage(li);
}

// A reply's short quote of its original: a button to go there. When the
// original is not on the page it says "an earlier message", and going there
// loads it.
function replyQuote(id) {
  const original = shown.get(id);
  if (!original) {
    const missing = el("button", "reply-quote is-missing");
    missing.type = "button";
    missing.dataset.replyTo = String(id);
    missing.title = _("Load and show the original message");
    missing.append(el("span", "reply-icon", "↪"), " " + _("Reply to an earlier message"));
    missing.firstChild.setAttribute("aria-hidden", "true");
    missing.addEventListener("click", () => goToMessage(id));
    return missing;
  }
  const quote = el("button", "reply-quote");
  quote.type = "button";
  quote.dataset.replyTo = String(id);
  quote.title = _("Go to the original message");
  const icon = el("span", "reply-icon", "↪");
  icon.setAttribute("aria-hidden", "true");
  const text = original.deleted
    ? el("span", "reply-text is-deleted", _("message deleted"))
    : el("span", "reply-text", firstLine(original.text));
  const author = el("bdi", "reply-author", original.username);
  quote.append(icon, el("span", "sr-only", _("In reply to") + " "), author, ":", text);
  quote.addEventListener("click", () => goToMessage(id));
  return quote;
}

// "(edited)" with the time on hover, and the reaction chips.
function footer(m) {
  if (m.deleted) return null;
  const chips = reactionChips(m);
  if (!m.edited && !chips) return null;
  const foot = el("div", "msg-foot");
  if (m.edited) {
    const when = dateTimeFormat.format(new Date(m.edited * 1000));
    const mark = el("span", "edited-mark", _("(edited)"));
    mark.title = format(_("Edited {when}"), { when });
    mark.append(el("span", "sr-only", ` ${when}`));
    foot.append(mark);
  }
  if (chips) foot.append(chips);
  return foot;
}

// The emoji of a message in a stable order: as this page first saw them (the
// server's key order is arbitrary), newcomers by count.
function orderedReactions(m) {
  const reactions = m.reactions || {};
  const present = Object.keys(reactions).filter((e) => reactions[e]?.length);
  const order = (reactionOrder.get(m.id) || []).filter((e) => present.includes(e));
  const fresh = present
    .filter((e) => !order.includes(e))
    .sort((a, b) => reactions[b].length - reactions[a].length || (a < b ? -1 : a > b ? 1 : 0));
  order.push(...fresh);
  reactionOrder.set(m.id, order);
  return order;
}

function reactionChips(m) {
  const order = orderedReactions(m);
  if (!order.length) return null;
  const group = el("div", "reactions");
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", _("Reactions"));
  for (const emoji of order) {
    const names = m.reactions[emoji];
    const who = `${emoji} ${names.join(", ")}`;
    const chip = el("button", "reaction");
    chip.type = "button";
    chip.setAttribute("aria-pressed", String(names.some((n) => n.toLowerCase() === me.toLowerCase())));
    chip.setAttribute("aria-label", who);
    chip.title = who;
    chip.dataset.who = who; // the tooltip on keyboard focus (app.css)
    chip.append(el("span", "reaction-emoji", emoji), el("span", "reaction-count", String(names.length)));
    chip.addEventListener("click", () => react(m.id, emoji));
    group.append(chip);
  }
  return group;
}

function messageItem(id) {
  return log.querySelector(`li.msg[data-id="${Number(id)}"]`);
}

// Scroll to a message, focus it, mark it and light it up for a moment. One not
// on the page is loaded first: by scrolling back when it is a few pages older
// than the first shown, else by opening the page at it (`?at=`).
async function goToMessage(id) {
  let li = messageItem(id);
  if (!li) {
    const oldest = oldestShownId();
    if (olderHeld && id < oldest && oldest - id <= REACH_BACK) {
      while (!messageItem(id) && olderHeld && oldestShownId() > id) {
        const before = oldestShownId();
        await loadOlder(Math.min(FILL_PAGE, before - id + 5));
        if (oldestShownId() === before) return; // it failed: the status says so
      }
    }
    li = messageItem(id);
    if (!li) {
      location.assign(`${location.pathname}?at=${Number(id)}`);
      return;
    }
  }
  markTarget(li);
  li.scrollIntoView({ block: "center" });
  li.classList.remove("is-highlighted");
  void li.offsetWidth; // restart the animation
  li.classList.add("is-highlighted");
  li.addEventListener("animationend", () => li.classList.remove("is-highlighted"), { once: true });
  li.focus({ preventScroll: true });
}

// The message the page was opened at, or went to: marked (one at a time).
function markTarget(li) {
  for (const other of log.querySelectorAll("li.msg.target")) {
    other.classList.remove("target");
    other.removeAttribute("aria-current");
  }
  li.classList.add("target");
  li.setAttribute("aria-current", "true");
}

// Apply a message's new state (an `update`, or a resume's `updates`): only a
// newer rev than the one shown, so a repeated update changes nothing. One not
// on the page yet is kept for when it comes from the history API.
function applyUpdate(m) {
  const old = shown.get(m.id);
  if (!old) {
    if (m.id <= lastId && !((deferred.get(m.id)?.rev ?? -1) >= (m.rev ?? 0))) {
      deferred.delete(m.id);
      deferred.set(m.id, m);
      if (deferred.size > DEFERRED_MAX) deferred.delete(deferred.keys().next().value);
    }
    return;
  }
  if (old.rev != null && !(m.rev > old.rev)) return;
  const li = messageItem(m.id);
  if (!li) return;
  if (popupIn(li)) closePopup({ restoreFocus: false });
  const focus = li.contains(document.activeElement) ? focusKey(li, document.activeElement) : null;
  fillMessage(li, m);
  if (focus) (findFocusKey(li, focus) || li).focus({ preventScroll: true });
  // Replies quoting it show its new first line (or that it was deleted).
  for (const quote of log.querySelectorAll(`.reply-quote[data-reply-to="${Number(m.id)}"]`)) {
    quote.replaceWith(replyQuote(m.id));
  }
  if (mode?.id === m.id) composerSawUpdate(m);
}

// What has focus in a message, said so that it can be found again after the
// message is re-rendered: the message, a chip (by its emoji), or a control's class.
function focusKey(li, active) {
  if (active === li) return "item";
  const chip = active.closest(".reaction");
  if (chip) return `chip:${chip.querySelector(".reaction-emoji").textContent}`;
  return active.classList[0] || "item";
}

function findFocusKey(li, key) {
  if (key === "item") return li;
  if (key.startsWith("chip:")) {
    return [...li.querySelectorAll(".reaction")].find(
      (chip) => `chip:${chip.querySelector(".reaction-emoji").textContent}` === key,
    );
  }
  return li.getElementsByClassName(key)[0];
}

// Re-render without moving what the reader looks at: at the bottom it stays at
// the bottom; otherwise the first message in view keeps its place.
function keepScroll(change) {
  if (nearBottom()) {
    change();
    log.scrollTop = log.scrollHeight;
    return;
  }
  keepAnchor(change);
}

// The first message in view keeps its place on the screen across `change`.
function keepAnchor(change) {
  const top = log.getBoundingClientRect().top;
  const anchor = [...log.querySelectorAll("li.msg")].find((li) => li.getBoundingClientRect().bottom > top);
  const before = anchor?.getBoundingClientRect().top;
  change();
  if (anchor?.isConnected) log.scrollTop += anchor.getBoundingClientRect().top - before;
}

function nearTop() {
  return log.scrollTop < NEAR_TOP_PX;
}

function oldestShownId() {
  const first = log.querySelector("li.msg");
  return first ? Number(first.dataset.id) : 0;
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
function appendMessages(messages, { live, follow = nearBottom() }) {
  let added = 0;
  for (const m of messages) {
    if (m.id <= lastId) {
      applyUpdate(m); // already shown (a resume overlaps): only a newer state counts
      continue;
    }
    if (live && lastId > 0 && m.id > lastId + 1) return false;
    $("empty-log")?.remove();
    typingIn.stopped(m.username);
    log.append(renderMessage(m, log.lastElementChild));
    lastId = m.id;
    added += 1;
    if (m.username === me && m.client_id) confirmSent(m.client_id);
    if (live && m.username !== me) announce(m);
  }
  if (!added) return true;
  linkQuotes(messages);
  const mineJustNow = messages.some((m) => m.username === me && live);
  if (follow || mineJustNow) {
    scrollToBottom();
  } else {
    unseen += added;
    pill.textContent = format(ngettext("{n} new message ↓", "{n} new messages ↓", unseen), { n: unseen });
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
        dm.setAttribute("aria-label", format(_("Message {name}"), { name }));
        dm.textContent = _("Message");
        li.append(" ", dm);
      }
      if (name === me) {
        li.className = "me";
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = " " + _("(you)");
        li.append(you);
      }
      return li;
    }),
  );
  presenceCount.textContent = String(users.length);
  if (presenceWords) presenceWords.textContent = format(ngettext("{n} person", "{n} people", users.length), { n: users.length });
  presenceEmpty.hidden = users.length > 0;
}

// The server rendered the recent history (readable without JavaScript), each
// message's present state as data attributes and its text as plain text: read
// them back and render them like live ones (time, grouping, formatting).
function hydrate() {
  const items = [...log.querySelectorAll("li.msg")];
  const number = (value) => (value ? Number(value) : undefined);
  const messages = items.map((li) => ({
    id: Number(li.dataset.id),
    username: li.dataset.user,
    ts: Number(li.dataset.ts),
    text: li.dataset.deleted ? "" : li.querySelector(".bubble").textContent,
    reply_to: number(li.dataset.replyTo),
    edited: number(li.dataset.edited),
    deleted: li.dataset.deleted ? true : undefined,
    rev: number(li.dataset.rev),
    reactions: li.dataset.reactions ? JSON.parse(li.dataset.reactions) : undefined,
  }));
  items.forEach((li) => li.remove());
  // The "new messages" divider the server placed before the first unread one.
  const divider = $("new-divider");
  const dividerBefore = Number(root.dataset.dividerBefore) || 0;
  for (const m of messages) {
    if (divider && m.id === dividerBefore) log.append(divider);
    log.append(renderMessage(m, log.lastElementChild));
    lastId = Math.max(lastId, m.id);
  }
  if (messages.length && !olderHeld) log.prepend(startMarker());
  const target = atId ? messageItem(atId) : null;
  if (target) {
    // ?at=: that message in view, marked; the reader is not taken to the bottom.
    markTarget(target);
    target.scrollIntoView({ block: "center" });
  } else if (atId) {
    log.scrollTop = 0; // older than everything held: the oldest held are shown
  } else {
    scrollToBottom();
  }
  if (!atId && divider?.isConnected) {
    // More unread than fits: start at the divider rather than the bottom.
    const above = divider.getBoundingClientRect().top - log.getBoundingClientRect().top;
    if (above < 0) log.scrollTop += above - 8;
  }
  const names = [...presenceList.children].map((li) => (li.querySelector("bdi") || li).textContent);
  if (names.length) showPresence(names);
}

// -- history: gaps filled from the API, scroll-back ----------------------------------

class HistoryError extends Error {
  constructor(status) {
    super(`history: ${status}`);
    this.status = status;
  }
  // Logged out, no longer a member, a deleted room: asking again will not help.
  get final() {
    return this.status >= 400 && this.status < 500 && this.status !== 429;
  }
}

// A page of held messages with ids below `before` (null: the newest), oldest first.
async function fetchHistory(before, limit) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (before != null && Number.isFinite(before)) query.set("before", String(before));
  const response = await fetch(`${historyPath}?${query}`, {
    headers: { Accept: "application/json" },
    cache: "no-store",
    redirect: "manual",
  });
  if (!response.ok) throw new HistoryError(response.status);
  const page = await response.json().catch(() => {
    throw new HistoryError(response.status);
  });
  return { messages: Array.isArray(page.messages) ? page.messages : [], more: Boolean(page.more) };
}

// The top of the log when nothing older is held.
function startMarker() {
  log.querySelector("li.log-start")?.remove();
  const first = oldestShownId();
  const text = first <= 1 ? _("Beginning of the conversation") : _("Older messages are no longer held");
  const li = el("li", "notice log-start", text);
  li.id = "log-start";
  return li;
}

// Messages low < id < high are held but not shown: mark their place (just
// before message `high`) and fill it.
function openGap(low, high, older) {
  const li = el("li", "notice gap", _("Loading missed messages…"));
  const next = Number.isFinite(high) ? messageItem(high) : null;
  keepScroll(() => (next ? next.before(li) : log.append(li)));
  gaps.push({ low, high, older, el: li });
  setState(state, state === "connected" ? undefined : statusEl.textContent);
}

// Fill the gaps, newest page first, each page in its place: over HTTP, so a
// socket that drops meanwhile does not stop it. A failed request is tried
// again a little later (and on the next history frame, or when back online).
async function fillGaps() {
  if (filling || stopped) return;
  filling = true;
  clearTimeout(fillTimer);
  fillTimer = null;
  try {
    while (gaps.length) {
      const gap = gaps[0];
      const page = await fetchHistory(gap.high, FILL_PAGE);
      if (gaps[0] !== gap) continue; // the log started over meanwhile
      const fresh = page.messages.filter((m) => m.id > gap.low && m.id < gap.high && !shown.has(m.id));
      if (fresh.length) {
        keepScroll(() => {
          gap.el.after(...renderBatch(fresh, null));
          linkQuotes(fresh);
        });
      }
      const first = page.messages.length ? page.messages[0].id : gap.low + 1;
      gap.high = Math.min(gap.high, first);
      if (!page.more || !page.messages.length || gap.high <= gap.low + 1) {
        keepScroll(() => {
          gap.el.remove();
          if (gap.older) log.prepend(startMarker());
        });
        gaps.shift();
        setState(state, state === "connected" ? undefined : statusEl.textContent);
        markRead();
      }
    }
  } catch (error) {
    if (!(error instanceof HistoryError) && !(error instanceof TypeError)) throw error;
    if (error.final) {
      for (const gap of gaps) gap.el.textContent = _("Some messages could not be loaded.");
      gaps.length = 0;
      setState(state, state === "connected" ? undefined : statusEl.textContent);
    } else {
      clearTimeout(fillTimer);
      fillTimer = setTimeout(fillGaps, FILL_RETRY_MS);
    }
  } finally {
    filling = false;
  }
}

// At the top with older messages held: load the previous page.
function maybeLoadOlder() {
  if (olderHeld && !loadingOlder && nearTop()) loadOlder();
}

// Prepend the previous page (`limit` messages), the first message in view
// staying where it was on the screen. One request at a time.
function loadOlder(limit = OLDER_PAGE) {
  if (loadingOlder) return loadingOlder;
  const before = oldestShownId();
  if (!olderHeld || !before) return Promise.resolve();
  olderStatus.textContent = _("Loading older messages…");
  olderStatus.classList.remove("is-error");
  olderStatus.hidden = false;
  loadingOlder = (async () => {
    try {
      const page = await fetchHistory(before, limit);
      if (oldestShownId() !== before) return; // the log started over meanwhile
      const fresh = page.messages.filter((m) => m.id < before && !shown.has(m.id));
      olderHeld = page.more && fresh.length > 0;
      keepAnchor(() => {
        log.prepend(...renderBatch(fresh, null));
        linkQuotes(fresh);
        if (!olderHeld) log.prepend(startMarker());
      });
      olderStatus.hidden = true;
      olderStatus.textContent = "";
    } catch (error) {
      if (!(error instanceof HistoryError) && !(error instanceof TypeError)) throw error;
      olderStatus.textContent = _("Could not load older messages: scroll up to try again.");
      olderStatus.classList.add("is-error");
    } finally {
      loadingOlder = null;
    }
    // Still at the top (a short page, or a log that does not scroll): the next one.
    if (olderHeld && log.scrollHeight <= log.clientHeight) setTimeout(maybeLoadOlder, 0);
  })();
  return loadingOlder;
}

// -- connection state --------------------------------------------------------------

const STATUS_TEXT = {
  connecting: _("Connecting…"),
  connected: _("Connected"),
  reconnecting: _("Reconnecting…"),
  offline: _("Offline"),
  refused: _("Refused by the server"),
};

function setState(next, text) {
  state = next;
  statusEl.dataset.state = next;
  statusEl.dataset.filling = gaps.length ? "1" : "";
  statusEl.textContent = text || (next === "connected" && gaps.length ? _("Loading missed messages…") : STATUS_TEXT[next]);
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
  // &rev=: the changes to shown messages since then come in the history frame.
  connectedAfter = lastId;
  const after = lastId > 0 ? `&after=${lastId}&rev=${rev}` : "";
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
    const seen = readUpTo();
    if (socket && socket.readyState === WebSocket.OPEN && seen > readSent) {
      readSent = seen;
      readAt = Date.now();
      socket.send(JSON.stringify({ type: "read", id: seen }));
    }
  }, Math.max(0, readAt + 1000 - Date.now()));
}
document.addEventListener("visibilitychange", markRead);

// The newest message the reader has been shown: all of them when the log is at
// the bottom, else the newest one in view (a page opened at an older message,
// or scrolled up). Never past a gap still being filled: its messages are not
// shown yet.
function readUpTo() {
  let seen = lastId;
  if (!nearBottom()) {
    seen = 0;
    const bottom = log.getBoundingClientRect().bottom;
    for (const li of log.querySelectorAll("li.msg")) {
      if (li.getBoundingClientRect().top >= bottom) break;
      seen = Number(li.dataset.id);
    }
  }
  for (const gap of gaps) if (!gap.older) seen = Math.min(seen, gap.low);
  return seen;
}

function handleFrame(ws, frame) {
  // Every frame, for the page's other modules (sidebar.js: unread, notify, read).
  document.dispatchEvent(new CustomEvent("chatapp:frame", { detail: frame }));
  if (frame.type === "history") {
    rev = Math.max(rev, Number(frame.rev) || 0);
    const after = connectedAfter;
    const messages = frame.messages || [];
    if (frame.truncated) {
      // Older messages than the history holds were missed: start again from it.
      closePopup({ restoreFocus: false });
      log.querySelectorAll("li.msg, li.notice").forEach((li) => li.remove());
      lastId = 0;
      shown.clear();
      reactionOrder.clear();
      deferred.clear();
      gaps.length = 0; // a fill on its way sees its gap gone
      olderHeld = false; // the older ones held come as this frame's gap (if any)
      addNotice(_("Some messages were missed while you were away; showing the latest ones."));
    }
    // What changed while away, then what is new.
    if (frame.updates?.length) keepScroll(() => frame.updates.forEach(applyUpdate));
    appendMessages(messages, { live: false, follow: !holdPosition && nearBottom() });
    holdPosition = false;
    if (frame.more && (after > 0 || frame.truncated)) {
      // Held messages between what the page had and this frame were left out:
      // fetch them (newest page first) into their place.
      const high = messages.length ? messages[0].id : Infinity;
      openGap(frame.truncated ? 0 : after, high, frame.truncated);
    } else if (frame.more) {
      olderHeld = true; // a first visit: older ones come by scrolling back
    } else if (frame.truncated && messages.length) {
      log.prepend(startMarker());
    }
    if (frame.truncated) scrollToBottom();
    markRead();
    attempt = 0;
    refusals = 0;
    setState("connected");
    if (pending) {
      unconfirmed(
        pending.kind === "edit"
          ? _("Not saved: the connection dropped before the server got it. Press Enter to try again.")
          : _("Not sent: the connection dropped before the server got it. Press Enter to try again."),
      );
    } else if (help.dataset.reason === "connection") {
      setHelp("");
    }
    fillGaps();
  } else if (frame.type === "message") {
    if (!appendMessages([frame], { live: true })) ws.close(4000, "gap: resuming");
    else markRead();
  } else if (frame.type === "update") {
    rev = Math.max(rev, Number(frame.rev ?? frame.message?.rev) || 0);
    if (frame.message) keepScroll(() => applyUpdate(frame.message));
  } else if (frame.type === "typing") {
    typingIn.heard(frame.username);
  } else if (frame.type === "presence") {
    showPresence(frame.users || []);
  } else if (frame.type === "error") {
    // An edit has no client_id: an error without one while an edit is on its way is its answer.
    const answers = pending && (pending.kind === "edit" ? !frame.client_id : frame.client_id === pending.clientId);
    if (answers) unconfirmed(frame.detail);
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
    setState("offline", _("Offline: waiting for the network"));
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
  const host = answer.host ? `"${answer.host}"` : _("no Host header");
  setHelp(
    format(
      _(
        "The server refused the live connection: this page's origin ({origin}) does not pass its origin check, and the server sees the host as {host}. Reloading will not help. An operator should check security.allowed_origins, and that the proxy passes the Host header with its port and the scheme (nginx: proxy_set_header Host $http_host; proxy_set_header X-Forwarded-Proto $scheme).",
      ),
      { origin: answer.origin, host },
    ),
    true,
    "refused",
  );
}

function schedule() {
  if (stopped) return;
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  const delay = ceiling / 2 + Math.random() * (ceiling / 2); // "equal jitter"
  attempt += 1;
  if (attempt > OFFLINE_AFTER_ATTEMPTS) setState("offline", _("Offline: still trying"));
  else setState("reconnecting");
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, delay);
}

function leave(reason) {
  stopped = true;
  setState("offline", _("Disconnected"));
  const why = reason ? reason.replace(/\.$/, "") : _("closed by the server");
  storeNotice(format(_("You were disconnected from room {room}: {why}."), { room, why }));
  location.assign("/chat/");
}

function loggedOut() {
  stopped = true;
  setState("offline", _("Logged out"));
  storeNotice(format(_("Your session ended. Log in again to rejoin room {room}."), { room }));
  // Slashes kept, as the server writes `next` in its own redirects.
  location.assign(`/login/?next=${encodeURIComponent(location.pathname).replace(/%2F/g, "/")}`);
}

// -- sending -----------------------------------------------------------------------

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function connected() {
  return state === "connected" && socket?.readyState === WebSocket.OPEN;
}

function tooLong(text) {
  if (length(text) <= maxLength) return false;
  setHelp(format(ngettext("Messages are at most {max} character (this one has {n}).", "Messages are at most {max} characters (this one has {n}).", maxLength), { max: maxLength, n: length(text) }), true);
  return true;
}

function send() {
  const text = input.value;
  if (pending) return;
  if (mode?.kind === "edit") {
    saveEdit();
    return;
  }
  if (!text.trim()) return;
  if (!connected()) {
    setHelp(_("Not connected: your message stays here until you can send it."), true, "connection");
    return;
  }
  if (tooLong(text)) return;
  const clientId = newClientId();
  const frame = { type: "message", text, client_id: clientId };
  if (mode?.kind === "reply") frame.reply_to = mode.id;
  pending = {
    kind: "message",
    clientId,
    text,
    replyTo: frame.reply_to,
    timer: setTimeout(() => unconfirmed(_("No confirmation from the server yet; the text is kept.")), CONFIRM_TIMEOUT_MS),
  };
  socket.send(JSON.stringify(frame));
  typingOut.reset();
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
  if (mode?.kind === "reply" && mode.id === sent.replyTo) setMode(null);
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

// Any frame that is not a message (delete, react): sent if connected, else said why.
function sendFrame(frame) {
  if (!connected()) {
    setHelp(_("Not connected: try again when the connection is back."), true, "connection");
    return false;
  }
  socket.send(JSON.stringify(frame));
  return true;
}

// -- message actions -------------------------------------------------------------------

// The composer's mode, shown above it: replying to a message, or editing one.
function setMode(next) {
  mode = next;
  context.hidden = !mode;
  form.classList.toggle("is-editing", mode?.kind === "edit");
  sendButton.textContent = mode?.kind === "edit" ? _("Save") : _("Send");
  if (!mode) {
    contextText.replaceChildren();
    return;
  }
  const m = shown.get(mode.id);
  if (mode.kind === "reply") {
    const quoted = m?.deleted ? _("message deleted") : firstLine(m?.text || "");
    const author = el("bdi", "", m?.username || "");
    contextText.replaceChildren(_("Replying to") + " ", author, ": ", el("span", "context-quote", quoted));
    contextCancel.setAttribute("aria-label", _("Cancel reply"));
  } else {
    contextText.replaceChildren(_("Editing message — Esc to cancel"));
    contextCancel.setAttribute("aria-label", _("Cancel editing"));
  }
}

function cancelMode() {
  if (pending?.kind === "edit") return; // on its way: its update (or error) ends it
  if (mode?.kind === "edit") input.value = mode.draft; // what was there before
  setMode(null);
  if (help.dataset.reason === "send") setHelp("");
}

function startReply(id) {
  if (pending) return;
  if (mode?.kind === "edit") cancelMode();
  setMode({ kind: "reply", id });
  input.focus();
}

function startEdit(id) {
  const m = shown.get(id);
  if (pending || !m || m.deleted || !isMine(m)) return;
  const draft = mode?.kind === "edit" ? mode.draft : input.value;
  setMode({ kind: "edit", id, draft });
  input.value = m.text;
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
  setHelp("");
}

function saveEdit() {
  const text = input.value;
  const m = shown.get(mode.id);
  if (m && text === m.text) {
    cancelMode(); // nothing changed: nothing to send
    return;
  }
  if (!text.trim()) {
    setHelp(_("An edit cannot be empty: delete the message instead."), true, "send");
    return;
  }
  if (!connected()) {
    setHelp(_("Not connected: your edit stays here until you can save it."), true, "connection");
    return;
  }
  if (tooLong(text)) return;
  pending = {
    kind: "edit",
    id: mode.id,
    text,
    timer: setTimeout(() => unconfirmed(_("No confirmation from the server yet; the text is kept.")), CONFIRM_TIMEOUT_MS),
  };
  socket.send(JSON.stringify({ type: "edit", id: mode.id, text }));
  setHelp("");
  updateComposer();
}

// An update of the message the composer replies to or edits.
function composerSawUpdate(m) {
  const edit = [pending, stale].find((p) => p?.kind === "edit" && p.id === m.id);
  if (mode.kind === "edit" && edit && !m.deleted && m.text === edit.text) {
    // The server has the edit.
    clearTimeout(edit.timer);
    if (edit === pending) pending = null;
    stale = null;
    setHelp("");
    updateComposer();
    // Back to what was being written before, unless the text was changed
    // again after the edit timed out (then that is the next edit).
    if (input.value === edit.text) {
      input.value = mode.draft;
      setMode(null);
    }
  } else if (m.deleted) {
    const editing = mode.kind === "edit";
    setMode(null); // the text typed stays in the input
    if (editing) setHelp(_("That message was deleted meanwhile; your text is kept."), true, "send");
  } else {
    setMode(mode); // the quote shows the new text
  }
}

function react(id, emoji) {
  sendFrame({ type: "react", id, emoji });
}

async function askDelete(id, returnTo) {
  const m = shown.get(id);
  if (!m || m.deleted) return;
  if (await confirmDelete(`${m.username}: ${firstLine(m.text)}`, returnTo)) {
    sendFrame({ type: "delete", id });
  }
}

// The "⋯" menu of a message: what this person may do with it.
function openMenuFor(li, trigger = li.querySelector(".msg-actions")) {
  const m = shown.get(Number(li.dataset.id));
  if (!m || m.deleted || !trigger) return;
  const returnTo = document.activeElement === li ? li : trigger;
  const items = [
    { label: _("Reply"), run: () => startReply(m.id) },
    { label: _("React"), run: () => openPicker(trigger, (emoji) => react(m.id, emoji), returnTo) },
  ];
  if (isMine(m)) items.push({ label: _("Edit"), run: () => startEdit(m.id) });
  if (isMine(m) || canModerate) items.push({ label: _("Delete"), run: () => askDelete(m.id, li) });
  openMenu(trigger, items, returnTo);
}

const typingIn = typingIndicator($("typing"), me);
const typingOut = typingSender(() => connected() && sendFrame({ type: "typing" }));

form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});

contextCancel.addEventListener("click", () => {
  cancelMode();
  input.focus();
});

input.addEventListener("keydown", (event) => {
  if (event.isComposing) return;
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    send();
  } else if (event.key === "Escape" && mode) {
    event.preventDefault();
    cancelMode();
  } else if (event.key === "ArrowUp" && !input.value && !mode && !pending && !event.shiftKey) {
    // Up in an empty box: edit my last message.
    const last = [...shown.values()].reverse().find((m) => isMine(m) && !m.deleted);
    if (last) {
      event.preventDefault();
      startEdit(last.id);
    }
  }
});

input.addEventListener("input", () => {
  if (help.dataset.reason === "send" || help.dataset.reason === "counter") setHelp("");
  const left = maxLength - length(input.value);
  if (left < 200) setHelp(`${left} character${left === 1 ? "" : "s"} left.`, false, "counter");
  if (mode?.kind !== "edit") typingOut.input(input.value);
});

initLogKeys(log, { openMenuFor: (li) => openMenuFor(li) });

log.addEventListener("scroll", () => {
  if (nearBottom()) {
    unseen = 0;
    pill.hidden = true;
  }
  maybeLoadOlder();
  markRead();
});

// Home and PageUp in the log reach the top (actions.js moves the focus, the
// browser scrolls): load from there, even when the log is already at the top.
log.addEventListener("keydown", (event) => {
  if (event.key === "Home" || event.key === "PageUp") requestAnimationFrame(maybeLoadOlder);
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
  fillGaps();
  if (socket?.readyState === WebSocket.OPEN) setState("connected"); // it outlived the outage
  else connect();
});

window.addEventListener("offline", () => {
  if (stopped) return;
  // No retries while there is no network: "online" reconnects.
  clearTimeout(retryTimer);
  retryTimer = null;
  setState("offline", _("Offline: waiting for the network"));
});

window.addEventListener("pagehide", () => {
  stopped = true;
  clearTimeout(retryTimer);
  if (readTimer) {
    // Leaving within the second a read was due in: say it now.
    clearTimeout(readTimer);
    readTimer = null;
    const seen = readUpTo();
    if (socket?.readyState === WebSocket.OPEN && seen > readSent) {
      socket.send(JSON.stringify({ type: "read", id: seen }));
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
if (olderHeld && log.scrollHeight <= log.clientHeight) maybeLoadOlder();
input.disabled = false;
setState("connecting");
if (document.activeElement === document.body || document.activeElement === null) input.focus();
connect();
