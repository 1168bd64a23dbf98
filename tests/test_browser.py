"""The pages in a real Chromium (Playwright, headless): chat, resume, keyboard, layout.

One Chromium serves the whole run (each test opens its own contexts, closed
after it); the app runs as a real `python -m chatapp` process against the
private redis-server. Screenshots of the room list and the
room at 1440 px and 375 px go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from .browser import (
    APP_ENV,
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    new_person,
    screenshot,
    tab_to,
)
from .client import PASSWORD
from .support import AppProcess, free_port, until

# The tests run on the session's event loop, the one the shared Chromium lives on.
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

POLL_MS = 4000  # static/js/rooms.js: how often the room list asks /api/rooms
MINE_GREEN = "rgb(216, 245, 200)"
THEIRS_BLUE = "rgb(219, 234, 254)"


# Counts every <img> element ever added to the document, the parser's included.
COUNT_IMAGES_JS = """
window.__images = 0;
new MutationObserver(records => {
  for (const r of records) for (const n of r.addedNodes) {
    if (n.nodeType !== 1) continue;
    window.__images += (n.tagName === 'IMG') + n.querySelectorAll('img').length;
  }
}).observe(document, { childList: true, subtree: true });
"""


def unexpected(errors: list[str]) -> list[str]:
    """Console errors other than the refused connections of a server restart."""
    expected = ("ERR_CONNECTION_REFUSED", "ERR_INTERNET_DISCONNECTED", "Failed to load resource")
    return [e for e in errors if not any(part in e for part in expected)]


async def bubble_side(page, message_id: int) -> str:
    """Which side of the log a message's bubble sits on: "left" or "right"."""
    return await page.evaluate(
        """id => {
            const log = document.getElementById('log').getBoundingClientRect();
            const b = document.querySelector(`.msg[data-id="${id}"] .bubble`)
                .getBoundingClientRect();
            return (b.left - log.left) < (log.right - b.right) ? 'left' : 'right';
        }""",
        message_id,
    )


async def bubble_colour(page, message_id: int) -> str:
    return await page.eval_on_selector(
        f'.msg[data-id="{message_id}"] .bubble', "b => getComputedStyle(b).backgroundColor"
    )


async def test_two_people_exchange_messages_live_with_the_right_bubble_sides(app, browser):
    alice = await new_person(browser, app.url, "alice")
    bob = await new_person(browser, app.url, "bob")
    await alice.enter_room("lounge")
    # Bob joins from the room list, where the room shows up with Alice in it.
    await bob.page.goto("/chat/")
    await bob.page.click("#room-list a:has-text('lounge')")
    await bob.wait_state("connected")

    await alice.send("Hi Bob")
    await bob.wait_for_text("Hi Bob", timeout=2_000)
    # Shift+Enter makes a new line; Enter sends.
    await bob.page.type("#message-input", "line one")
    await bob.page.keyboard.press("Shift+Enter")
    await bob.page.keyboard.type("line two")
    await bob.page.keyboard.press("Enter")
    await alice.wait_for_text("line one\nline two", timeout=2_000)

    for person, mine, theirs in (
        (alice, "Hi Bob", "line one\nline two"),
        (bob, *reversed(("Hi Bob", "line one\nline two"))),
    ):
        log = {m["text"]: m for m in await person.messages()}
        assert log[mine]["mine"] and not log[theirs]["mine"]
        assert await bubble_side(person.page, log[mine]["id"]) == "right"
        assert await bubble_side(person.page, log[theirs]["id"]) == "left"
        assert await bubble_colour(person.page, log[mine]["id"]) == MINE_GREEN
        assert await bubble_colour(person.page, log[theirs]["id"]) == THEIRS_BLUE
        # Author and local time on each message.
        meta = await person.page.eval_on_selector(
            f'.msg[data-id="{log[theirs]["id"]}"] .meta', "m => m.textContent"
        )
        assert meta.startswith("bob" if person is alice else "alice")
        assert await person.page.is_visible(f'.msg[data-id="{log[theirs]["id"]}"] time')
        assert person.errors == []


