// Formatting: a small Markdown subset, rendered by building DOM nodes.
//
// Nothing here parses HTML: every piece of the text becomes a text node
// (textContent), inside elements this module creates itself. The only
// attribute that ever takes user text is a link's href, and only after
// `new URL()` says it is http:, https: or mailto:. So `<img onerror>`,
// `<script>`, `<!-- -->`, `javascript:` and `data:` links show as the
// characters that were typed; the stored message stays exactly what the
// person typed.
//
// Blocks: ``` fenced code (an optional language word), > quotes, - / * and
// 1. lists; everything else is kept line for line (the bubble shows newlines
// as typed). Inline: `code`, **bold**, *italic* or _italic_, ~~strike~~,
// [text](url), bare http(s):// links, @mentions (mentions.js), and a
// backslash before punctuation keeps that punctuation literal.
import { mentionMark, MENTION_RE } from "./mentions.js";

const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
const LINK_REL = "noopener noreferrer nofollow";
const MAX_DEPTH = 6; // nested quotes and emphasis beyond this stay as typed

const FENCE_OPEN = /^ {0,3}(`{3,})[ \t]*([^`\s]*)[^`]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const BULLET = /^ {0,3}([-*])[ \t]+(\S.*)$/;
const ORDERED = /^ {0,3}(\d{1,9})([.)])[ \t]+(\S.*)$/;
const CONTINUATION = /^(?: {2,}|\t)\s*(\S.*)$/;

const PUNCTUATION = /[!-/:-@[-`{-~]/;
const WORD = /[\p{L}\p{N}]/u;
const SPACE = /\s/;
const MENTION_AT = new RegExp(MENTION_RE.source, "y");
const URL_AT = /https?:\/\/[^\s<>"]+/iy;

// The href for `raw`, or null: only absolute http:, https: and mailto: URLs.
export function safeUrl(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  return LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
}

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

function link(href, children) {
  const a = el("a");
  a.href = href; // validated by safeUrl
  a.rel = LINK_REL;
  a.target = "_blank";
  a.append(...children);
  return a;
}

// -- blocks -----------------------------------------------------------------------

// The nodes showing `text` formatted; `me` is the reader (their mentions marked).
export function renderMarkdown(text, me) {
  const fragment = document.createDocumentFragment();
  fragment.append(...blocks(text.split(/\r\n|\r|\n/), { me }, 0));
  return fragment;
}

function blocks(lines, ctx, depth) {
  const out = [];
  let plain = []; // lines kept as typed, up to the next block
  const flush = (beforeBlock) => {
    let start = 0;
    let end = plain.length;
    // Blank lines next to a block are the block's spacing, not text.
    if (out.length) while (start < end && !plain[start].trim()) start += 1;
    if (beforeBlock) while (end > start && !plain[end - 1].trim()) end -= 1;
    if (end > start) {
      const p = el("p");
      p.append(...inline(plain.slice(start, end).join("\n"), ctx, 0));
      out.push(p);
    }
    plain = [];
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let match;
    if (depth < MAX_DEPTH && (match = FENCE_OPEN.exec(line))) {
      const close = new RegExp(`^ {0,3}\`{${match[1].length},}[ \\t]*$`);
      let end = i + 1;
      while (end < lines.length && !close.test(lines[end])) end += 1;
      flush(true);
      out.push(codeBlock(match[2], lines.slice(i + 1, end)));
      i = end + 1; // an unclosed fence runs to the end, as in CommonMark
    } else if (depth < MAX_DEPTH && QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && (match = QUOTE.exec(lines[i]))) {
        inner.push(match[1]);
        i += 1;
      }
      flush(true);
      const quote = el("blockquote");
      quote.append(...blocks(inner, ctx, depth + 1));
      out.push(quote);
    } else if (BULLET.test(line) || ORDERED.test(line)) {
      flush(true);
      i = list(lines, i, ctx, out);
    } else {
      plain.push(line);
      i += 1;
    }
  }
  flush(false);
  return out;
}

function codeBlock(language, lines) {
  const box = el("div", "md-code");
  if (language) {
    const label = el("span", "md-lang");
    label.textContent = language;
    box.append(label);
  }
  const pre = el("pre");
  const code = el("code");
  code.textContent = lines.join("\n");
  pre.append(code);
  box.append(pre);
  return box;
}

// One list from line `i` on (items of one kind; indented lines continue an
// item); returns the index of the first line after it.
function list(lines, i, ctx, out) {
  const ordered = ORDERED.test(lines[i]);
  const pattern = ordered ? ORDERED : BULLET;
  const items = [];
  while (i < lines.length) {
    const match = pattern.exec(lines[i]);
    if (match) {
      items.push(ordered ? { number: `${match[1]}${match[2]}`, text: [match[3]] } : { text: [match[2]] });
    } else {
      const more = CONTINUATION.exec(lines[i]);
      if (!more || BULLET.test(lines[i]) || ORDERED.test(lines[i])) break;
      items[items.length - 1].text.push(more[1]);
    }
    i += 1;
  }
  const node = el(ordered ? "ol" : "ul");
  for (const item of items) {
    const li = el("li");
    if (ordered) {
      // The number as typed (text, not an attribute): "3." stays "3.".
      const number = el("span", "md-num");
      number.textContent = item.number;
      li.append(number, " ");
    }
    li.append(...inline(item.text.join("\n"), ctx, 0));
    node.append(li);
  }
  out.push(node);
  return i;
}

// -- inline -----------------------------------------------------------------------

// What starts at s[i] and is never split by emphasis: a code span, a mention, a
// bare link. {end, node()} (node() builds it; text for a lone backtick run), or null.
function atomAt(s, i, ctx) {
  const c = s[i];
  if (c === "`") {
    let n = 1;
    while (s[i + n] === "`") n += 1;
    for (let j = s.indexOf("`", i + n); j !== -1; j = s.indexOf("`", j)) {
      let m = 1;
      while (s[j + m] === "`") m += 1;
      if (m === n) {
        let code = s.slice(i + n, j);
        if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ")) code = code.slice(1, -1);
        return {
          end: j + n,
          node: () => {
            const node = el("code");
            node.textContent = code;
            return node;
          },
        };
      }
      j += m;
    }
    const run = s.slice(i, i + n);
    return { end: i + n, node: () => document.createTextNode(run) };
  }
  if (c === "@") {
    MENTION_AT.lastIndex = i;
    const match = MENTION_AT.exec(s);
    if (match) return { end: i + match[0].length, node: () => mentionMark(match[0], ctx.me) };
  }
  if ((c === "h" || c === "H") && ctx.links !== false && !(i > 0 && /[\w/]/.test(s[i - 1]))) {
    URL_AT.lastIndex = i;
    const match = URL_AT.exec(s);
    if (match) {
      const raw = trimUrl(match[0]);
      const href = safeUrl(raw);
      if (href) return { end: i + raw.length, node: () => link(href, [raw]) };
    }
  }
  return null;
}

// A bare link ends before trailing punctuation, and before a ")" it did not open.
function trimUrl(raw) {
  let url = raw;
  for (;;) {
    const last = url[url.length - 1];
    if (".,:;!?'*_~".includes(last)) {
      url = url.slice(0, -1);
    } else if (last === ")" && url.split("(").length < url.split(")").length) {
      url = url.slice(0, -1);
    } else {
      return url;
    }
  }
}

// `[text](url)` at s[i]: {end, label, href}, or null (then it is text).
function linkAt(s, i) {
  let depth = 0;
  let k = i;
  for (; k < s.length; k += 1) {
    if (s[k] === "\\") k += 1;
    else if (s[k] === "[") depth += 1;
    else if (s[k] === "]" && --depth === 0) break;
  }
  if (k >= s.length || k === i + 1 || s[k + 1] !== "(") return null;
  let parens = 0;
  let j = k + 2;
  for (; j < s.length; j += 1) {
    if (SPACE.test(s[j])) return null;
    if (s[j] === "(") parens += 1;
    else if (s[j] === ")" && parens-- === 0) break;
  }
  if (j >= s.length) return null;
  const href = safeUrl(s.slice(k + 2, j));
  return href ? { end: j + 1, label: s.slice(i + 1, k), href } : null;
}

const DELIMITERS = [
  ["**", "strong"],
  ["__", "strong"],
  ["~~", "s"],
  ["*", "em"],
  ["_", "em"],
];

// Emphasis opening at s[i] with `delim`: {tag, from, to, end}, or null. An opener
// is followed by a non-space and not preceded by a letter or digit; a closer
// follows a non-space and is not followed by one (so snake_case_names and
// 2*3*4 stay as typed). `failed` remembers, per delimiter, a position from
// which no closer exists (each text is scanned once per delimiter, not once per opener).
function emphasisAt(s, i, delim, ctx, failed) {
  const from = i + delim.length;
  if (from >= s.length || SPACE.test(s[from]) || (i > 0 && WORD.test(s[i - 1]))) return null;
  if (s[from] === delim[0] && delim.length === 1) return null; // "**" is not "*" twice
  if (failed[delim] !== undefined && from >= failed[delim]) return null;
  for (let j = from + 1; j <= s.length - delim.length; ) {
    const atom = atomAt(s, j, ctx);
    if (atom) {
      j = atom.end;
      continue;
    }
    if (s[j] === "\\") {
      j += 2;
      continue;
    }
    if (s.startsWith(delim, j) && !SPACE.test(s[j - 1])) {
      // In a longer run ("***x***"), close with its last characters.
      let close = j;
      while (s[close + delim.length] === delim[0]) close += 1;
      const after = s[close + delim.length];
      if (after === undefined || !WORD.test(after)) return { from, to: close, end: close + delim.length };
      j = close + delim.length;
      continue;
    }
    j += 1;
  }
  failed[delim] = from;
  return null;
}

function inline(s, ctx, depth) {
  const out = [];
  const failed = {};
  let text = "";
  const flush = () => {
    if (text) out.push(document.createTextNode(text));
    text = "";
  };
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === "\\" && i + 1 < s.length && PUNCTUATION.test(s[i + 1])) {
      text += s[i + 1];
      i += 2;
      continue;
    }
    const atom = atomAt(s, i, ctx);
    if (atom) {
      flush();
      out.push(atom.node());
      i = atom.end;
      continue;
    }
    if (c === "[" && ctx.links !== false) {
      const found = linkAt(s, i);
      if (found) {
        flush();
        out.push(link(found.href, inline(found.label, { ...ctx, links: false }, depth + 1)));
        i = found.end;
        continue;
      }
    }
    if ((c === "*" || c === "_" || c === "~") && depth < MAX_DEPTH) {
      let matched = null;
      for (const [delim, tag] of DELIMITERS) {
        if (!s.startsWith(delim, i)) continue;
        const found = emphasisAt(s, i, delim, ctx, failed);
        if (found) {
          matched = { ...found, tag };
          break;
        }
      }
      if (matched) {
        flush();
        const node = el(matched.tag);
        node.append(...inline(s.slice(matched.from, matched.to), ctx, depth + 1));
        out.push(node);
        i = matched.end;
        continue;
      }
      // Not an opener: the whole run is text (a "**" is not tried again as "*").
      let end = i + 1;
      while (s[end] === c) end += 1;
      text += s.slice(i, end);
      i = end;
      continue;
    }
    text += c;
    i += 1;
  }
  flush();
  return out;
}
