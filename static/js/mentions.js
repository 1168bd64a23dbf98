// Mentions: `@name` (a whole word, any letter case) in a message, as the
// server finds them (chatapp/chat/conversations.py `_MENTION`). The text is
// split into text nodes and <mark> elements: never parsed as HTML.
export const MENTION_RE = /(?<![\w@])@([A-Za-z_][A-Za-z0-9_]{0,31})(?!\w)/g;

// The nodes showing `text` with each mention marked; the reader's own name
// (`me`) marked strongly.
export function mentionNodes(text, me) {
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(MENTION_RE)) {
    if (match.index > at) nodes.push(document.createTextNode(text.slice(at, match.index)));
    nodes.push(mentionMark(match[0], me));
    at = match.index + match[0].length;
  }
  if (at < text.length || !nodes.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

// One mention ("@name"), marked; strongly when it names the reader.
export function mentionMark(mention, me) {
  const mark = document.createElement("mark");
  mark.className = "mention";
  if (mention.slice(1).toLowerCase() === (me || "").toLowerCase()) {
    mark.classList.add("mention-me");
    mark.title = "Mentions you";
  }
  mark.textContent = mention;
  return mark;
}

export function mentionsMe(text, me) {
  const mine = (me || "").toLowerCase();
  return [...text.matchAll(MENTION_RE)].some((m) => m[1].toLowerCase() === mine);
}
