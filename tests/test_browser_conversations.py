"""Conversations in Chromium (issue 14, the page side): the sidebar's live unread
counts and read markers across tabs, notifications while hidden, the phone
drawer, mentions and their completion, markup shown as text, dark mode.

Each test is a browser person (or two tabs of one) against `Client` bots outside
the browser. One Chromium for the module; screenshots go to
test-artifacts/screenshots/ (conversations-*.png).
"""

from __future__ import annotations

import asyncio

import pytest

from .browser import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    new_person,
    screenshot,
    tab_to,
)
from .support import until
from .test_browser import A11Y_JS, CONTRAST_JS, COUNT_IMAGES_JS, unexpected

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


# Records every browser notification instead of showing it (and every request
# for permission): window.__notes, window.__asked.
RECORD_NOTIFICATIONS_JS = """
window.__notes = [];
window.__asked = 0;
const Real = window.Notification;
class Recorded extends EventTarget {
  constructor(title, options = {}) {
    super();
    this.title = title;
    this.body = options.body;
    this.tag = options.tag;
    this.closed = false;
    window.__notes.push(this);
  }
  close() { this.closed = true; }
  static get permission() { return Real ? Real.permission : 'default'; }
  static requestPermission() {
    window.__asked += 1;
    return Real ? Real.requestPermission() : Promise.resolve('default');
  }
}
window.Notification = Recorded;
"""

HIDE_PAGE_JS = """
() => {
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
  document.dispatchEvent(new Event('visibilitychange'));
}
"""


def entry(conversation: str) -> str:
    return f"#sidebar li[data-conversation='{conversation}']"


async def badge(page, conversation: str, which: str = "unread") -> str:
    """The number a sidebar entry shows ("" when its badge is hidden)."""
    return await page.evaluate(
        """([sel, which]) => {
            const b = document.querySelector(`${sel} [data-${which}-badge]`);
            return !b || b.hidden ? '' : b.querySelector('[data-n]').textContent;
        }""",
        [entry(conversation), which],
    )


async def wait_badge(page, conversation: str, text: str, which: str = "unread") -> None:
    await page.wait_for_function(
        """([sel, which, text]) => {
            const b = document.querySelector(`${sel} [data-${which}-badge]`);
            if (!b) return false;
            const shown = b.hidden ? '' : b.querySelector('[data-n]').textContent;
            return shown === text;
        }""",
        arg=[entry(conversation), which, text],
    )


async def test_sidebar_counts_rise_live_and_clear_when_opened_on_every_tab(app, browser, bots):
    ada = await new_person(browser, app.url, "ada")
    await ada.enter_room("cv_news")  # in her list from now on
    await ada.enter_room("cv_hall")
    second = await ada.context.new_page()  # a second tab, on the same room
    await second.goto("/chat/cv_hall/")
    await second.wait_for_selector("#status[data-state=connected]")
    tabs = [ada.page, second]
    for page in tabs:
        assert await page.get_attribute(f"{entry('cv_hall')} a", "aria-current") == "page"
        assert await badge(page, "cv_news") == ""
        assert await page.title() == "cv_hall · chatapp"

    news = await (await bots("newsbot")).enter("cv_news")
    await news.say("first news")
    await news.say("hey @ADA, look at this")  # a mention: notify and activity, counted once
    await news.say("third news")
    for page in tabs:
        await wait_badge(page, "cv_news", "3")
        await wait_badge(page, "cv_news", "1", "mentions")
        assert await page.title() == "(3) cv_hall · chatapp"
        assert await page.get_attribute(entry("cv_news"), "class") == "has-unread"
    # The same counts as the server's.
    api = await ada.page.evaluate("() => fetch('/api/conversations').then(r => r.json())")
    (news_summary,) = [c for c in api["conversations"] if c["conversation"] == "cv_news"]
    assert (news_summary["unread"], news_summary["mentions"]) == (3, 1)

    # Opened from the sidebar in the first tab: the divider is at the first unread
    # message, and the second tab's count clears as the first tab reads.
    await ada.page.click(f"{entry('cv_news')} a")
    await ada.page.wait_for_url("**/chat/cv_news/")
    await ada.wait_state("connected")
    items = await ada.page.eval_on_selector_all(
        "#log > li", "items => items.map(li => li.id === 'new-divider' ? '--' : li.dataset.id)"
    )
    assert items.index("--") == len(items) - 4  # before the three unread
    assert await ada.page.text_content("#new-divider") == "New messages"
    assert await ada.page.get_attribute(f"{entry('cv_news')} a", "aria-current") == "page"
    assert await badge(ada.page, "cv_news") == ""
    await wait_badge(second, "cv_news", "")
    await wait_badge(second, "cv_news", "", "mentions")
    await second.wait_for_function("() => document.title === 'cv_hall · chatapp'")
    # The mention is highlighted, strongly for her.
    assert await ada.page.text_content("#log mark.mention-me") == "@ADA"
    # The room list page has no socket: its sidebar asks the server every few seconds.
    await second.goto("/chat/")
    hall = await (await bots("hallbot")).enter("cv_hall")
    await hall.say("anyone in the hall?")
    await second.wait_for_function(
        "sel => document.querySelector(sel)?.dataset.unread === '1'",
        arg=entry("cv_hall"),
        timeout=12_000,
    )
    await second.wait_for_function("() => document.title === '(1) Rooms · chatapp'")
    assert unexpected(ada.errors) == []


