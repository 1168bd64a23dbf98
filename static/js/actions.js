// Message actions on the room page: moving through the log with the keyboard,
// the "⋯" menu of a message, the reaction picker and the delete confirmation.
// room.js says what each action does; this module only handles focus, keys
// and the popups. Every text is set with textContent.
//
// Keyboard: in the log (Tab reaches it), Up/Down/Home/End move from message to
// message; Tab then reaches that message's controls (only the focused
// message's controls are in the Tab order, so the log is one stop, not fifty).
// Enter, the menu key or Shift+F10 on a message opens its menu; Escape closes
// a menu or the picker and puts focus back where it was.
export const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "✅"];

const CONTROLS = "button, a[href]";
let openPopup = null; // {element, close}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// -- moving through the log --------------------------------------------------------

function messages(log) {
  return [...log.querySelectorAll("li.msg")];
}

// Only the message holding focus has its controls in the Tab order.
function setTabbable(li, on) {
  li.querySelectorAll(CONTROLS).forEach((c) => {
    c.tabIndex = on ? 0 : -1;
  });
}

export function focusMessage(li) {
  if (!li) return;
  li.focus({ preventScroll: true });
  li.scrollIntoView({ block: "nearest" });
}

// A message rendered (or re-rendered) into the log: focusable, controls out of
// the Tab order unless focus is in it.
export function prepareMessage(li) {
  li.tabIndex = -1;
  setTabbable(li, li.contains(document.activeElement));
}

export function initLogKeys(log, { openMenuFor }) {
  log.addEventListener("focusin", (event) => {
    const li = event.target.closest?.("li.msg");
    if (li) setTabbable(li, true);
  });
  log.addEventListener("focusout", (event) => {
    const li = event.target.closest?.("li.msg");
    if (li && !li.contains(event.relatedTarget)) setTabbable(li, false);
  });
  log.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || event.isComposing) return;
    const all = messages(log);
    if (!all.length) return;
    const target = event.target;
    const li = target.closest?.("li.msg");
    if (target === log) {
      const pick = { ArrowUp: all.at(-1), End: all.at(-1), ArrowDown: all[0], Home: all[0] }[event.key];
      if (!pick) return;
      event.preventDefault();
      focusMessage(pick);
      return;
    }
    if (!li) return;
    if (target !== li) {
      if (event.key === "Escape") {
        event.preventDefault();
        li.focus();
      }
      return;
    }
    const at = all.indexOf(li);
    const moves = { ArrowUp: at - 1, ArrowDown: at + 1, Home: 0, End: all.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      focusMessage(all[Math.max(0, Math.min(all.length - 1, moves[event.key]))]);
    } else if (event.key === "Enter" || event.key === "ContextMenu" || (event.key === "F10" && event.shiftKey)) {
      event.preventDefault();
      openMenuFor(li);
    }
  });
}

// -- popups: one at a time, closed by Escape, by a click elsewhere, by scrolling ----

function place(popup, anchor) {
  // Fixed, next to the anchor: the log scrolls and clips, the popup must not.
  const box = anchor.getBoundingClientRect();
  if (!popup.isConnected) {
    popup.style.visibility = "hidden";
    document.body.append(popup);
  }
  const width = popup.offsetWidth;
  const height = popup.offsetHeight;
  const left = Math.max(8, Math.min(box.right - width, window.innerWidth - width - 8));
  const below = box.bottom + 4;
  const top = below + height > window.innerHeight - 8 ? Math.max(8, box.top - height - 4) : below;
  popup.style.left = `${left}px`;
  popup.style.top = `${top}px`;
  popup.style.visibility = "";
}

export function closePopup({ restoreFocus = true } = {}) {
  const current = openPopup;
  if (!current) return;
  openPopup = null;
  current.element.remove();
  current.anchor.classList.remove("popup-anchor");
  current.onClose?.();
  if (restoreFocus && current.returnTo?.isConnected) current.returnTo.focus({ preventScroll: true });
}