async def test_markup_in_a_message_is_shown_as_text_and_runs_nothing(app, browser):
    payload = "<img src=x onerror=alert(1)>"
    carol = await new_person(browser, app.url, "carol")
    dave = await new_person(browser, app.url, "dave")
    for person in (carol, dave):
        await person.context.add_init_script(COUNT_IMAGES_JS)
    await carol.enter_room("xss")
    await dave.enter_room("xss")
    await carol.send(payload)
    await dave.wait_for_text(payload)
    await dave.page.reload()  # the server-rendered history, hydrated by the script
    await dave.wait_state("connected")
    await dave.wait_for_text(payload)
    for person in (carol, dave):
        # No <img> was ever in the document, so there was nothing an onerror could run on.
        assert await person.page.evaluate("() => window.__images") == 0
        assert await person.page.locator("img").count() == 0
        assert person.dialogs == []
        assert [m["text"] for m in await person.messages()] == [payload]


async def test_late_joiner_sees_history_and_presence_shows_all_three(app, browser):
    erin = await new_person(browser, app.url, "erin")
    frank = await new_person(browser, app.url, "frank")
    await erin.enter_room("book_club")
    await frank.enter_room("book_club")
    await erin.send("first")
    await frank.send("second")
    gina = await new_person(browser, app.url, "gina")
    await gina.enter_room("book_club")
    assert [m["text"] for m in await gina.messages()] == ["first", "second"]
    everyone = ["erin", "frank", "gina"]
    for person in (erin, frank, gina):
        await person.page.wait_for_function(
            "n => document.querySelectorAll('#presence li').length === n", arg=3
        )
        assert sorted(await person.presence()) == everyone
        assert await person.page.text_content("#presence-count") == "3"
    # Leaving is live too.
    await gina.page.goto("/chat/")
    await erin.page.wait_for_function(
        "() => document.querySelectorAll('#presence li').length === 2"
    )
    assert sorted(await erin.presence()) == ["erin", "frank"]


async def test_server_restart_shows_reconnecting_then_resumes_without_duplicates(
    redis_server, browser, bots
):
    port = free_port()
    server = AppProcess(redis_server.url, port=port, **APP_ENV).start()
    try:
        ann = await new_person(browser, server.url, "r_ann")
        ben = await new_person(browser, server.url, "r_ben")
        bot = await bots("r_bot", server.url)
        await ann.enter_room("resume")
        await ben.enter_room("resume")
        await ann.send("before 1")
        await ben.send("before 2")
        await ann.wait_for_text("before 2")

        server.stop()
        await ann.wait_state("reconnecting")
        await ben.wait_state("reconnecting")
        assert await ann.page.is_disabled("#send")
        # Ben's network goes away while the server is down, so he certainly
        # comes back after what is sent meanwhile.
        await ben.context.set_offline(True)
        await ben.wait_state("offline")

        server = AppProcess(redis_server.url, port=port, **APP_ENV).start()
        await ann.wait_state("connected")
        said = await bot.enter("resume")
        await said.say("meanwhile 1")
        await ann.send("meanwhile 2")
        await said.say("meanwhile 3")
        await ann.wait_for_text("meanwhile 3")
        await ben.context.set_offline(False)
        await ben.wait_state("connected")
        await ben.wait_for_text("meanwhile 3")
        await ben.send("after")
        await ann.wait_for_text("after")
        # A marker: delivery is ordered, so a duplicate of anything before it comes first.
        await said.say("marker")
        await ann.wait_for_text("marker")
        await ben.wait_for_text("marker")

        expected = [
            *("before 1", "before 2", "meanwhile 1", "meanwhile 2", "meanwhile 3"),
            *("after", "marker"),
        ]
        for person in (ann, ben):
            log = await person.messages()
            assert [m["text"] for m in log] == expected
            ids = [m["id"] for m in log]
            assert ids == list(range(ids[0], ids[0] + len(expected)))
            assert unexpected(person.errors) == []
    finally:
        server.stop()