async def test_a_list_answer_older_than_a_live_count_does_not_undo_it(app, browser, bots):
    """The sidebar asks for the list once its socket follows the conversations; a
    message counted live while that answer was on its way stays counted when the
    (older) answer lands, and the answer's news is shown too."""
    dee = await new_person(browser, app.url, "stale_dee")
    bot = await (await bots("old_bot")).enter("cv_stale_one")
    await dee.enter_room("cv_stale_one")
    asked, answered = asyncio.Event(), asyncio.Event()
    held: list = []

    async def hold(route):
        await asked.wait()
        response = await route.fetch()  # the server's list now, before "hello"
        held.append(response)
        await answered.wait()
        await route.fulfill(response=response)

    await dee.page.route("**/api/conversations", hold)
    await dee.page.goto("/chat/cv_stale_two/")
    await dee.wait_state("connected")
    # News the held answer will bring: stale_dee opened cv_stale_three elsewhere.
    other = await bots("stale_dee")
    await other.enter("cv_stale_three")
    asked.set()
    await until(lambda: held, 10, "the list read, not yet answered")
    await bot.say("hello")  # counted live from its activity frame
    await wait_badge(dee.page, "cv_stale_one", "1")
    answered.set()
    await dee.page.wait_for_selector(entry("cv_stale_three"))  # the answer is shown
    assert await badge(dee.page, "cv_stale_one") == "1"
    await dee.page.unroute("**/api/conversations")


async def test_message_button_opens_a_direct_conversation_that_updates_live(app, browser, bots):
    bea = await new_person(browser, app.url, "bea")
    dmbot = await bots("dm_bot")
    await dmbot.enter("cv_porch")
    await bea.enter_room("cv_porch")
    await bea.page.click("#presence a[aria-label='Message dm_bot']")
    await bea.page.wait_for_url("**/dm/dm_bot/")
    await bea.wait_state("connected")
    assert await bea.page.get_attribute("#room", "data-kind") == "dm"
    dm_name = "@bea:dm_bot"
    assert await bea.page.get_attribute(f"{entry(dm_name)} a", "aria-current") == "page"
    direct = await dmbot.join_path("/ws/dm/bea/")
    await direct.next("history")
    await direct.say("a direct hello")
    await bea.wait_for_text("a direct hello")
    # From another room, a direct message counts as unread and as a mention.
    await bea.page.click(f"{entry('cv_porch')} a")
    await bea.wait_state("connected")
    await direct.say("are you there?")
    await wait_badge(bea.page, dm_name, "1")
    await wait_badge(bea.page, dm_name, "1", "mentions")
    # A private room she creates is listed with the rooms, marked private.
    await bea.page.goto("/chat/")
    await bea.page.fill("#room-name", "cv_secret")
    await bea.page.check("input[name=private]")
    await bea.page.press("#room-name", "Enter")
    await bea.page.wait_for_url("**/chat/cv_secret/")
    await bea.wait_state("connected")
    secret = entry("cv_secret")
    assert await bea.page.get_attribute(secret, "data-kind") == "private"
    assert await bea.page.text_content(f"{secret} a .sr-only") == "Private room "
    assert await bea.page.is_visible(f"{secret} svg.conv-icon")
    assert await bea.page.get_attribute(f"{secret} a", "aria-current") == "page"
    assert unexpected(bea.errors) == []


