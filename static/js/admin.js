// The admin page: ask before every action. Forms with data-confirm submit only
// when the prompt is accepted; the server never relies on this (CSRF, checks).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
