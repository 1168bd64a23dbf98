// Completing `@name` in the composer: typing `@` and the start of a name
// offers the people of the conversation (here now, members, authors in the
// log, direct conversations). Arrows move, Enter or Tab picks, Escape closes;
// the list is a role="listbox" the input points into with aria-activedescendant.
// Keys are taken in the capture phase on the form, before room.js's Enter sends.
const $ = (id) => document.getElementById(id);
const form = $("composer");
const input = $("message-input");
const menu = $("mention-menu");
const me = ($("room")?.dataset.me || "").toLowerCase();
const MAX_OPTIONS = 8;
const TOKEN_RE = /(?<![\w@])@([A-Za-z0-9_]{0,32})$/;

let options = []; // names offered
let active = -1;
let token = null; // {start, end}: the "@que" being completed

function knownNames() {
  const names = new Map(); // lower -> as shown
  const add = (name) => {
    const clean = (name || "").trim();
    if (clean && /^[A-Za-z_][A-Za-z0-9_]*$/.test(clean) && !names.has(clean.toLowerCase())) {
      names.set(clean.toLowerCase(), clean);
    }
  };
  document.querySelectorAll("#presence li bdi, .member-list li bdi").forEach((b) => add(b.textContent));
  document.querySelectorAll("#sidebar-dms .conv-name").forEach((b) => add(b.textContent));
  document.querySelectorAll("#log li.msg").forEach((li) => add(li.dataset.user));
  names.delete(me);
  return [...names.values()];
}

function close() {
  options = [];
  active = -1;
  token = null;
  menu.hidden = true;
  menu.replaceChildren();
  input.removeAttribute("aria-activedescendant");
}

function highlight(index) {
  active = index;
  [...menu.children].forEach((li, i) => li.setAttribute("aria-selected", String(i === index)));
  if (index >= 0) {
    input.setAttribute("aria-activedescendant", `mention-option-${index}`);
    menu.children[index].scrollIntoView({ block: "nearest" });
  }
}

function update() {
  const caret = input.selectionStart;
  if (caret !== input.selectionEnd) return close();
  const match = input.value.slice(0, caret).match(TOKEN_RE);
  if (!match) return close();
  const query = match[1].toLowerCase();
  const found = knownNames()
    .filter((name) => name.toLowerCase().startsWith(query) && name.toLowerCase() !== query)
    .sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()))
    .slice(0, MAX_OPTIONS);
  if (!found.length) return close();
  token = { start: caret - match[0].length, end: caret };
  const same = found.length === options.length && found.every((n, i) => n === options[i]);
  options = found;
  if (!same) {
    menu.replaceChildren(
      ...found.map((name, i) => {
        const li = document.createElement("li");
        li.id = `mention-option-${i}`;
        li.setAttribute("role", "option");
        li.textContent = `@${name}`;
        li.addEventListener("mousedown", (event) => event.preventDefault()); // keep the focus
        li.addEventListener("click", () => pick(i));
        return li;
      }),
    );
    active = 0;
  }
  menu.hidden = false;
  highlight(Math.min(Math.max(active, 0), found.length - 1));
}

function pick(index) {
  if (!token || !options[index]) return;
  const before = input.value.slice(0, token.start);
  const after = input.value.slice(token.end);
  const inserted = `@${options[index]} `;
  input.value = before + inserted + after.replace(/^ /, "");
  const caret = before.length + inserted.length;
  input.setSelectionRange(caret, caret);
  close();
  input.dispatchEvent(new Event("input", { bubbles: true }));
}

if (form && input && menu) {
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", "mention-menu");
  input.addEventListener("input", update);
  input.addEventListener("click", update);
  input.addEventListener("blur", close);
  form.addEventListener(
    "keydown",
    (event) => {
      if (event.target !== input || menu.hidden || event.isComposing) return;
      const keys = {
        ArrowDown: () => highlight((active + 1) % options.length),
        ArrowUp: () => highlight((active - 1 + options.length) % options.length),
        Enter: () => pick(active),
        Tab: () => pick(active),
        Escape: close,
      };
      const action = keys[event.key];
      if (!action || (event.key === "Enter" && event.shiftKey)) return;
      event.preventDefault();
      event.stopPropagation(); // room.js's Enter does not send
      action();
    },
    true,
  );
  input.addEventListener("keyup", (event) => {
    if (event.key === "ArrowLeft" || event.key === "ArrowRight" || event.key === "Home" || event.key === "End") {
      update();
    }
  });
}