async def test_a_mention_while_the_tab_is_hidden_shows_a_notification(app, browser, bots):
    cy = await new_person(browser, app.url, "cy", register=False)
    await cy.context.add_init_script(RECORD_NOTIFICATIONS_JS)
    await cy.context.grant_permissions(["notifications"], origin=app.url)
    await cy.register()
    await cy.enter_room("cv_desk")
    assert await cy.page.evaluate("() => window.__asked") == 0  # never asked on load
    assert await cy.page.is_hidden("#notify-button")  # granted already
    assert "on" in await cy.page.text_content("#notify-state")

    loud = await (await bots("loud")).enter("cv_yard")
    await loud.say("not for anyone")  # no mention: no notification
    await loud.say("@cy visible tab: the badge only")
    await wait_badge(cy.page, "cv_yard", "1", "mentions")
    assert await cy.page.evaluate("() => window.__notes.length") == 0

    await cy.page.evaluate(HIDE_PAGE_JS)
    await loud.say("@Cy are you there? <b>bold</b>")
    await cy.page.wait_for_function("() => window.__notes.length === 1")
    note = await cy.page.evaluate(
        "() => { const n = window.__notes[0]; return {title: n.title, body: n.body, tag: n.tag}; }"
    )
    assert note == {
        "title": "loud in #cv_yard",
        "body": "@Cy are you there? <b>bold</b>",
        "tag": "cv_yard",
    }
    await wait_badge(cy.page, "cv_yard", "2", "mentions")
    assert (await cy.page.title()).startswith("(3) ")
    # Clicking it opens the conversation.
    await cy.page.evaluate("() => window.__notes[0].dispatchEvent(new Event('click'))")
    await cy.page.wait_for_url("**/chat/cv_yard/")

    # Without the permission, the button asks for it, from the click only.
    other = await new_person(browser, app.url, "cy_two", register=False)
    await other.context.add_init_script(RECORD_NOTIFICATIONS_JS)
    await other.register()
    await other.enter_room("cv_desk")
    assert await other.page.evaluate("() => window.__asked") == 0
    await tab_to(other.page, "#notify-button")
    await other.page.keyboard.press("Enter")
    await other.page.wait_for_function("() => window.__asked === 1")


async def test_phone_sidebar_is_a_drawer_opened_and_closed_with_the_keyboard(app, browser, bots):
    dee = await new_person(browser, app.url, "dee", viewport=PHONE)
    await dee.enter_room("cv_phone_b")
    await dee.enter_room("cv_phone")
    page = dee.page
    pal = await (await bots("pal")).enter("cv_phone")
    await pal.say("Hi Dee, the sidebar is behind the button up there.")
    await dee.wait_for_text("Hi Dee, the sidebar is behind the button up there.")
    other = await (await bots("pal_b")).enter("cv_phone_b")
    await other.say("@dee one for you over here")
    await page.wait_for_selector("#sidebar-button-total:not([hidden])")
    assert await page.text_content("#sidebar-button-total") == "1 unread"
    button = "#sidebar-button"
    assert await page.is_hidden("#sidebar")
    assert await page.get_attribute(button, "aria-expanded") == "false"
    await screenshot(page, "conversations-light-375")

    await tab_to(page, button)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#sidebar.is-open", state="visible")
    assert await page.get_attribute(button, "aria-expanded") == "true"
    # Focus moved into the drawer, on the current conversation.
    assert await page.evaluate("() => document.activeElement.getAttribute('aria-current')") == (
        "page"
    )
    assert await page.evaluate("() => document.activeElement.closest('#sidebar') !== null")
    # The rest of the page is out of reach while it is open.
    assert await page.evaluate("() => document.getElementById('room').inert")
    assert (await page.evaluate(A11Y_JS))["overflow"] == 0
    # What the phone shows (a full-page capture would cut the fixed drawer short).
    await page.screenshot(path=str(SCREENSHOTS / "conversations-drawer-375.png"))
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#sidebar", state="hidden")
    assert await page.get_attribute(button, "aria-expanded") == "false"
    assert await page.evaluate("() => document.activeElement.id") == "sidebar-button"
    assert not await page.evaluate("() => document.getElementById('room').inert")

    # Space opens it too; Tab to another conversation and Enter goes there.
    await page.keyboard.press("Space")
    await page.wait_for_selector("#sidebar.is-open", state="visible")
    await tab_to(page, f"{entry('cv_phone_b')} a")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/chat/cv_phone_b/")
    assert await page.is_hidden("#sidebar")
    assert unexpected(dee.errors) == []