async def test_keyboard_only_register_log_in_join_and_send(app, browser):
    context = await browser.new_context(base_url=app.url, viewport=DESKTOP)
    page = await context.new_page()
    keys = page.keyboard
    await page.goto("/register/")
    await tab_to(page, "#username")
    await keys.type("kim")
    await tab_to(page, "#password")
    await keys.type(PASSWORD)
    await tab_to(page, "#password2")
    await keys.type(PASSWORD)
    await keys.press("Enter")
    await page.wait_for_url("**/chat/")

    await tab_to(page, ".site-nav button[type=submit]")
    await keys.press("Enter")
    await page.wait_for_url("**/login/**")
    await tab_to(page, "#username")
    await keys.type("kim")
    await tab_to(page, "#password")
    await keys.type(PASSWORD)
    await keys.press("Enter")
    await page.wait_for_url("**/chat/")

    await tab_to(page, "#room-name")
    await keys.type("keys_only")
    await keys.press("Enter")
    await page.wait_for_url("**/chat/keys_only/")
    await page.wait_for_selector("#status[data-state=connected]")
    await tab_to(page, "#message-input")
    await keys.type("typed, not clicked")
    await keys.press("Enter")
    await page.wait_for_selector("#log .msg.mine .bubble:has-text('typed, not clicked')")
    # Focus is visible: the focused control gets an outline.
    outline = await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    await context.close()


async def test_room_list_counts_refresh_without_reload(app, browser, bots):
    hal = await new_person(browser, app.url, "hal", register=False)
    # The list polls every few seconds: the page's clock is moved on instead of waited for.
    await hal.page.clock.install()
    await hal.register()
    bot = await bots("count_bot")
    sock = await bot.enter("counted")
    await sock.presence(["count_bot"])  # the join is recorded

    async def count_shown(text: str) -> bool:
        await hal.page.clock.run_for(POLL_MS)
        shown = hal.page.locator("#room-list li[data-room=counted] [data-count]")
        return await shown.count() == 1 and await shown.text_content() == text

    await until(lambda: count_shown("1"), 10, "the room listed with 1 person")
    await sock.close()
    await until(lambda: count_shown("0"), 10, "the room listed with 0 people")
    assert await hal.page.text_content("#room-list li[data-room=counted] [data-people]") == (
        "people here"
    )


async def test_new_messages_pill_when_scrolled_up_and_announcement(app, browser, bots):
    ivy = await new_person(browser, app.url, "ivy")
    bot = await (await bots("chatty")).enter("busy")
    for n in range(30):
        await bot.say(f"filler {n}")
    await ivy.enter_room("busy")
    at_bottom = (
        "() => { const l = document.getElementById('log');"
        " return l.scrollHeight - l.scrollTop - l.clientHeight < 48; }"
    )
    assert await ivy.page.evaluate(at_bottom)
    await bot.say("while at the bottom")
    await ivy.wait_for_text("while at the bottom")
    assert await ivy.page.evaluate(at_bottom)
    assert await ivy.page.is_hidden("#new-pill")

    await ivy.page.eval_on_selector("#log", "l => { l.scrollTop = 0; }")
    await bot.say("while reading old ones")
    await ivy.wait_for_text("while reading old ones")
    await ivy.page.wait_for_selector("#new-pill:has-text('1 new message')")
    assert not await ivy.page.evaluate(at_bottom)
    announced = await ivy.page.text_content("#announcer")
    # Names and texts are bidi-isolated (U+2068 ... U+2069), for screen readers too.
    assert announced.replace("\u2068", "").replace("\u2069", "") == "chatty: while reading old ones"
    await ivy.page.click("#new-pill")
    assert await ivy.page.evaluate(at_bottom)
    assert await ivy.page.is_hidden("#new-pill")


