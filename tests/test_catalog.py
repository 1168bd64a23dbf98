"""The catalog check (issue 18): every string shown to people is translated.

Extracts the strings exactly as `pybabel extract -F babel.cfg` does (Python,
templates, page scripts; the same keywords as README "Languages"), then
compares with each language's `.po`: a string missing from the catalog, with
an empty or fuzzy translation, a plural form left empty, or placeholders that
differ from the English ones ({name}, %(name)s) fails the test, naming it.
The last test shows the check failing on a tiny scratch catalog.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg

from chatapp import i18n

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None, "Msg": None, "nMsg": (1, 2)}
PLACEHOLDER = re.compile(r"\{\w+\}|%\(\w+\)[sd]")


def extracted() -> dict[tuple[str | None, str | tuple[str, ...]], list[str]]:
    """Every msgid in the code, with where it is (file:line), as babel.cfg says."""
    with open(ROOT / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: dict[tuple[str | None, str | tuple[str, ...]], list[str]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        found.setdefault((context, message), []).append(f"{filename}:{lineno}")
    return found


def problems(messages: dict, catalog: Catalog) -> list[str]:
    """Why `catalog` does not translate `messages` ({(context, msgid): places})
    completely (empty: it does)."""
    wrong = []
    for (context, msgid), where in sorted(messages.items(), key=lambda item: str(item[0])):
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        entry = catalog.get(key, context=context)
        place = where[0]
        if entry is None:
            wrong.append(f"{place}: not in the catalog: {msgid!r}")
            continue
        if entry.fuzzy:
            wrong.append(f"{place}: fuzzy: {msgid!r}")
        forms = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if isinstance(msgid, tuple) != isinstance(entry.id, tuple):
            wrong.append(f"{place}: singular/plural mismatch: {msgid!r}")
            continue
        if isinstance(msgid, tuple) and len(forms) != catalog.num_plurals:
            wrong.append(f"{place}: {len(forms)} plural forms, not {catalog.num_plurals}")
        if not all(forms):
            wrong.append(f"{place}: not translated into {catalog.locale}: {msgid!r}")
            continue
        expected = set(PLACEHOLDER.findall(key))
        for form in forms:
            if set(PLACEHOLDER.findall(form)) != expected:
                wrong.append(f"{place}: placeholders differ in {form!r} for {msgid!r}")
    return wrong


@pytest.fixture(scope="module")
def messages():
    found = extracted()
    assert len(found) > 300, "the extraction found too little: is babel.cfg right?"
    return found


@pytest.mark.parametrize("lang", [lang for lang in i18n.SUPPORTED if lang != i18n.DEFAULT])
def test_every_string_shown_to_people_is_translated(messages, lang):
    assert problems(messages, i18n.catalog(lang)) == []


def test_the_catalog_holds_no_stale_strings(messages):
    """Strings no code uses any more are removed (pybabel update marks them obsolete)."""
    used = set(messages)
    stale = [
        (m.context, m.id) for m in i18n.catalog("ru") if m.id and (m.context, m.id) not in used
    ]
    assert stale == []


def test_the_extraction_sees_python_templates_and_scripts(messages):
    places = {where.split(":")[0].split("/")[0] for wheres in messages.values() for where in wheres}
    assert {"chatapp", "templates", "static"} <= places


def test_the_check_fails_on_an_untranslated_string():
    """A scratch catalog: one string translated, one added untranslated, one plural half
    done, one with a placeholder lost. The check names each."""
    scratch = Catalog(locale="ru")
    scratch.add("Send", "Отправить")
    scratch.add("A brand new button", "")
    scratch.add(("{n} cat", "{n} cats"), ("{n} кот", "{n} кота", ""))
    scratch.add("Hello {name}", "Привет")
    messages = {
        (None, "Send"): ["static/js/room.js:1"],
        (None, "A brand new button"): ["templates/room.html:2"],
        (None, ("{n} cat", "{n} cats")): ["chatapp/web/pages.py:3"],
        (None, "Hello {name}"): ["chatapp/web/pages.py:4"],
        (None, "Not in the catalog at all"): ["static/js/room.js:5"],
        ("placeholder", "Send"): ["templates/room.html:6"],
    }
    found = problems(messages, scratch)
    assert sorted(found) == [
        "chatapp/web/pages.py:3: not translated into ru: ('{n} cat', '{n} cats')",
        "chatapp/web/pages.py:4: placeholders differ in 'Привет' for 'Hello {name}'",
        "static/js/room.js:5: not in the catalog: 'Not in the catalog at all'",
        "templates/room.html:2: not translated into ru: 'A brand new button'",
        "templates/room.html:6: not in the catalog: 'Send'",
    ]
    assert problems({(None, "Send"): ["x:1"]}, scratch) == []