async def test_mentions_are_highlighted_and_completed_with_the_keyboard(app, browser, bots):
    eve = await new_person(browser, app.url, "eve")
    bots_here = []
    for name in ("cv_bob", "cv_bea"):
        bots_here.append(await (await bots(name)).enter("cv_words"))
    await bots_here[0].say("hi @eve and @cv_bea, mail@example.com is not one, nor @@x")
    await eve.enter_room("cv_words")
    await eve.page.wait_for_function("() => document.querySelectorAll('#presence li').length === 3")
    marks = await eve.page.eval_on_selector_all(
        "#log mark", "ms => ms.map(m => [m.textContent, m.classList.contains('mention-me')])"
    )
    assert marks == [["@eve", True], ["@cv_bea", False]]
    assert await eve.page.eval_on_selector(
        "#log .msg", "li => li.classList.contains('mentions-me')"
    )

    page = eve.page
    await page.focus("#message-input")
    await page.keyboard.type("thanks @cv_b")
    await page.wait_for_selector("#mention-menu[role=listbox]", state="visible")
    options = await page.eval_on_selector_all(
        "#mention-menu [role=option]", "os => os.map(o => o.textContent)"
    )
    assert options == ["@cv_bea", "@cv_bob"]
    assert await page.get_attribute("#message-input", "aria-activedescendant") == "mention-option-0"
    await page.keyboard.press("ArrowDown")
    assert await page.get_attribute("#message-input", "aria-activedescendant") == "mention-option-1"
    assert await page.get_attribute("#mention-option-1", "aria-selected") == "true"
    await page.keyboard.press("Enter")  # picks, does not send
    assert await page.input_value("#message-input") == "thanks @cv_bob "
    assert await page.is_hidden("#mention-menu")
    assert await page.locator("#log .msg").count() == 1
    # Escape closes the list and keeps the text; Tab picks too.
    await page.keyboard.type("and @cv")
    await page.wait_for_selector("#mention-menu", state="visible")
    await page.keyboard.press("Escape")
    assert await page.is_hidden("#mention-menu")
    assert await page.input_value("#message-input") == "thanks @cv_bob and @cv"
    await page.keyboard.type("_be")
    await page.wait_for_selector("#mention-menu", state="visible")
    await page.keyboard.press("Tab")
    assert await page.input_value("#message-input") == "thanks @cv_bob and @cv_bea "
    await page.keyboard.press("Enter")  # the list is closed: this sends
    await eve.wait_for_text("thanks @cv_bob and @cv_bea ")
    mine = await page.eval_on_selector_all(
        "#log .msg.mine mark", "ms => ms.map(m => [m.textContent, m.className])"
    )
    assert mine == [["@cv_bob", "mention"], ["@cv_bea", "mention"]]
    # (The page's typing frames come first: the message is the one to read.)
    heard = await bots_here[0].until(lambda f: f["type"] == "message" and f["username"] == "eve")
    assert heard["text"] == "thanks @cv_bob and @cv_bea "


XSS_PAYLOADS = [
    "@<img src=x onerror=alert(1)>",
    "@fay<script>alert(2)</script>",
    '<b>@fay</b> "><img src=x onerror=alert(3)>',
    "@fay</mark><img src=x onerror=alert(4)>",
    "javascript:alert(5) @fay",
]