async def test_failed_send_keeps_the_text_and_shows_the_error(app, browser):
    jo = await new_person(browser, app.url, "jo")

    def route(ws):
        server = ws.connect_to_server()

        def from_page(message):
            frame = json.loads(message)
            if frame.get("text") == "refuse me":
                ws.send(
                    json.dumps(
                        {
                            "type": "error",
                            "code": "rate_limited",
                            "detail": "Too many messages; slow down. Not sent.",
                            "client_id": frame["client_id"],
                        }
                    )
                )
            else:
                server.send(message)

        ws.on_message(from_page)

    await jo.page.route_web_socket("**/ws/chat/**", route)
    await jo.enter_room("flaky")
    await jo.page.fill("#message-input", "refuse me")
    await jo.page.press("#message-input", "Enter")
    await jo.page.wait_for_selector("#composer-help.is-error:has-text('slow down')")
    assert await jo.page.input_value("#message-input") == "refuse me"
    assert await jo.page.is_editable("#message-input")
    assert await jo.page.locator("#log .msg").count() == 0
    await jo.send("this one goes")
    assert [m["text"] for m in await jo.messages()] == ["this one goes"]
    assert await jo.page.text_content("#composer-help") == ""


async def test_policy_close_sends_the_reader_to_the_rooms_with_the_reason(app, browser):
    kai = await new_person(browser, app.url, "kai")

    async def route(ws):
        ws.send(json.dumps({"type": "history", "messages": [], "truncated": False}))
        await ws.close(code=1008, reason="room deleted by an administrator")

    await kai.page.route_web_socket("**/ws/chat/**", route)
    await kai.page.goto("/chat/doomed/")
    await kai.page.wait_for_url("**/chat/")
    notice = await kai.page.wait_for_selector("#flash[role=alert]")
    assert "doomed" in await notice.text_content()
    assert "room deleted by an administrator" in await notice.text_content()
    await kai.page.reload()
    assert await kai.page.locator("#flash").count() == 0  # said once


async def test_truncated_history_says_messages_were_missed_and_rerenders(app, browser):
    lee = await new_person(browser, app.url, "lee")
    history = [
        {
            "type": "message",
            "id": n,
            "room": "gap",
            "username": "zed",
            "text": f"m{n}",
            "ts": 1732500000.0 + n,
            "client_id": None,
        }
        for n in (1500, 1501, 1502)
    ]

    def route(ws):
        ws.send(json.dumps({"type": "history", "messages": history, "truncated": True}))
        ws.send(json.dumps({"type": "presence", "users": ["lee", "zed"], "count": 2}))

    await lee.page.route_web_socket("**/ws/chat/**", route)
    await lee.page.goto("/chat/gap/")
    await lee.wait_state("connected")
    await lee.page.wait_for_selector("#log .notice:has-text('missed')")
    assert [m["id"] for m in await lee.messages()] == [1500, 1501, 1502]
    # Same author within a minute: one group (the author shown once).
    grouped = await lee.page.eval_on_selector_all(
        "#log .msg", "items => items.map(li => li.classList.contains('grouped'))"
    )
    assert grouped == [False, True, True]
    assert sorted(await lee.presence()) == ["lee", "zed"]


