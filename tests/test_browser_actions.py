"""Message actions in Chromium (issue 15, the page side): formatting and its XSS
corpus, edit, delete, reactions, replies (with the keyboard too), updates from
others shown live, typing, and a resume with `&rev=` after the network went away.

Each test is a browser person against `Client` bots outside the browser; the app
is a real process on the private Redis. No sleeps: every wait is on a page
condition or a frame. Screenshots: test-artifacts/screenshots/actions-*.png.
"""

from __future__ import annotations

import json
import time

import pytest

from .browser import DESKTOP, SCREENSHOTS, new_person, screenshot, tab_to
from .client import PASSWORD
from .test_browser import A11Y_JS, CONTRAST_JS, COUNT_IMAGES_JS, unexpected

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

LINK_REL = "noopener noreferrer nofollow"


def item(message_id: int) -> str:
    return f'#log .msg[data-id="{message_id}"]'


async def bubble_text(page, message_id: int) -> str:
    return await page.text_content(f"{item(message_id)} .bubble")


async def wait_bubble(page, message_id: int, text: str, timeout: float = 5_000) -> None:
    await page.wait_for_function(
        "([sel, t]) => document.querySelector(sel)?.textContent === t",
        arg=[f"{item(message_id)} .bubble", text],
        timeout=timeout,
    )


async def focused(page) -> dict:
    """What has focus: its tag, id, class, role, message id, text."""
    return await page.evaluate(
        """() => { const a = document.activeElement; return {
            tag: a.tagName, id: a.id, cls: a.className, role: a.getAttribute('role'),
            msg: a.closest('li.msg')?.dataset.id ?? null, text: a.textContent }; }"""
    )


async def focus_message(page, message_id: int) -> None:
    """Keyboard only: Tab to the log, then arrows up from the newest message."""
    await tab_to(page, "#log")
    await page.keyboard.press("End")
    for _ in range(100):
        if (await focused(page))["msg"] == str(message_id):
            return
        await page.keyboard.press("ArrowUp")
    raise AssertionError(f"the arrows never reached message {message_id}")


async def wait_focus(page, message_id: int) -> None:
    """Wait until the focus is on message `message_id` (or in it)."""
    await page.wait_for_function(
        "id => document.activeElement?.closest('li.msg')?.dataset.id === id", arg=str(message_id)
    )


async def menu_items(page) -> list[str]:
    await page.wait_for_selector("#message-menu[role=menu]")
    return await page.eval_on_selector_all(
        "#message-menu [role=menuitem]", "items => items.map(i => i.textContent)"
    )


async def chips(page, message_id: int) -> list[dict]:
    return await page.eval_on_selector_all(
        f"{item(message_id)} .reaction",
        """cs => cs.map(c => ({
            emoji: c.querySelector('.reaction-emoji').textContent,
            count: c.querySelector('.reaction-count').textContent,
            pressed: c.getAttribute('aria-pressed'), label: c.getAttribute('aria-label'),
            title: c.title }))""",
    )


async def wait_chips(page, message_id: int, shown: list[tuple[str, str, str]]) -> None:
    """Wait until the chips read [(emoji, count, aria-pressed), ...]."""
    await page.wait_for_function(
        """([sel, want]) => JSON.stringify([...document.querySelectorAll(sel)].map(c => [
            c.querySelector('.reaction-emoji').textContent,
            c.querySelector('.reaction-count').textContent,
            c.getAttribute('aria-pressed')])) === JSON.stringify(want)""",
        arg=[f"{item(message_id)} .reaction", [list(s) for s in shown]],
    )


# -- formatting -------------------------------------------------------------------------

FORMATTED = (
    "**bold @fo_ann** and `code @fo_ann` and ~~gone~~ and *soft*\n"
    "see [the docs](https://example.com/docs?a=1&b=2) or https://example.org/x."
)
FENCED = (
    "```python\nif a < b and c > d:\n    print('<b>not bold</b>')\n```\n"
    "> quoted _line_\n- one\n- two"
)