function openAt(element, anchor, returnTo, onClose) {
  closePopup({ restoreFocus: false });
  place(element, anchor);
  anchor.classList.add("popup-anchor"); // kept in sight while its popup is open
  openPopup = { element, anchor, returnTo, onClose };
}

// Is a popup open for something inside `node` (a message about to be re-rendered)?
export function popupIn(node) {
  return Boolean(openPopup && node.contains(openPopup.anchor));
}

document.addEventListener(
  "pointerdown",
  (event) => {
    // A press on the popup's own button is left to that button (it toggles).
    if (openPopup && !openPopup.element.contains(event.target) && !openPopup.anchor.contains(event.target)) {
      closePopup({ restoreFocus: false });
    }
  },
  true,
);
// The log scrolls under a popup (new messages come in): it follows its anchor
// while the anchor is in sight, and closes when it is not.
function follow() {
  if (!openPopup) return;
  const { element, anchor } = openPopup;
  const box = anchor.getBoundingClientRect();
  const log = anchor.closest(".log");
  const view = log ? log.getBoundingClientRect() : { top: 0, bottom: window.innerHeight };
  if (!anchor.isConnected || box.bottom < view.top || box.top > view.bottom) {
    closePopup({ restoreFocus: false });
  } else {
    place(element, anchor);
  }
}
document.addEventListener(
  "scroll",
  (event) => {
    if (openPopup && !openPopup.element.contains(event.target)) follow();
  },
  true,
);
window.addEventListener("resize", follow);

// -- the message menu ------------------------------------------------------------------

// A role="menu" under `trigger` (the "⋯" button, which gets aria-expanded) with
// `items` [{label, run}]; `returnTo` gets focus back on Escape.
export function openMenu(trigger, items, returnTo = trigger) {
  const menu = el("div", "popup message-menu");
  menu.id = "message-menu";
  menu.setAttribute("role", "menu");
  menu.setAttribute("aria-label", "Message actions");
  const buttons = items.map((item) => {
    const button = el("button", "menu-item", item.label);
    button.type = "button";
    button.setAttribute("role", "menuitem");
    button.tabIndex = -1;
    button.addEventListener("click", () => {
      closePopup({ restoreFocus: false });
      item.run();
    });
    return button;
  });
  menu.append(...buttons);
  menu.addEventListener("keydown", (event) => {
    const at = buttons.indexOf(document.activeElement);
    let next = null;
    if (event.key === "ArrowDown") next = (at + 1) % buttons.length;
    else if (event.key === "ArrowUp") next = (at - 1 + buttons.length) % buttons.length;
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = buttons.length - 1;
    else if (event.key === "Escape" || event.key === "Tab") {
      event.preventDefault();
      event.stopPropagation();
      closePopup();
      return;
    } else if (event.key.length === 1 && /\S/.test(event.key)) {
      // Type-ahead: the first item starting with that letter.
      const letter = event.key.toLowerCase();
      next = buttons.findIndex((b) => b.textContent.toLowerCase().startsWith(letter));
      if (next < 0) return;
    } else {
      return;
    }
    event.preventDefault();
    buttons[next].focus();
  });
  trigger.setAttribute("aria-expanded", "true");
  trigger.setAttribute("aria-controls", menu.id);
  openAt(menu, trigger, returnTo, () => {
    trigger.setAttribute("aria-expanded", "false");
    trigger.removeAttribute("aria-controls");
  });
  buttons[0]?.focus();
}

// -- the reaction picker -----------------------------------------------------------------

// One emoji: a single grapheme that is a pictograph (or a flag, or a keycap).
export function isOneEmoji(text) {
  const value = text.trim();
  if (!value) return false;
  const graphemes = [...new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(value)];
  return graphemes.length === 1 && /\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20e3/u.test(value);
}

