// Forms: the rules shown next to each input are checked as the user types.
// The server stays the judge: its limits come with the page (data-max-length,
// data-min-length, data-max-bytes on the inputs), and this only saves a round
// trip. Errors go in the same <ul id="NAME-errors"> the server renders, next
// to the field. Lengths are counted in code points, as the server counts them.
import { _, format, ngettext } from "./i18n.js";
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

const length = (text) => [...text].length;
const utf8Length = (text) => new TextEncoder().encode(text).length;
const limit = (input, name) => Number(input.dataset[name]);

// Whole sentences per kind of name, so each language words them its own way.
const NAME_TEXTS = {
  username: {
    empty: () => _("Enter a username."),
    long: (max, n) =>
      format(ngettext("Usernames are at most {max} character (this one has {n}).", "Usernames are at most {max} characters (this one has {n}).", max), { max, n }),
    digit: () => _("Usernames cannot start with a digit."),
    rule: () => _("Usernames are letters, digits and _, not starting with a digit."),
  },
  room: {
    empty: () => _("Enter a room name."),
    long: (max, n) =>
      format(ngettext("Room names are at most {max} character (this one has {n}).", "Room names are at most {max} characters (this one has {n}).", max), { max, n }),
    digit: () => _("Room names cannot start with a digit."),
    rule: () => _("Room names are letters, digits and _, not starting with a digit."),
  },
};

function nameProblems(input, kind) {
  const texts = NAME_TEXTS[kind];
  const value = input.value.trim();
  const max = limit(input, "maxLength");
  if (!value) return [texts.empty()];
  const problems = [];
  if (length(value) > max) problems.push(texts.long(max, length(value)));
  if (/^[0-9]/.test(value)) problems.push(texts.digit());
  const bad = [...new Set(value.replace(/[A-Za-z0-9_]/g, ""))];
  if (bad.length) {
    const shown = bad.map((c) => (c === " " ? _("space") : `“${c}”`)).join(", ");
    problems.push(format(_("Only letters, digits and _ are allowed (not {shown})."), { shown }));
  } else if (!NAME_RE.test(value) && !problems.length) {
    problems.push(texts.rule());
  }
  return problems;
}

function newPasswordProblems(form) {
  const input = form.elements.password;
  const value = input.value;
  const min = limit(input, "minLength");
  const maxBytes = limit(input, "maxBytes");
  if (!value) return [_("Enter a password.")];
  const problems = [];
  if (length(value) < min) {
    problems.push(
      format(ngettext("This password is too short. It must contain at least {n} character.", "This password is too short. It must contain at least {n} characters.", min), { n: min }),
    );
  }
  if (utf8Length(value) > maxBytes) {
    problems.push(format(_("This password is too long: at most {max} bytes once encoded (this one is {size})."), { max: maxBytes, size: utf8Length(value) }));
  }
  if (/^[0-9]+$/.test(value)) problems.push(_("This password is entirely numeric."));
  // Common and too-similar passwords are for the server to say.
  return problems;
}

function confirmationProblems(form) {
  const { password, password2 } = form.elements;
  if (!password2.value) return password.value ? [_("Enter the same password again.")] : [];
  return password.value === password2.value ? [] : [_("The two password fields didn't match.")];
}

const RULES = {
  register: {
    username: (form) => nameProblems(form.elements.username, "username"),
    password: newPasswordProblems,
    password2: confirmationProblems,
  },
  // Change password: the new password under the registration rules.
  password: {
    password: newPasswordProblems,
    password2: confirmationProblems,
  },
  room: {
    room: (form) => nameProblems(form.elements.room, "room"),
  },
};

function errorList(input) {
  const id = `${input.name}-errors`;
  let list = document.getElementById(id);
  if (!list) {
    list = document.createElement("ul");
    list.className = "field-errors";
    list.id = id;
    const help = document.getElementById(`${input.name}-help`);
    (help || input).after(list);
  }
  return list;
}

function showProblems(input, problems) {
  const list = errorList(input);
  list.replaceChildren(
    ...problems.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }),
  );
  list.hidden = problems.length === 0;
  const described = new Set((input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean));
  if (problems.length) {
    input.setAttribute("aria-invalid", "true");
    described.add(list.id);
  } else {
    input.removeAttribute("aria-invalid");
    described.delete(list.id);
  }
  input.setAttribute("aria-describedby", [...described].join(" "));
}

function wire(form, rules) {
  // A field is checked once the user has typed in it and left it (or it
  // already shows an error); then on every keystroke.
  const touched = new Set();
  const check = (name) => {
    const problems = rules[name](form);
    showProblems(form.elements[name], problems);
    return problems;
  };
  for (const name of Object.keys(rules)) {
    const input = form.elements[name];
    if (input.getAttribute("aria-invalid") === "true") touched.add(name);
    input.addEventListener("input", () => {
      if (touched.has(name)) check(name);
      // The confirmation depends on the password: recheck it once it was seen.
      if (name === "password" && touched.has("password2")) check("password2");
    });
    input.addEventListener("blur", () => {
      if (!input.value && !touched.has(name)) return;
      touched.add(name);
      check(name);
    });
  }
  form.addEventListener("submit", (event) => {
    let first = null;
    for (const name of Object.keys(rules)) {
      touched.add(name);
      if (check(name).length && !first) first = form.elements[name];
    }
    if (first) {
      event.preventDefault();
      first.focus();
    }
  });
}

for (const form of document.querySelectorAll("form[data-validate]")) {
  const rules = RULES[form.dataset.validate];
  if (rules) wire(form, rules);
}

// Focus: the first field the server found wrong; on a failed login, the first
// empty field (the password); otherwise the page's autofocus field stands.
const invalid = document.querySelector("form.form [aria-invalid=true]");
if (invalid) {
  invalid.focus();
} else if (document.querySelector(".form-error")) {
  const empty = [...document.querySelectorAll("form.form input:not([type=hidden])")].find((i) => !i.value);
  empty?.focus();
}
