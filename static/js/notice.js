// A one-time notice carried across a navigation in sessionStorage: a page that
// sends the reader elsewhere (the room, when the server closes it for policy)
// stores the explanation; the next page shows it at the top of <main>.
import { _ } from "./i18n.js";
const KEY = "chatapp.notice";

export function storeNotice(text) {
  try {
    sessionStorage.setItem(KEY, text);
  } catch {
    // Storage disabled: the reader lands on the page without the explanation.
  }
}

function takeNotice() {
  try {
    const text = sessionStorage.getItem(KEY);
    sessionStorage.removeItem(KEY);
    return text;
  } catch {
    return null;
  }
}

function showNotice(text) {
  const main = document.getElementById("main");
  if (!main) return;
  const box = document.createElement("div");
  box.className = "flash";
  box.id = "flash";
  box.setAttribute("role", "alert");
  const message = document.createElement("p");
  message.textContent = text;
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "button button-quiet button-small";
  dismiss.textContent = _("Dismiss");
  dismiss.addEventListener("click", () => box.remove());
  box.append(message, dismiss);
  main.prepend(box);
}

const pending = takeNotice();
if (pending) showNotice(pending);