// A small non-modal dialog: the quick reactions and a field for any one emoji.
export function openPicker(anchor, onPick, returnTo = anchor) {
  const picker = el("div", "popup reaction-picker");
  picker.id = "reaction-picker";
  picker.setAttribute("role", "dialog");
  picker.setAttribute("aria-label", "Add a reaction");
  const row = el("div", "picker-row");
  const quick = QUICK_REACTIONS.map((emoji) => {
    const button = el("button", "picker-emoji", emoji);
    button.type = "button";
    button.title = `React with ${emoji}`;
    button.setAttribute("aria-label", `React with ${emoji}`);
    button.addEventListener("click", () => pick(emoji));
    return button;
  });
  row.append(...quick);
  const form = el("form", "picker-other");
  const field = el("input");
  field.type = "text";
  field.id = "reaction-other";
  field.setAttribute("aria-label", "Any emoji");
  field.placeholder = "Any emoji";
  field.autocomplete = "off";
  field.maxLength = 32;
  const add = el("button", "button button-small", "Add");
  add.type = "submit";
  const problem = el("p", "picker-problem");
  problem.id = "reaction-problem";
  problem.setAttribute("aria-live", "polite");
  field.setAttribute("aria-describedby", problem.id);
  form.append(field, add);
  picker.append(row, form, problem);

  function pick(emoji) {
    closePopup();
    onPick(emoji);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (isOneEmoji(field.value)) pick(field.value.trim());
    else problem.textContent = "Type one emoji.";
  });
  picker.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      closePopup();
      return;
    }
    const at = quick.indexOf(document.activeElement);
    if (at < 0) return;
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (step) {
      event.preventDefault();
      quick[(at + step + quick.length) % quick.length].focus();
    }
  });
  openAt(picker, anchor, returnTo);
  quick[0].focus();
}

// -- confirming a delete -------------------------------------------------------------------

let dialog = null;

function deleteDialog() {
  if (dialog) return dialog;
  dialog = el("dialog", "confirm-dialog");
  dialog.id = "delete-dialog";
  dialog.setAttribute("aria-labelledby", "delete-title");
  dialog.setAttribute("aria-describedby", "delete-what");
  const form = el("form");
  form.method = "dialog";
  const title = el("h2", "", "Delete this message?");
  title.id = "delete-title";
  const what = el("p", "", "Everyone will see “message deleted” in its place. This cannot be undone.");
  what.id = "delete-what";
  const preview = el("blockquote", "delete-preview");
  const buttons = el("div", "dialog-buttons");
  const cancel = el("button", "button button-quiet", "Cancel");
  cancel.value = "cancel";
  cancel.id = "delete-cancel";
  const confirm = el("button", "button button-danger", "Delete");
  confirm.value = "delete";
  confirm.id = "delete-confirm";
  buttons.append(cancel, confirm);
  form.append(title, what, preview, buttons);
  dialog.append(form);
  document.body.append(dialog);
  return dialog;
}

// Ask before deleting: a modal <dialog> (Tab stays in it, Escape cancels).
// Resolves true when confirmed; focus goes back to `returnTo`.
export function confirmDelete(previewText, returnTo) {
  closePopup({ restoreFocus: false });
  const box = deleteDialog();
  const preview = box.querySelector(".delete-preview");
  preview.textContent = previewText;
  preview.hidden = !previewText;
  box.returnValue = "";
  return new Promise((resolve) => {
    box.addEventListener(
      "close",
      () => {
        if (returnTo?.isConnected) returnTo.focus({ preventScroll: true });
        resolve(box.returnValue === "delete");
      },
      { once: true },
    );
    // The browser gives focus back on close to what had it before showModal:
    // make that the message (the menu item that was focused is gone by then).
    returnTo?.focus({ preventScroll: true });
    box.showModal();
    box.querySelector("#delete-cancel").focus(); // the safe choice first
  });
}
