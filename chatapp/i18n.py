"""Languages: which one a request speaks, and its gettext catalogs.

English is the source language (the msgids); Russian is the first
translation. The `.po` files under chatapp/locale are compiled in memory
when first needed (Babel's `read_po`), so there is no build step and no
binary in git. The request's language lives in a ContextVar set by
`chatapp.web.languages.middleware`: each aiohttp request is its own task,
so the value is the request's. Code outside a request (the CLI) speaks English.
"""

from __future__ import annotations

import functools
import re
from contextvars import ContextVar
from gettext import NullTranslations
from importlib import resources

from babel import Locale
from babel.messages.pofile import read_po
from babel.support import Translations

SUPPORTED = ("en", "ru")
DEFAULT = "en"
COOKIE = "chatapp_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
NAMES = {"en": "English", "ru": "Русский"}

_current: ContextVar[str] = ContextVar("chatapp_lang", default=DEFAULT)

# One `Accept-Language` item: a language range and an optional weight.
_ITEM = re.compile(
    r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*"
)


def supported(lang: object) -> str | None:
    """`lang` if it names a supported language (case-insensitive), else None."""
    if isinstance(lang, str):
        lang = lang.strip().lower()
        if lang in SUPPORTED:
            return SUPPORTED[SUPPORTED.index(lang)]  # the one shared string, not a copy
    return None


def from_accept_language(header: str | None) -> str | None:
    """The best supported language of an `Accept-Language` header, or None.

    Weights count (`q=0` refuses); among equal weights the first listed
    wins; `ru-RU` matches `ru`. A malformed item is skipped, never an error.
    """
    if not header or len(header) > 1000:
        return None
    best, best_q = None, 0.0
    for item in header.split(",")[:40]:
        match = _ITEM.fullmatch(item)
        if match is None:
            continue
        try:
            q = 1.0 if match.group(2) is None else float(match.group(2))
        except ValueError:
            continue
        if not 0 < q <= 1:
            continue
        primary = match.group(1).split("-")[0].lower()
        lang = DEFAULT if primary == "*" else supported(primary)
        if lang is not None and q > best_q:
            best, best_q = lang, q
    return best


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language, else the header's best match, else English."""
    return supported(cookie) or from_accept_language(accept_language) or DEFAULT


@functools.cache
def translations(lang: str) -> NullTranslations:
    """The catalog of `lang`, read once per process (English: the msgids themselves)."""
    if lang == DEFAULT or lang not in SUPPORTED:
        return NullTranslations()
    return Translations(catalog_file(lang))


def catalog(lang: str):
    """Babel's Catalog of `lang`'s `.po` file."""
    with (
        resources.files("chatapp")
        .joinpath(f"locale/{lang}/LC_MESSAGES/messages.po")
        .open("rb") as f
    ):
        return read_po(f, locale=lang)


def catalog_file(lang: str):
    """A compiled (`.mo`) copy of `lang`'s catalog, in memory."""
    from io import BytesIO

    from babel.messages.mofile import write_mo

    buffer = BytesIO()
    write_mo(buffer, catalog(lang))
    buffer.seek(0)
    return buffer


def plural_rule(lang: str) -> dict:
    """What a page script needs to choose plural forms: how many, and the gettext rule."""
    locale = Locale.parse(lang)
    from babel.messages.plurals import get_plural

    info = get_plural(locale)
    return {"count": info.num_plurals, "expr": info.plural_expr}


# -- the request's language ---------------------------------------------------------


def current() -> str:
    """The language of the request being served (English outside one)."""
    return _current.get()


def activate(lang: str):
    """Make `lang` the current task's language; returns the token to `reset`."""
    return _current.set(lang if lang in SUPPORTED else DEFAULT)


def reset(token) -> None:
    _current.reset(token)


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    return translations(_current.get()).pgettext(context, message)


_ = gettext


def N_(message: str) -> str:
    """Marks a string for extraction; it is translated where it is shown (`_(CONSTANT)`)."""
    return message


class Msg(str):
    """A message with parameters: English as a string, translatable later.

    `Msg("At most {n} characters.", n=5)` is the string "At most 5 characters.";
    `in_language(msg, "ru")` looks its template up in the Russian catalog and
    formats it with the same parameters. For texts built where the language
    is not known yet (chatapp.chat.frames), translated where they are sent.
    """

    __slots__ = ("n", "params", "plural", "template")

    template: str
    plural: str | None
    n: int
    params: dict

    def __new__(cls, template: str, **params) -> Msg:
        self = super().__new__(cls, template.format(**params) if params else template)
        self.template = template
        self.plural = None
        self.n = 1
        self.params = params
        return self


def nMsg(singular: str, plural: str, n: int, **params) -> Msg:
    """A Msg with a count: English by `n`, translated later by the language's plural rule."""
    msg = Msg(singular if n == 1 else plural, n=n, **params)
    msg.template, msg.plural, msg.n = singular, plural, n
    return msg


def in_language(text: str, lang: str) -> str:
    """`text` (a msgid, or a Msg) in `lang`; a text not in the catalog stays as it is."""
    catalog = translations(lang)
    if isinstance(text, Msg):
        if text.plural is not None:
            translated = catalog.ngettext(text.template, text.plural, text.n)
        else:
            translated = catalog.gettext(text.template)
        return translated.format(**text.params) if text.params else translated
    return catalog.gettext(text)


# -- the page scripts' catalog ------------------------------------------------------


@functools.cache
def script_catalog(lang: str) -> bytes:
    """GET /i18n/{lang}.json: the translations and the plural rule, for static/js/i18n.js.

    `messages` maps a msgid to its translation, or to the list of its plural
    forms (keyed by the singular msgid). `plural` maps each CLDR plural
    category (what `Intl.PluralRules(lang).select(n)` answers) to the index of
    the gettext form, found by running both rules over the same numbers, so a
    script needs no `eval` (the CSP allows none). English: no messages (the
    msgids are the text).
    """
    import json

    from babel.messages.plurals import get_plural

    messages: dict[str, str | list[str]] = {}
    if lang != DEFAULT and lang in SUPPORTED:
        for message in catalog(lang):
            if not message.id or not message.string or message.context:
                continue  # the scripts use no pgettext
            if isinstance(message.id, tuple):
                forms = list(message.string)
                if all(forms):
                    messages[message.id[0]] = forms
            else:
                messages[message.id] = message.string
    locale = Locale.parse(lang)
    gettext_plural = translations(lang).plural if lang != DEFAULT else (lambda n: int(n != 1))
    categories: dict[str, int] = {}
    for n in range(0, 1001):
        categories.setdefault(locale.plural_form(n), gettext_plural(n))
    body = {
        "lang": lang,
        "forms": get_plural(locale).num_plurals,
        "plural": categories,
        "messages": messages,
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