async def test_register_rules_are_checked_as_the_user_types(app, browser, bots):
    page = (await new_person(browser, app.url, "max", register=False)).page
    await page.goto("/register/")
    assert await page.evaluate("() => document.activeElement.id") == "username"
    await page.type("#username", "9lives")
    await page.keyboard.press("Tab")
    await page.wait_for_selector("#username-errors:has-text('cannot start with a digit')")
    assert await page.get_attribute("#username", "aria-invalid") == "true"
    assert "username-errors" in await page.get_attribute("#username", "aria-describedby")
    await page.fill("#username", "")
    await page.type("#username", "lives9")
    await page.wait_for_selector("#username-errors", state="hidden")
    await page.type("#password", "short")
    await page.keyboard.press("Tab")
    await page.wait_for_selector("#password-errors:has-text('too short')")
    await page.type("#password2", "other")
    await page.keyboard.press("Tab")
    await page.wait_for_selector("#password2-errors:has-text('match')")
    await page.click("button:has-text('Register')")
    assert page.url.endswith("/register/")  # kept on the page, focus on the first problem
    assert await page.evaluate("() => document.activeElement.id") == "password"

    # The server stays the judge: a taken name comes back next to the field.
    await bots("taken_name")
    await page.fill("#username", "taken_name")
    await page.fill("#password", PASSWORD)
    await page.fill("#password2", PASSWORD)
    await page.click("button:has-text('Register')")
    await page.wait_for_selector("#username-errors:has-text('already exists')")
    assert await page.evaluate("() => document.activeElement.id") == "username"


CONTRAST_JS = """
() => {
  const parse = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = parse(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] > 0.9) return c;
    }
    return [238, 242, 245];
  };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.checkVisibility() || el.closest('.sr-only, [disabled]')) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(parse(style.color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const large = parseFloat(style.fontSize) >= 24 ||
      (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) bad.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return bad;
}
"""

A11Y_JS = """
() => ({
  unlabelled: [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
    .filter(i => !i.labels.length && !i.getAttribute('aria-label')).map(i => i.id || i.name),
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  lang: document.documentElement.lang,
})
"""


