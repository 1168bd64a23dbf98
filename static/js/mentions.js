// Mentions: `@name` (a whole word, any letter case) in a message, as the
// server finds them (chatapp/chat/conversations.py `_MENTION`). markdown.js
// marks each one found outside code with a <mark> element: never parsed as HTML.
export const MENTION_RE = /(?<![\w@])@([A-Za-z_][A-Za-z0-9_]{0,31})(?!\w)/g;

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