async def test_formatting_renders_elements_with_mentions_and_safe_links(app, browser, bots):
    ann = await new_person(browser, app.url, "fo_ann")
    room = await (await bots("fo_bot")).enter("fo_room")
    first = await room.say(FORMATTED)
    second = await room.say(FENCED)
    await ann.enter_room("fo_room")
    page = ann.page
    for view in ("server-rendered, then hydrated", "live"):
        if view == "live":
            first = await room.say(FORMATTED)
            second = await room.say(FENCED)
            await page.wait_for_selector(f"{item(second['id'])} pre")
        one, two = item(first["id"]), item(second["id"])
        assert await page.text_content(f"{one} strong") == "bold @fo_ann", view
        # The mention is marked in bold text, not in code.
        assert await page.text_content(f"{one} strong mark.mention-me") == "@fo_ann", view
        assert await page.text_content(f"{one} code") == "code @fo_ann", view
        assert await page.locator(f"{one} code mark").count() == 0, view
        assert await page.text_content(f"{one} s") == "gone", view
        assert await page.text_content(f"{one} em") == "soft", view
        links = await page.eval_on_selector_all(
            f"{one} a",
            "as => as.map(a => [a.textContent, a.getAttribute('href'), a.rel, a.target])",
        )
        assert links == [
            ["the docs", "https://example.com/docs?a=1&b=2", LINK_REL, "_blank"],
            ["https://example.org/x", "https://example.org/x", LINK_REL, "_blank"],
        ], view
        assert await page.text_content(f"{two} pre code") == (
            "if a < b and c > d:\n    print('<b>not bold</b>')"
        ), view
        assert await page.text_content(f"{two} .md-lang") == "python", view
        assert await page.text_content(f"{two} blockquote em") == "line", view
        items = await page.eval_on_selector_all(f"{two} ul li", "ls => ls.map(l => l.textContent)")
        assert items == ["one", "two"], view
        assert await page.locator(f"{two} b").count() == 0, view
    assert unexpected(ann.errors) == []


XSS_CORPUS = [
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(2))",
    "<script>alert(3)</script>",
    "<!-- c --> after a comment",
    "[x](data:text/html,<script>alert(4)</script>)",
    "<a href=javascript:alert(5)>x</a>",
    "[y](JaVaScRiPt:alert(6)) and [z](java\tscript:alert(7))",
    "**<img src=x onerror=alert(8)>** `<script>alert(9)</script>`",
    "```\n<img src=x onerror=alert(10)>\n```",
    "[<img src=x onerror=alert(11)>](https://example.com/)",
    'https://example.com/"><img src=x onerror=alert(12)>',
    '<svg onload=alert(13)> <iframe src="javascript:alert(14)"></iframe>',
]
# What each shows as text: the characters typed (formatting aside).
XSS_SHOWN = [
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(2))",
    "<script>alert(3)</script>",
    "<!-- c --> after a comment",
    "[x](data:text/html,<script>alert(4)</script>)",
    "<a href=javascript:alert(5)>x</a>",
    "[y](JaVaScRiPt:alert(6)) and [z](java\tscript:alert(7))",
    "<img src=x onerror=alert(8)> <script>alert(9)</script>",
    "<img src=x onerror=alert(10)>",
    "<img src=x onerror=alert(11)>",
    'https://example.com/"><img src=x onerror=alert(12)>',
    '<svg onload=alert(13)> <iframe src="javascript:alert(14)"></iframe>',
]


async def test_an_xss_corpus_renders_as_text_and_runs_nothing(app, browser, bots):
    bea = await new_person(browser, app.url, "xs_bea", register=False)
    await bea.context.add_init_script(COUNT_IMAGES_JS)
    await bea.register()
    await bea.enter_room("xs_room")
    room = await (await bots("xs_bot")).enter("xs_room")
    ids = [(await room.say(payload))["id"] for payload in XSS_CORPUS]
    page = bea.page
    await page.wait_for_selector(item(ids[-1]))
    for view in ("live", "reloaded"):
        if view == "reloaded":
            response = await page.reload()
            await bea.wait_state("connected")
            csp = response.headers["content-security-policy"]
            script_src = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
            assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
        shown = [await bubble_text(page, i) for i in ids]
        assert shown == XSS_SHOWN, view
        assert await page.evaluate("() => window.__images") == 0, view
        for tag in ("img", "script", "svg", "iframe", "b"):
            assert await page.locator(f"#log {tag}").count() == 0, (view, tag)
        hrefs = await page.eval_on_selector_all("#log a", "as => as.map(a => a.href)")
        assert hrefs == ["https://example.com/", "https://example.com/"], view
        # No element of the log has an event handler attribute, nor a style.
        attrs = await page.evaluate(
            """() => [...document.querySelectorAll('#log *')].flatMap(e => [...e.attributes]
                .map(a => a.name).filter(n => n.startsWith('on') || n === 'style'))"""
        )
        assert attrs == [], view
    assert bea.dialogs == []
    assert unexpected(bea.errors) == []


# -- edit --------------------------------------------------------------------------------