async def test_screenshots_at_1440_and_375_are_readable_and_fit(app, browser, bots):
    nia = await new_person(browser, app.url, "nia")
    omar = await (await bots("omar")).enter("design_review")
    await omar.say("Morning! Did the new layout land?")
    await nia.enter_room("design_review")
    await nia.send("It did. Bubbles on the right are mine,")
    await nia.send("and these two are grouped.")
    await omar.say("Looks good at every width. Shift+Enter for\na second line works too.")
    await (await bots("quin")).enter("random")
    for viewport, label in ((DESKTOP, "1440"), (PHONE, "375")):
        person = await new_person(browser, app.url, "nia", viewport=viewport, login=True)
        page = person.page
        await screenshot(page, f"rooms-{label}")
        report = await page.evaluate(A11Y_JS)
        assert report == {"unlabelled": [], "overflow": 0, "lang": "en"}, (label, report)
        assert await page.evaluate(CONTRAST_JS) == []
        await person.enter_room("design_review")
        await person.wait_for_text("and these two are grouped.")
        await page.wait_for_function("() => document.querySelectorAll('#presence li').length === 2")
        await screenshot(page, f"room-{label}")
        report = await page.evaluate(A11Y_JS)
        assert report == {"unlabelled": [], "overflow": 0, "lang": "en"}, (label, report)
        assert await page.evaluate(CONTRAST_JS) == []
        assert await page.get_attribute("#announcer", "aria-live") == "polite"
        assert unexpected(person.errors) == []
        await person.context.close()
    for name in ("rooms-1440", "rooms-375", "room-1440", "room-375"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 5000


async def test_room_history_reads_without_javascript(app, browser):
    uma = await new_person(browser, app.url, "uma")
    await uma.enter_room("plain")
    await uma.send("readable <b>without</b> scripts")
    context = await browser.new_context(base_url=app.url, java_script_enabled=False)
    await context.add_cookies(await uma.context.cookies())
    page = await context.new_page()
    await page.goto("/chat/plain/")
    assert await page.text_content("#log .msg.mine .bubble") == "readable <b>without</b> scripts"
    assert await page.locator("#log b").count() == 0
    assert await page.is_disabled("#message-input")  # sending needs the script
    await context.close()


def login_next(url: str) -> str | None:
    """`next` of a login page's URL (decoded), None for any other page."""
    parts = urlsplit(url)
    if parts.path != "/login/":
        return None
    return parse_qs(parts.query).get("next", [None])[0]


async def test_a_room_page_whose_session_ended_goes_to_the_login_page(redis_server, browser):
    port = free_port()
    server = AppProcess(redis_server.url, port=port, **APP_ENV).start()
    try:
        pat = await new_person(browser, server.url, "lo_pat")
        await pat.enter_room("door")
        # Logged out in another tab of the same browser: the server closes the
        # room's socket (1008, "logged out"), and the page goes to the login form.
        other = await pat.context.new_page()
        await other.goto("/chat/")
        await other.click("button:has-text('Log out')")
        await other.wait_for_url("**/login/")
        await other.close()
        # The page's own redirect, or the server's if the page was reloaded meanwhile:
        # either way the login form, to come back to the room.
        await pat.page.wait_for_url(lambda url: login_next(url) == "/chat/door/")
        notice = await pat.page.wait_for_selector("#flash[role=alert]")
        assert "Your session ended" in await notice.text_content()
        assert "door" in await notice.text_content()
        # Back after logging in: the form returns the reader to the room.
        await pat.page.fill("#username", "lo_pat")
        await pat.page.fill("#password", PASSWORD)
        await pat.page.press("#password", "Enter")
        await pat.page.wait_for_url("**/chat/door/")
    finally:
        server.stop()


async def test_going_offline_stops_the_retries_and_coming_online_reconnects(app, browser):
    quinn = await new_person(browser, app.url, "quinn")
    routes = []

    def route(ws):
        routes.append(ws)
        ws.connect_to_server()

    await quinn.page.clock.install()
    await quinn.page.route_web_socket("**/ws/chat/**", route)
    await quinn.enter_room("tunnel")
    # Time stands still from here: a retry runs only when the test lets the clock run.
    await quinn.page.clock.pause_at(await quinn.page.evaluate("Date.now()") + 1000)
    await routes[0].close(code=1011, reason="dropped")
    await quinn.wait_state("reconnecting")
    await quinn.context.set_offline(True)
    await quinn.wait_state("offline")
    await quinn.page.clock.run_for(60_000)  # every retry the page had scheduled would run
    assert await quinn.page.get_attribute("#status", "data-state") == "offline"
    assert len(routes) == 1  # no connection was tried while offline
    await quinn.context.set_offline(False)
    await quinn.wait_state("connected")
    assert len(routes) == 2


async def test_emoji_count_as_one_character_each_as_on_the_server(app, browser):
    ray = await new_person(browser, app.url, "ray")
    await ray.enter_room("smiles")
    limit = int(await ray.page.get_attribute("#room", "data-max-length"))
    await ray.page.fill("#message-input", "😀" * (limit - 1))
    await ray.page.wait_for_selector("#composer-help:text-is('1 character left.')")
    text = "😀" * limit  # twice as many UTF-16 units as the limit
    await ray.send(text)
    await ray.wait_for_text(text)
    assert await ray.page.text_content("#composer-help") == ""


async def test_the_register_form_checks_the_limits_the_page_carries(app, browser):
    page = (await new_person(browser, app.url, "sol", register=False)).page
    await page.goto("/register/")
    # forms.js has no numbers of its own: change the page's, and it checks those.
    await page.eval_on_selector("#username", "i => { i.dataset.maxLength = '5'; }")
    await page.eval_on_selector("#password", "i => { i.dataset.maxBytes = '10'; }")
    await page.type("#username", "abcdef")
    await page.type("#password", PASSWORD)
    await page.keyboard.press("Tab")
    await page.wait_for_selector(
        "#username-errors:has-text('Usernames are at most 5 characters (this one has 6).')"
    )
    await page.wait_for_selector("#password-errors:has-text('at most 10 bytes once encoded')")
