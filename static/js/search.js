// Search in the sidebar (templates/_sidebar.html): every word of the query, any
// letter case, in the conversations the person can read (GET /api/search); on a
// conversation page, "Only in this conversation" narrows it (`room=`).
//
// Results are built from DOM nodes: the message's text goes in as text nodes,
// the matched words as <mark class="hit"> elements holding text nodes. Nothing
// from the query or a message is ever parsed as HTML. Each result links to the
// conversation at that message (`/chat/{room}/?at=ID`, `/dm/{name}/?at=ID`).
//
// Keyboard: Enter searches; ArrowDown from the box goes to the first result,
// ArrowUp/ArrowDown move between results, Escape clears and returns to the box.
// The status line (aria-live) says "Searching…", "No results" or "N results".
const $ = (id) => document.getElementById(id);
const form = $("search-form");
const input = $("search-input");
const here = $("search-here");
const status = $("search-status");
const list = $("search-results");
const LIMIT = 50;
let asked = 0; // the newest search sent: an older answer arriving late is dropped

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// [start, end) ranges of `text` where a word occurs, in any letter case, merged.
function ranges(text, words) {
  const lower = text.toLowerCase();
  // Lower-casing may change a string's length (a few letters): then no highlight.
  if (lower.length !== text.length) return [];
  const found = [];
  for (const word of words) {
    const w = word.toLowerCase();
    if (!w) continue;
    for (let at = lower.indexOf(w); at !== -1; at = lower.indexOf(w, at + w.length)) {
      found.push([at, at + w.length]);
    }
  }
  found.sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const [start, end] of found) {
    const last = merged[merged.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  return merged;
}

// The text as nodes: plain runs as text nodes, the matched words in <mark>.
function highlighted(text, words) {
  const nodes = [];
  let at = 0;
  for (const [start, end] of ranges(text, words)) {
    if (start > at) nodes.push(document.createTextNode(text.slice(at, start)));
    nodes.push(el("mark", "hit", text.slice(start, end)));
    at = end;
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

function when(ts) {
  const date = new Date(ts * 1000);
  return { text: date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }), iso: date.toISOString() };
}

function safeUrl(url) {
  // Only the app's own conversation pages: /chat/name/?at=N or /dm/name/?at=N.
  return /^\/(chat|dm)\/[A-Za-z0-9_]+\/\?at=\d+$/.test(url || "") ? url : null;
}

function item(result, words) {
  const li = document.createElement("li");
  const url = safeUrl(result.url);
  const link = el(url ? "a" : "div");
  if (url) link.href = url;
  link.dataset.id = String(result.id);
  const meta = el("span", "result-meta");
  const where = el("bdi", "result-where", result.kind === "dm" ? `@${result.title}` : `#${result.title}`);
  const author = el("bdi", "result-author", result.username || "");
  const time = el("time", "result-time");
  const shown = when(result.ts);
  time.textContent = shown.text;
  time.dateTime = shown.iso;
  meta.append(where, author, time);
  const text = el("span", "result-text");
  text.append(...highlighted(result.text || "", words));
  link.append(meta, text);
  li.append(link);
  return li;
}

function say(text) {
  status.textContent = text;
}

async function search() {
  const q = input.value.trim();
  if (!q) {
    list.replaceChildren();
    list.hidden = true;
    say("Type a word to search for.");
    return;
  }
  const params = new URLSearchParams({ q, limit: String(LIMIT) });
  if (here?.checked) params.set("room", here.value);
  const mine = ++asked;
  say("Searching…");
  let answer;
  try {
    const response = await fetch(`/api/search?${params}`, {
      headers: { Accept: "application/json" },
      redirect: "manual",
      cache: "no-store",
    });
    const body = await response.json().catch(() => ({}));
    if (mine !== asked) return;
    if (!response.ok) {
      list.replaceChildren();
      list.hidden = true;
      say(response.status === 404 ? "No results" : body.error || "The search failed: try again.");
      return;
    }
    answer = body.results || [];
  } catch {
    if (mine === asked) say("The search failed: check the connection and try again.");
    return;
  }
  const words = q.split(/\s+/).filter(Boolean);
  list.replaceChildren(...answer.map((result) => item(result, words)));
  list.hidden = answer.length === 0;
  say(answer.length === 0 ? "No results" : answer.length === 1 ? "1 result" : `${answer.length} results`);
}

function results() {
  return [...list.querySelectorAll("a")];
}

if (form && input && list) {
  $("search-button")?.addEventListener("click", () => search());
  here?.addEventListener("change", () => {
    if (input.value.trim()) search();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      search();
    } else if (event.key === "ArrowDown" && !list.hidden) {
      event.preventDefault();
      results()[0]?.focus();
    } else if (event.key === "Escape" && input.value) {
      event.preventDefault();
      event.stopPropagation(); // the drawer stays open: only the search is cleared
      input.value = "";
      list.replaceChildren();
      list.hidden = true;
      say("");
    }
  });
  list.addEventListener("keydown", (event) => {
    const links = results();
    const at = links.indexOf(document.activeElement);
    if (at === -1) return;
    if (event.key === "ArrowDown") {
      event.preventDefault();
      links[Math.min(at + 1, links.length - 1)].focus();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      (at === 0 ? input : links[at - 1]).focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      input.focus();
    }
  });
}