async def test_markup_with_mentions_is_shown_as_text_in_rooms_dms_and_the_sidebar(
    app, browser, bots
):
    fay = await new_person(browser, app.url, "fay", register=False)
    await fay.context.add_init_script(COUNT_IMAGES_JS)
    await fay.context.add_init_script(RECORD_NOTIFICATIONS_JS)
    await fay.context.grant_permissions(["notifications"], origin=app.url)
    await fay.register()
    await fay.enter_room("cv_safe")
    xbot = await bots("x_bot")
    room = await xbot.enter("cv_safe")
    direct = await xbot.join_path("/ws/dm/fay/")
    await direct.next("history")
    for payload in XSS_PAYLOADS:
        await room.say(payload)
    await fay.wait_for_text(XSS_PAYLOADS[-1])
    # Direct messages while she is in the room: the sidebar and notifications.
    await fay.page.evaluate(HIDE_PAGE_JS)
    for payload in XSS_PAYLOADS:
        await direct.say(payload)
    await fay.page.wait_for_function("n => window.__notes.length === n", arg=len(XSS_PAYLOADS))
    bodies = await fay.page.evaluate("() => window.__notes.map(n => n.body)")
    assert bodies == XSS_PAYLOADS
    await wait_badge(fay.page, "@fay:x_bot", str(len(XSS_PAYLOADS)))
    for path in ("/chat/cv_safe/", "/dm/x_bot/"):
        await fay.page.goto(path)
        await fay.wait_state("connected")
        assert [m["text"] for m in await fay.messages()] == XSS_PAYLOADS
        marks = await fay.page.eval_on_selector_all("#log mark", "ms => ms.map(m => m.textContent)")
        assert marks == ["@fay"] * 4
        assert await fay.page.evaluate("() => window.__images") == 0
        assert await fay.page.locator("#log img, #log script, #log b").count() == 0
    assert fay.dialogs == []


async def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(app, browser, bots):
    gus = await new_person(browser, app.url, "gus")
    await gus.context.close()
    context = await browser.new_context(base_url=app.url, viewport=DESKTOP, color_scheme="dark")
    page = await context.new_page()
    await page.goto("/login/")
    await page.fill("#username", "gus")
    from .client import PASSWORD

    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_url("**/chat/")
    talk = await (await bots("hal_b")).enter("cv_dark")
    await talk.say("Evening! Is dark mode on for you too, @gus?")
    await page.fill("#room-name", "cv_other_dark")
    await page.press("#room-name", "Enter")
    await page.wait_for_selector("#status[data-state=connected]")
    await page.goto("/chat/cv_dark/")
    await page.wait_for_selector("#status[data-state=connected]")
    await page.fill("#message-input", "It is. And the sidebar shows where I have unread.")
    await page.press("#message-input", "Enter")
    await page.wait_for_selector("#log .msg.mine")
    await page.goto("/chat/cv_other_dark/")
    await page.wait_for_selector("#status[data-state=connected]")
    await talk.say("One more, @gus")
    await page.wait_for_selector(f"{entry('cv_dark')} [data-unread-badge]:not([hidden])")
    await page.goto("/chat/cv_dark/")
    await page.wait_for_selector("#status[data-state=connected]")
    elsewhere = await (await bots("ivo")).enter("cv_other_dark")
    await elsewhere.say("Standup moved to 10:30")
    direct = await (await bots("jun")).join_path("/ws/dm/gus/")
    await direct.next("history")
    await direct.say("Lunch later?")
    await page.wait_for_selector(f"{entry('@gus:jun')} [data-mentions-badge]:not([hidden])")
    await page.wait_for_selector(f"{entry('cv_other_dark')} [data-unread-badge]:not([hidden])")
    await page.wait_for_function("() => document.title === '(2) cv_dark · chatapp'")

    background = "() => getComputedStyle(document.body).backgroundColor"
    assert await page.evaluate(background) == "rgb(14, 19, 24)"
    assert await page.get_attribute("html", "data-theme") == "dark"
    assert await page.get_attribute("#theme-button", "aria-pressed") == "true"
    assert await page.evaluate(CONTRAST_JS) == []
    assert await page.evaluate(A11Y_JS) == {"unlabelled": [], "overflow": 0, "lang": "en"}
    await screenshot(page, "conversations-dark-1440")

    await page.click("#theme-button")  # light, remembered in this browser
    assert await page.evaluate(background) == "rgb(238, 242, 245)"
    assert await page.evaluate(CONTRAST_JS) == []
    await page.reload()
    assert await page.get_attribute("html", "data-theme") == "light"
    assert await page.get_attribute("#theme-button", "aria-pressed") == "false"
    await page.goto("/login/")  # every page, not only the chat ones
    assert await page.evaluate(background) == "rgb(238, 242, 245)"
    await context.close()
    assert (SCREENSHOTS / "conversations-dark-1440.png").stat().st_size > 5000
