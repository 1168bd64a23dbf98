// "alice is typing…": the others' typing frames shown in a polite live region,
// and this page's own typing sent at most once per SEND_EVERY_MS.
//
// The server relays a typing frame at most once per person per 2 s and never
// stores it; each person's indicator lasts EXPIRES_MS after their last frame
// and goes at once when their message arrives. The region's text changes only
// when who is typing changes, so a screen reader hears it once, not per frame.
const SEND_EVERY_MS = 2000;
const EXPIRES_MS = 5000;

export function typingIndicator(region, me) {
  const typing = new Map(); // username -> expiry timer, in the order they started
  const mine = (me || "").toLowerCase();

  function render() {
    const names = [...typing.keys()];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "several people are typing…";
    if (region.textContent !== text) region.textContent = text;
  }

  function stopped(username) {
    clearTimeout(typing.get(username));
    if (typing.delete(username)) render();
  }

  function heard(username) {
    if (!username || username.toLowerCase() === mine) return;
    clearTimeout(typing.get(username));
    typing.set(username, setTimeout(() => stopped(username), EXPIRES_MS));
    render();
  }

  return { heard, stopped };
}

// `send()` sends one typing frame and says whether it could.
export function typingSender(send) {
  let last = 0;
  return {
    input(text) {
      if (!text.trim()) return;
      const now = Date.now();
      if (now - last >= SEND_EVERY_MS && send()) last = now;
    },
    // After a message is sent: the next keystroke says so again at once.
    reset() {
      last = 0;
    },
  };
}
