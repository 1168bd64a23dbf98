// The colour scheme: the system's (prefers-color-scheme) unless this browser
// chose one with the "Dark mode" toggle (kept in localStorage). A classic
// script in <head>, so the page is painted in the right colours at once.
(function () {
  const KEY = "chatapp.theme";
  const root = document.documentElement;
  const system = window.matchMedia("(prefers-color-scheme: dark)");

  function stored() {
    try {
      const value = localStorage.getItem(KEY);
      return value === "dark" || value === "light" ? value : null;
    } catch {
      return null; // storage disabled: follow the system
    }
  }

  function current() {
    return stored() || (system.matches ? "dark" : "light");
  }

  function apply() {
    root.dataset.theme = current(); // app.css: [data-theme=dark], or the media query without JS
    const button = document.getElementById("theme-button");
    if (button) button.setAttribute("aria-pressed", String(current() === "dark"));
  }

  apply();
  system.addEventListener("change", apply);
  window.addEventListener("storage", (event) => {
    if (event.key === KEY) apply(); // chosen in another tab
  });
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-button");
    if (!button) return;
    apply();
    button.addEventListener("click", () => {
      const next = current() === "dark" ? "light" : "dark";
      try {
        localStorage.setItem(KEY, next);
      } catch {
        // not remembered; still switch for this page
      }
      root.dataset.theme = next;
      button.setAttribute("aria-pressed", String(next === "dark"));
    });
  });
})();