async def test_edit_from_the_menu_and_with_up_in_an_empty_input_keyboard_only(app, browser, bots):
    cal = await new_person(browser, app.url, "ed_cal")
    await cal.enter_room("ed_room")
    watcher = await (await bots("ed_bot")).enter("ed_room")
    page = cal.page
    await cal.send("frist draft")
    await cal.send("second thougth")
    first, second = (await watcher.messages(2))[-2:]

    # The menu: Tab to the log, up to the message, Enter opens its actions.
    await focus_message(page, first["id"])
    await page.keyboard.press("Enter")
    assert await menu_items(page) == ["Reply", "React", "Edit", "Delete"]
    button = f"{item(first['id'])} .msg-actions"
    assert await page.get_attribute(button, "aria-expanded") == "true"
    assert await page.get_attribute(button, "aria-haspopup") == "menu"
    assert (await focused(page))["role"] == "menuitem"
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowDown")
    assert (await focused(page))["text"] == "Edit"
    await page.keyboard.press("Enter")
    assert await page.locator("#message-menu").count() == 0
    assert (await focused(page))["id"] == "message-input"
    assert await page.input_value("#message-input") == "frist draft"
    assert await page.text_content("#composer-context-text") == "Editing message — Esc to cancel"
    assert await page.text_content("#send") == "Save"
    await page.keyboard.press("Control+A")
    await page.keyboard.type("first draft, **fixed**")
    await page.keyboard.press("Enter")
    update = await watcher.update(first["id"])
    assert update["message"]["text"] == "first draft, **fixed**"
    assert update["message"]["edited"] >= first["ts"]
    await page.wait_for_selector(f"{item(first['id'])} .edited-mark")
    assert await bubble_text(page, first["id"]) == "first draft, fixed"
    assert await page.text_content(f"{item(first['id'])} .bubble strong") == "fixed"
    title = await page.get_attribute(f"{item(first['id'])} .edited-mark", "title")
    assert title.startswith("Edited ")
    assert await page.is_hidden("#composer-context")
    assert await page.text_content("#send") == "Send"
    assert await page.input_value("#message-input") == ""

    # Up in the empty input edits the last own message; Escape gives the box back.
    await page.keyboard.press("ArrowUp")
    assert await page.input_value("#message-input") == "second thougth"
    assert await page.is_visible("#composer-context")
    await page.keyboard.press("Escape")
    assert await page.input_value("#message-input") == ""
    assert await page.is_hidden("#composer-context")
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("second thought")
    await page.keyboard.press("Enter")
    assert (await watcher.update(second["id"]))["message"]["text"] == "second thought"
    await wait_bubble(page, second["id"], "second thought")
    await page.wait_for_selector(f"{item(second['id'])} .edited-mark")
    # Up with text in the box moves the caret, it does not edit.
    await page.keyboard.type("a draft")
    await page.keyboard.press("ArrowUp")
    assert await page.is_hidden("#composer-context")
    assert await page.input_value("#message-input") == "a draft"

    # From the menu while a draft is in the box: the draft comes back after the edit.
    await focus_message(page, second["id"])
    await page.keyboard.press("Enter")
    await menu_items(page)
    await page.keyboard.press("e")  # type-ahead
    assert (await focused(page))["text"] == "Edit"
    await page.keyboard.press("Enter")
    await page.keyboard.press("End")
    await page.keyboard.type("!")
    await page.keyboard.press("Enter")
    assert (await watcher.update(second["id"]))["message"]["text"] == "second thought!"
    await page.wait_for_function(
        "() => document.getElementById('message-input').value === 'a draft'"
    )
    # Someone else's message has no Edit (and, for a person without moderation, no Delete).
    other = await watcher.say("not yours")
    await page.wait_for_selector(item(other["id"]))
    await focus_message(page, other["id"])
    await page.keyboard.press("Enter")
    assert await menu_items(page) == ["Reply", "React"]
    await page.keyboard.press("Escape")
    assert (await focused(page))["msg"] == str(other["id"])
    assert await page.locator("#message-menu").count() == 0
    assert unexpected(cal.errors) == []


# -- delete ------------------------------------------------------------------------------


async def test_delete_asks_in_a_dialog_and_leaves_a_tombstone_keyboard_only(app, browser, bots):
    dot = await new_person(browser, app.url, "de_dot")
    await dot.enter_room("de_room")
    watcher = await (await bots("de_bot")).enter("de_room")
    page = dot.page
    await dot.send("delete me")
    await dot.send("keep me")
    doomed, kept = await watcher.messages(2)

    await focus_message(page, doomed["id"])
    await page.keyboard.press("Enter")
    await menu_items(page)
    await page.keyboard.press("End")
    assert (await focused(page))["text"] == "Delete"
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#delete-dialog[open]")
    assert await page.evaluate("() => document.getElementById('delete-dialog').matches(':modal')")
    assert await page.get_attribute("#delete-dialog", "aria-labelledby") == "delete-title"
    assert await page.text_content("#delete-dialog .delete-preview") == "de_dot: delete me"
    assert (await focused(page))["id"] == "delete-cancel"  # the safe choice first
    # Escape cancels: nothing sent, focus back on the message.
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#delete-dialog", state="hidden")
    await wait_focus(page, doomed["id"])
    assert await bubble_text(page, doomed["id"]) == "delete me"

    await page.keyboard.press("Enter")
    await menu_items(page)
    await page.keyboard.press("End")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#delete-dialog[open]")
    await page.keyboard.press("Tab")
    assert (await focused(page))["id"] == "delete-confirm"
    await page.keyboard.press("Enter")
    update = await watcher.update(doomed["id"])  # the first update of it: the cancel sent none
    assert update["message"]["deleted"] is True and update["message"]["text"] == ""
    tombstone = item(doomed["id"])
    await page.wait_for_selector(f"{tombstone}.deleted")
    assert await bubble_text(page, doomed["id"]) == "message deleted"
    style = await page.eval_on_selector(
        f"{tombstone} .tombstone", "e => getComputedStyle(e).fontStyle"
    )
    assert style == "italic"
    assert await page.locator(f"{tombstone} .msg-actions").count() == 0
    await wait_focus(page, doomed["id"])
    # The ids stay whole, on the live page and after a reload.
    for view in ("live", "reloaded"):
        if view == "reloaded":
            await page.reload()
            await dot.wait_state("connected")
        log = await dot.messages()
        assert [m["id"] for m in log] == [doomed["id"], kept["id"]], view
        assert [m["text"] for m in log] == ["message deleted", "keep me"], view
        assert await page.locator(f"{tombstone}.deleted .msg-actions").count() == 0, view
    assert unexpected(dot.errors) == []


