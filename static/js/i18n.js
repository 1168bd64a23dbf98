// The page scripts' language: the page's <html lang>, and its catalog from
// GET /i18n/{lang}.json (the same .po files as the server's pages; see
// chatapp/i18n.py). `_()` and `ngettext()` are what babel.cfg extracts from
// static/js; `format()` fills {name} placeholders. Counts choose their form
// through Intl.PluralRules (Russian: one/few/many), dates and times through
// Intl.DateTimeFormat / Intl.RelativeTimeFormat in the page's language.
// English needs no catalog: its msgids are the text. A module that imports
// this one waits for the catalog (top-level await); if it cannot be fetched,
// the page speaks English rather than not at all.
export const lang = document.documentElement.lang || "en";

let messages = {};
let plural = { one: 0, other: 1 };

if (lang !== "en") {
  try {
    const response = await fetch(`/i18n/${encodeURIComponent(lang)}.json`, { credentials: "same-origin" });
    if (response.ok) ({ messages, plural } = await response.json());
  } catch {
    // offline or refused: the English msgids stand in
  }
}

const pluralRules = new Intl.PluralRules(lang);

export function _(message) {
  const translated = messages[message];
  return typeof translated === "string" && translated ? translated : message;
}

export function ngettext(singular, pluralText, n) {
  const forms = messages[singular];
  if (Array.isArray(forms)) {
    const index = plural[pluralRules.select(n)];
    return forms[index ?? forms.length - 1] || forms[forms.length - 1];
  }
  return n === 1 ? singular : pluralText;
}

// format("{n} results", { n: 3 }) → "3 results"; unknown names stay as they are.
export function format(text, params) {
  return text.replace(/\{(\w+)\}/g, (all, name) => (name in params ? String(params[name]) : all));
}

export const dateTimeFormat = (options) => new Intl.DateTimeFormat(lang, options);

const relative = new Intl.RelativeTimeFormat(lang, { numeric: "always" });

// "5 minutes ago" / "5 минут назад" for a time `seconds` before now (whole units, down).
export function ago(seconds) {
  for (const [unit, size] of [["day", 86400], ["hour", 3600], ["minute", 60]]) {
    if (seconds >= size) return relative.format(-Math.floor(seconds / size), unit);
  }
  return null;
}