async def test_a_private_rooms_owner_deletes_a_members_message(app, browser, bots):
    own = await new_person(browser, app.url, "mo_own")
    page = own.page
    await page.goto("/chat/")
    await page.fill("#room-name", "mo_private")
    await page.check("input[name=private]")
    await page.press("#room-name", "Enter")
    await own.wait_state("connected")
    assert await page.get_attribute("#room", "data-can-moderate") == "1"
    member = await bots("mo_member")
    await page.fill("#member-name", "mo_member")
    await page.press("#member-name", "Enter")
    await page.wait_for_selector(".member-list li:has-text('mo_member')")
    await own.wait_state("connected")
    sock = await member.enter("mo_private")
    said = await sock.say("a member's message")
    await page.wait_for_selector(item(said["id"]))
    # The mouse this time: the button shows on hover.
    await page.hover(item(said["id"]))
    await page.click(f"{item(said['id'])} .msg-actions")
    assert await menu_items(page) == ["Reply", "React", "Delete"]
    await page.click("#message-menu [role=menuitem]:has-text('Delete')")
    await page.click("#delete-confirm")
    assert (await sock.update(said["id"]))["message"]["deleted"] is True
    await page.wait_for_selector(f"{item(said['id'])}.deleted")
    assert unexpected(own.errors) == []


# -- reactions ----------------------------------------------------------------------------


async def test_reactions_from_the_picker_and_by_toggling_chips(app, browser, bots):
    eli = await new_person(browser, app.url, "re_eli")
    await eli.enter_room("re_room")
    bot = await bots("re_bot")
    sock = await bot.enter("re_room")
    said = await sock.say("react to me")
    page = eli.page
    await page.wait_for_selector(item(said["id"]))

    # With the mouse: the menu's React opens the picker.
    await page.hover(item(said["id"]))
    await page.click(f"{item(said['id'])} .msg-actions")
    await page.click("#message-menu [role=menuitem]:has-text('React')")
    await page.wait_for_selector("#reaction-picker[role=dialog]")
    offered = await page.eval_on_selector_all(
        "#reaction-picker .picker-emoji", "bs => bs.map(b => b.textContent)"
    )
    assert offered == ["👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "✅"]
    await page.click("#reaction-picker .picker-emoji:has-text('🎉')")
    update = await sock.update(said["id"])
    assert update["message"]["reactions"] == {"🎉": ["re_eli"]}
    await wait_chips(page, said["id"], [("🎉", "1", "true")])
    # The bot reacts too: the count and who reacted, live.
    await sock.send_frame(type="react", id=said["id"], emoji="🎉")
    await sock.send_frame(type="react", id=said["id"], emoji="👀")
    await wait_chips(page, said["id"], [("🎉", "2", "true"), ("👀", "1", "false")])
    shown = await chips(page, said["id"])
    assert shown[0]["label"] == shown[0]["title"] == "🎉 re_eli, re_bot"
    assert shown[1]["label"] == "👀 re_bot"
    # Clicking my chip takes my reaction back; clicking the other adds mine.
    await page.click(f"{item(said['id'])} .reaction:has-text('🎉')")
    await wait_chips(page, said["id"], [("🎉", "1", "false"), ("👀", "1", "false")])
    await page.click(f"{item(said['id'])} .reaction:has-text('👀')")
    await wait_chips(page, said["id"], [("🎉", "1", "false"), ("👀", "2", "true")])

    # The keyboard: the message, Tab to a chip, Enter toggles; the focus stays on it.
    await focus_message(page, said["id"])
    await page.keyboard.press("Tab")
    assert (await focused(page))["cls"] == "msg-actions"
    await page.keyboard.press("Tab")
    assert "reaction" in (await focused(page))["cls"]
    await page.keyboard.press("Enter")
    await wait_chips(page, said["id"], [("🎉", "2", "true"), ("👀", "2", "true")])
    assert (await focused(page))["text"] == "🎉2"
    # The picker with the keyboard: any one emoji in its field; not two words.
    await page.keyboard.press("Escape")  # back to the message
    assert (await focused(page))["msg"] == str(said["id"])
    await page.keyboard.press("Enter")
    await menu_items(page)
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#reaction-picker")
    assert (await focused(page))["text"] == "👍"
    await tab_to(page, "#reaction-other")
    await page.keyboard.type("not an emoji")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#reaction-problem:has-text('Type one emoji.')")
    await page.fill("#reaction-other", "🦄")
    await page.keyboard.press("Enter")
    await wait_chips(
        page, said["id"], [("🎉", "2", "true"), ("👀", "2", "true"), ("🦄", "1", "true")]
    )
    assert await page.locator("#reaction-picker").count() == 0
    # Escape closes the picker and gives the focus back.
    await focus_message(page, said["id"])
    await page.keyboard.press("Enter")
    await menu_items(page)
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#reaction-picker")
    await page.keyboard.press("Escape")
    assert await page.locator("#reaction-picker").count() == 0
    assert (await focused(page))["msg"] == str(said["id"])
    # The order stays put as counts change.
    await sock.send_frame(type="react", id=said["id"], emoji="🎉")
    await wait_chips(
        page, said["id"], [("🎉", "1", "true"), ("👀", "2", "true"), ("🦄", "1", "true")]
    )

    # The server's refusal (a 21st different reaction) shows near the composer,
    # and what was being typed stays.
    full = await sock.say("full of reactions")
    for emoji in "😀😁😂🤣😃😄😅😆😉😊😋😎😍😘🥰😗😙😚🙂🤗":
        await sock.send_frame(type="react", id=full["id"], emoji=emoji)
    await page.wait_for_function(
        "sel => document.querySelectorAll(sel).length === 20", arg=f"{item(full['id'])} .reaction"
    )
    await page.fill("#message-input", "a draft")
    await page.hover(item(full["id"]))
    await page.click(f"{item(full['id'])} .msg-actions")
    await page.click("#message-menu [role=menuitem]:has-text('React')")
    await page.click("#reaction-picker .picker-emoji:has-text('👍')")
    await page.wait_for_selector("#composer-help.is-error:has-text('at most 20 different')")
    assert await page.input_value("#message-input") == "a draft"
    assert unexpected(eli.errors) == []


# -- replies -----------------------------------------------------------------------------


async def test_reply_with_the_keyboard_and_the_quote_leads_to_the_original(app, browser, bots):
    fin = await new_person(browser, app.url, "rp_fin")
    bot = await bots("rp_bot")
    sock = await bot.enter("rp_room")
    original = await sock.say(
        "the original question, with a long first line " + "x" * 80 + "\nline two"
    )
    for n in range(30):
        await sock.say(f"filler {n}")
    await fin.enter_room("rp_room")
    page = fin.page

    # Keyboard: the log, Home to the first message, Enter, Reply.
    await tab_to(page, "#log")
    await page.keyboard.press("Home")
    assert (await focused(page))["msg"] == str(original["id"])
    await page.keyboard.press("Enter")
    assert (await menu_items(page))[0] == "Reply"
    await page.keyboard.press("Enter")
    assert (await focused(page))["id"] == "message-input"
    context = await page.text_content("#composer-context-text")
    assert context.startswith("Replying to rp_bot: the original question")
    assert context.endswith("…") and len(context) < 140
    assert await page.get_attribute("#composer-cancel", "aria-label") == "Cancel reply"
    # Escape cancels; Reply again, and this time send.
    await page.keyboard.press("Escape")
    assert await page.is_hidden("#composer-context")
    await focus_message(page, original["id"])
    await page.keyboard.press("Enter")
    await menu_items(page)
    await page.keyboard.press("Enter")
    await page.keyboard.type("my answer")
    await page.keyboard.press("Enter")
    answer = await sock.until(lambda f: f["type"] == "message" and f["username"] == "rp_fin")
    assert answer["reply_to"] == original["id"]
    await page.wait_for_selector("#composer-context", state="hidden")  # on the echo
    quote = f"{item(answer['id'])} .reply-quote"
    await page.wait_for_selector(quote)
    assert await page.text_content(f"{quote} .reply-author") == "rp_bot"
    text = await page.text_content(f"{quote} .reply-text")
    assert text.startswith("the original question") and text.endswith("…")
    assert len(text) == 101

    # The original is out of sight; clicking the quote brings it, lit and focused.
    in_view = """id => {
        const log = document.getElementById('log').getBoundingClientRect();
        const box = document.querySelector(`#log .msg[data-id="${id}"]`).getBoundingClientRect();
        return box.top >= log.top && box.bottom <= log.bottom;
    }"""
    assert not await page.evaluate(in_view, original["id"])
    await page.click(quote)
    await page.wait_for_function(in_view, arg=original["id"])
    assert await page.evaluate(
        "sel => document.querySelector(sel).classList.contains('is-highlighted')",
        item(original["id"]),
    )
    assert (await focused(page))["msg"] == str(original["id"])
    # Enter on the quote does the same (it is a button).
    await page.eval_on_selector("#log", "l => { l.scrollTop = l.scrollHeight; }")
    await page.focus(quote)
    await page.keyboard.press("Enter")
    await page.wait_for_function(in_view, arg=original["id"])

    # A bot's reply to a message the page does not hold, and to one deleted later.
    late = await sock.say("a reply to the first of all", reply_to=1)
    gone = await sock.say("soon gone")
    to_gone = await sock.say("a reply to it", reply_to=gone["id"])
    await page.wait_for_selector(item(to_gone["id"]))
    if original["id"] > 1:
        assert await page.text_content(f"{item(late['id'])} .reply-quote") == (
            "↪ Reply to an earlier message"
        )
    assert await page.text_content(f"{item(to_gone['id'])} .reply-text") == "soon gone"
    await sock.send_frame(type="delete", id=gone["id"])
    await page.wait_for_selector(f"{item(to_gone['id'])} .reply-text.is-deleted")
    assert await page.text_content(f"{item(to_gone['id'])} .reply-text") == "message deleted"
    assert unexpected(fin.errors) == []


# -- others' changes, live ----------------------------------------------------------------


async def test_a_bots_edit_delete_and_reaction_show_live_and_keep_the_readers_place(
    app, browser, bots
):
    gil = await new_person(browser, app.url, "lv_gil")
    bot = await bots("lv_bot")
    sock = await bot.enter("lv_room")
    said = [await sock.say(f"message {n}") for n in range(40)]
    reply = await sock.say("a reply to message 1", reply_to=said[1]["id"])
    await gil.enter_room("lv_room")
    page = gil.page
    await page.evaluate("() => { window.__same = true; }")  # gone if the page reloads

    # Reading in the middle: the message at the top of the view stays put while
    # messages above it change size.
    await page.eval_on_selector(item(said[20]["id"]), "li => li.scrollIntoView({block: 'start'})")
    where = f"""() => document.querySelector('{item(said[20]["id"])}').getBoundingClientRect().top
        - document.getElementById('log').getBoundingClientRect().top"""
    before = await page.evaluate(where)
    await sock.send_frame(
        type="edit", id=said[1]["id"], text="message 1, now\nmuch\nlonger\nthan\nbefore"
    )
    await sock.send_frame(type="delete", id=said[2]["id"])
    await sock.send_frame(type="react", id=said[3]["id"], emoji="👍")
    await wait_chips(page, said[3]["id"], [("👍", "1", "false")])
    await page.wait_for_selector(f"{item(said[2]['id'])}.deleted")
    assert (await bubble_text(page, said[1]["id"])).startswith("message 1, now")
    assert await page.is_visible(f"{item(said[1]['id'])} .edited-mark")
    assert abs(await page.evaluate(where) - before) < 2
    # The reply's quote shows the new first line.
    assert await page.text_content(f"{item(reply['id'])} .reply-text") == "message 1, now"
    assert await page.evaluate("() => window.__same")
    assert unexpected(gil.errors) == []


async def test_an_update_is_applied_once_and_an_older_one_is_ignored(app, browser):
    """Updates may repeat (a resume overlapping the live feed): only a newer rev counts."""
    hal = await new_person(browser, app.url, "up_hal")
    base = {"type": "message", "room": "up_room", "username": "zed", "ts": time.time()}
    messages = [{**base, "id": 1, "text": "one", "client_id": None}]

    def state(text, rev, **more):
        return {**messages[0], "text": text, "rev": rev, "edited": time.time(), **more}

    def route(ws):
        ws.send(json.dumps({"type": "history", "messages": messages, "rev": 4}))
        for rev, text in ((5, "five"), (6, "six"), (6, "six again"), (5, "five"), (3, "three")):
            ws.send(json.dumps({"type": "update", "rev": rev, "message": state(text, rev)}))
        ws.send(json.dumps({"type": "message", **base, "id": 2, "text": "marker"}))

    await hal.page.route_web_socket("**/ws/chat/**", route)
    await hal.page.goto("/chat/up_room/")
    await hal.wait_for_text("marker")
    assert await bubble_text(hal.page, 1) == "six"


async def test_the_present_state_reads_without_javascript(app, browser, bots):
    """The server-rendered page: the tombstone, "(edited)", the reply's quote and the
    reaction counts as plain text, the text as typed (no markup rendered)."""
    sock = await (await bots("nj_bot")).enter("nj_room")
    asked = await sock.say("**Where** is the <b>key</b>?")
    gone = await sock.say("a secret")
    answer = await sock.say("Under the mat.", reply_to=asked["id"])
    await sock.send_frame(type="edit", id=answer["id"], text="Under the doormat.")
    await sock.update(answer["id"])
    await sock.send_frame(type="delete", id=gone["id"])
    await sock.update(gone["id"])
    await sock.send_frame(type="react", id=asked["id"], emoji="👀")
    await sock.update(asked["id"])
    reader = await new_person(browser, app.url, "nj_reader")
    context = await browser.new_context(base_url=app.url, java_script_enabled=False)
    await context.add_cookies(await reader.context.cookies())
    page = await context.new_page()
    await page.goto("/chat/nj_room/")
    assert await bubble_text(page, asked["id"]) == "**Where** is the <b>key</b>?"
    assert await page.locator("#log b, #log strong").count() == 0
    assert await page.text_content(f"{item(asked['id'])} .msg-foot") == "👀 1 "
    assert await bubble_text(page, gone["id"]) == "message deleted"
    assert "a secret" not in await page.content()
    assert (await page.text_content(f"{item(answer['id'])} .reply-quote")) == (
        "↪ nj_bot: **Where** is the <b>key</b>?"
    )
    assert await bubble_text(page, answer["id"]) == "Under the doormat."
    assert (await page.text_content(f"{item(answer['id'])} .msg-foot")).strip() == "(edited)"
    await context.close()


# -- typing -------------------------------------------------------------------------------


async def test_typing_shows_who_and_expires_and_the_page_sends_its_own_throttled(
    app, browser, bots
):
    ivy = await new_person(browser, app.url, "ty_ivy")
    sent = []
    ivy.page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda payload: sent.append(json.loads(payload))),
    )
    await ivy.enter_room("ty_room")
    page = ivy.page
    typing = "() => document.getElementById('typing').textContent"
    assert await page.get_attribute("#typing", "aria-live") == "polite"
    ann = await (await bots("ty_ann")).enter("ty_room")
    bob = await (await bots("ty_bob")).enter("ty_room")
    cyd = await (await bots("ty_cyd")).enter("ty_room")

    await ann.send_frame(type="typing")
    await page.wait_for_function(f"() => ({typing})() === 'ty_ann is typing…'")
    shown_at = time.monotonic()
    await page.wait_for_function(f"() => ({typing})() === ''", timeout=8_000)
    assert time.monotonic() - shown_at > 4  # it lasts 5 s without news

    await ann.send_frame(type="typing")
    await bob.send_frame(type="typing")
    await page.wait_for_function(f"() => ({typing})() === 'ty_ann and ty_bob are typing…'")
    await cyd.send_frame(type="typing")
    await page.wait_for_function(f"() => ({typing})() === 'several people are typing…'")
    # A message from one of them clears theirs at once.
    await cyd.say("done typing")
    await page.wait_for_function(f"() => ({typing})() === 'ty_ann and ty_bob are typing…'")
    await ann.say("me too")
    await page.wait_for_function(f"() => ({typing})() === 'ty_bob is typing…'")

    # The page's own typing: one frame for a burst of keys (at most one per 2 s),
    # none for an empty box, and the others see it.
    await page.focus("#message-input")
    await page.keyboard.type("hello there")  # well within 2 s
    heard = await ann.until(lambda f: f["type"] == "typing")
    assert heard == {"type": "typing", "username": "ty_ivy"}
    await page.keyboard.press("Enter")
    await ivy.wait_for_text("hello there")
    assert [f for f in sent if f.get("type") == "typing"] == [{"type": "typing"}]
    assert unexpected(ivy.errors) == []


# -- resume -------------------------------------------------------------------------------


async def test_changes_made_while_offline_arrive_on_resume_with_rev(app, browser, bots):
    jay = await new_person(browser, app.url, "rs_jay")
    bot = await bots("rs_bot")
    sock = await bot.enter("rs_room")
    first, second, third = [await sock.say(f"held {n}") for n in range(3)]
    routes, histories = [], []

    def route(ws):
        routes.append(ws)
        server = ws.connect_to_server()

        def from_server(message):
            frame = json.loads(message)
            if frame.get("type") == "history":
                histories.append(frame)
            ws.send(message)

        server.on_message(from_server)

    await jay.page.route_web_socket("**/ws/chat/**", route)
    await jay.enter_room("rs_room")
    page = jay.page
    rev = histories[0]["rev"]
    assert await page.get_attribute("#room", "data-rev") == str(rev)

    # The network goes; the socket with it.
    await jay.context.set_offline(True)
    await jay.wait_state("offline")
    await routes[0].close(code=1006)
    await sock.send_frame(type="edit", id=first["id"], text="held 0, edited")
    await sock.update(first["id"])
    await sock.send_frame(type="delete", id=second["id"])
    await sock.update(second["id"])
    await sock.send_frame(type="react", id=third["id"], emoji="✅")
    await sock.update(third["id"])
    new = await sock.say("said while away")
    assert len(routes) == 1 and await page.get_attribute("#status", "data-state") == "offline"

    await jay.context.set_offline(False)
    await jay.wait_state("connected")
    await jay.wait_for_text("said while away")
    assert f"after={third['id']}&rev={rev}" in routes[1].url
    resumed = histories[1]
    assert [m["id"] for m in resumed["messages"]] == [new["id"]]
    assert sorted(m["id"] for m in resumed["updates"]) == [first["id"], second["id"], third["id"]]
    assert resumed["rev"] == rev + 3
    await wait_bubble(page, first["id"], "held 0, edited")
    await page.wait_for_selector(f"{item(second['id'])}.deleted")
    await wait_chips(page, third["id"], [("✅", "1", "false")])

    # The page keeps the new rev: the next resume asks from there.
    await jay.context.set_offline(True)
    await jay.wait_state("offline")
    await routes[1].close(code=1006)
    await jay.context.set_offline(False)
    await jay.wait_state("connected")
    assert f"after={new['id']}&rev={rev + 3}" in routes[2].url
    assert histories[2]["updates"] == [] and histories[2]["messages"] == []
    assert unexpected(jay.errors) == []


# -- screenshots ---------------------------------------------------------------------------

SCREENSHOT_CODE = """Here is the fix:
```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```
It needs **Python 3.11** or newer, see https://docs.python.org/3/."""


async def test_screenshots_of_replies_edits_reactions_and_code_light_and_dark(app, browser, bots):
    kim = await new_person(browser, app.url, "sh_kim")
    lea = await (await bots("sh_lea")).enter("sh_room")
    max_ = await (await bots("sh_max")).enter("sh_room")
    question = await lea.say("Does anyone have a *short* example of a greeting function?")
    await kim.enter_room("sh_room")
    page = kim.page
    await max_.say(SCREENSHOT_CODE, reply_to=question["id"])
    typo = await lea.say("Thnaks, that works for me")
    await lea.send_frame(type="edit", id=typo["id"], text="Thanks, that works for me")
    for sock, emoji in ((lea, "🎉"), (max_, "🎉"), (max_, "👍")):
        await sock.send_frame(type="react", id=question["id"] + 1, emoji=emoji)
    await kim.send("Nice. Two things:\n- `name` could be empty\n- ~~tabs~~ spaces, please")
    await page.click(f"{item(question['id'] + 1)} .reaction:has-text('🎉')")
    await max_.say("> `name` could be empty\nGood point, I will add a check.")
    await lea.send_frame(type="typing")
    await wait_chips(page, question["id"] + 1, [("🎉", "3", "true"), ("👍", "1", "false")])
    await page.wait_for_selector(f"{item(typo['id'])} .edited-mark")
    await page.wait_for_function("() => document.getElementById('typing').textContent !== ''")
    await page.focus("#message-input")
    await page.mouse.move(0, 0)
    await screenshot(page, "actions-light-1440")
    assert await page.evaluate(CONTRAST_JS) == []
    assert await page.evaluate(A11Y_JS) == {"unlabelled": [], "overflow": 0, "lang": "en"}
    # The menu and the picker, open.
    await page.hover(item(question["id"] + 1))
    await page.click(f"{item(question['id'] + 1)} .msg-actions")
    await menu_items(page)
    await page.screenshot(path=str(SCREENSHOTS / "actions-menu-light-1440.png"))
    assert await page.evaluate(CONTRAST_JS) == []
    await page.keyboard.press("Escape")

    dark = await browser.new_context(base_url=app.url, viewport=DESKTOP, color_scheme="dark")
    night = await dark.new_page()
    await night.goto("/login/")
    await night.fill("#username", "sh_kim")
    await night.fill("#password", PASSWORD)
    await night.press("#password", "Enter")
    await night.wait_for_url("**/chat/")
    await night.goto("/chat/sh_room/")
    await night.wait_for_selector("#status[data-state=connected]")
    await max_.send_frame(type="typing")  # (lea's next one would be within the 2 s throttle)
    await night.wait_for_function("() => document.getElementById('typing').textContent !== ''")
    await night.focus("#message-input")
    await screenshot(night, "actions-dark-1440")
    assert await night.evaluate(CONTRAST_JS) == []
    await night.hover(item(question["id"] + 1))
    await night.click(f"{item(question['id'] + 1)} .msg-actions")
    await night.click("#message-menu [role=menuitem]:has-text('React')")
    await night.wait_for_selector("#reaction-picker")
    await night.screenshot(path=str(SCREENSHOTS / "actions-picker-dark-1440.png"))
    assert await night.evaluate(CONTRAST_JS) == []
    await night.keyboard.press("Escape")
    await night.hover(item(typo["id"]))
    await night.keyboard.press("Escape")
    await dark.close()
    for name in ("light-1440", "menu-light-1440", "dark-1440", "picker-dark-1440"):
        assert (SCREENSHOTS / f"actions-{name}.png").stat().st_size > 5000
