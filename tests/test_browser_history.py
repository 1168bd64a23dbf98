"""History on the room page in Chromium (issue 16, the page side): scroll-back that
keeps the reader's place, the "beginning" marker, `?at=ID` from a search result,
a far-behind resume filled through the history API with no gap and no duplicate,
and a reply whose original is not on the page.

The app is a real process on the private Redis with the default
`chat.page_history` (50): the page renders 50 messages and a socket's first
frame holds at most 50. Bots seed messages outside the browser. No sleeps: the
history API is held with a route where a test needs to see the page mid-load.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from .browser import DESKTOP, SCREENSHOTS, new_person

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

HISTORY_API = re.compile(r"/api/(chat|dm)/[^/]+/history")


async def seed(sock, count: int, text: str = "m{}") -> list[dict]:
    """`count` messages from one bot, sent back to back; the stored ones, in order."""
    for n in range(count):
        await sock.send(text.format(n))
    return await sock.messages(count, timeout=30)


async def shown_ids(page) -> list[int]:
    return await page.eval_on_selector_all(
        "#log li.msg", "items => items.map(li => Number(li.dataset.id))"
    )


async def wait_ids(page, first: int, last: int, timeout: float = 15_000) -> None:
    """Wait until the log shows exactly the ids first..last, in order."""
    await page.wait_for_function(
        """([a, b]) => {
            const ids = [...document.querySelectorAll('#log li.msg')]
                .map(li => Number(li.dataset.id));
            return ids.length === b - a + 1 && ids.every((id, i) => id === a + i);
        }""",
        arg=[first, last],
        timeout=timeout,
    )


async def top_of(page, message_id: int) -> float:
    return await page.eval_on_selector(
        f'#log li.msg[data-id="{message_id}"]', "li => li.getBoundingClientRect().top"
    )


async def first_visible(page) -> int:
    """The first message whose box reaches into the log's viewport."""
    return await page.evaluate(
        """() => {
            const top = document.getElementById('log').getBoundingClientRect().top;
            const li = [...document.querySelectorAll('#log li.msg')]
                .find(li => li.getBoundingClientRect().bottom > top);
            return Number(li.dataset.id);
        }"""
    )


async def in_view(page, message_id: int) -> bool:
    return await page.evaluate(
        """id => {
            const li = document.querySelector(`#log li.msg[data-id="${id}"]`);
            if (!li) return false;
            const r = li.getBoundingClientRect();
            const log = document.getElementById('log').getBoundingClientRect();
            return r.top >= log.top - 1 && r.bottom <= log.bottom + 1;
        }""",
        message_id,
    )


async def marked(page) -> list[dict]:
    return await page.eval_on_selector_all(
        "#log li.msg.target",
        "items => items.map(li => ({id: Number(li.dataset.id),"
        " current: li.getAttribute('aria-current')}))",
    )


class HeldHistory:
    """Holds the page's history API requests until released (one at a time)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()
        self.hold = True
        self.stale = False  # answer with what the server said before the release

    async def handle(self, route) -> None:
        self.seen.append(route.request.url)
        if not self.hold:
            await route.continue_()
            return
        self.hold = False  # only the first request is held
        response = await route.fetch() if self.stale else None
        self.waiting.set()
        await self.release.wait()
        if response is not None:
            await route.fulfill(response=response)
        else:
            await route.continue_()


async def test_scroll_to_the_top_loads_older_messages_in_place_and_home_does_too(
    app, browser, bots
):
    sock = await (await bots("sb_bot")).enter("sb_room")
    first = await seed(sock, 4, "early {}")
    bold = await sock.say("**bold** and `code` five")
    await seed(sock, 20, "filler {}")
    reply = await sock.say("an answer to the first", reply_to=first[0]["id"])
    await seed(sock, 94, "later {}")  # 120 in all: the page renders 71..120
    assert (bold["id"], reply["id"]) == (5, 26)

    ann = await new_person(browser, app.url, "sb_ann")
    page = ann.page
    held = HeldHistory()
    await page.route(HISTORY_API, held.handle)
    await ann.enter_room("sb_room")
    assert await shown_ids(page) == list(range(71, 121))
    assert await page.get_attribute("#room", "data-has-more-before") == "1"
    assert await page.locator("#log-start").count() == 0

    # Scroll to the top: the previous page is asked for, one request.
    await page.eval_on_selector("#log", "log => { log.scrollTop = 0; }")
    await asyncio.wait_for(held.waiting.wait(), 10)
    await page.wait_for_selector("#older-status:has-text('Loading older messages')")
    anchor = await first_visible(page)
    assert anchor == 71
    before = await top_of(page, anchor)
    held.release.set()
    await wait_ids(page, 21, 120)
    after = await top_of(page, anchor)
    assert abs(after - before) <= 2, (before, after)  # no jump
    assert await page.is_hidden("#older-status")
    assert "before=71" in held.seen[0] and "limit=50" in held.seen[0]
    # The reply loaded with the page quotes an original not yet on it.
    assert await page.locator('#log li.msg[data-id="26"] .reply-quote.is-missing').count() == 1

    # Keyboard: Home in the log goes to the first message and loads the rest.
    await page.focus("#log")
    await page.keyboard.press("Home")
    await wait_ids(page, 1, 120)
    await page.wait_for_selector("#log-start:has-text('Beginning of the conversation')")
    assert len(held.seen) == 2 and "before=21" in held.seen[1]
    # Prepended messages render like the others: formatting, and the reply's
    # quote now shows its original.
    assert await page.text_content('#log li.msg[data-id="5"] .bubble strong') == "bold"
    assert await page.text_content('#log li.msg[data-id="5"] .bubble code') == "code"
    quote = '#log li.msg[data-id="26"] button.reply-quote:not(.is-missing)'
    assert "early 0" in await page.text_content(quote)
    assert await page.locator('#log li.msg[data-id="5"] .msg-actions').count() == 1
    # The marker is the log's first item, and nothing more is asked.
    assert await page.eval_on_selector("#log", "log => log.firstElementChild.id") == "log-start"
    await page.eval_on_selector("#log", "log => { log.scrollTop = 0; }")
    await page.keyboard.press("PageUp")
    assert len(held.seen) == 2
    assert not ann.errors, ann.errors


async def test_a_search_result_opens_the_page_at_the_message_marked_with_the_feed_below(
    app, browser, bots
):
    sock = await (await bots("at_bot")).enter("at_room")
    await seed(sock, 59, "hay {}")
    needle = await sock.say("a needle in the haystack")
    await seed(sock, 140, "more hay {}")  # 200 in all
    assert needle["id"] == 60

    bea = await new_person(browser, app.url, "at_bea")
    page = bea.page
    await page.goto("/chat/")
    await page.fill("#search-input", "NEEDLE haystack")
    await page.press("#search-input", "Enter")
    await page.wait_for_selector("#search-results a")
    await page.click("#search-results a")
    await page.wait_for_url(re.compile(r"/chat/at_room/\?at=60$"))
    await bea.wait_state("connected")
    assert await page.get_attribute("#room", "data-at") == "60"
    assert await marked(page) == [{"id": 60, "current": "true"}]
    assert await in_view(page, 60)
    # The mark, light and dark: test-artifacts/screenshots/history-at-*.png.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.locator("#log").screenshot(path=str(SCREENSHOTS / "history-at-light.png"))
    dark = await browser.new_context(base_url=app.url, viewport=DESKTOP, color_scheme="dark")
    await dark.add_cookies(await bea.context.cookies())
    night = await dark.new_page()
    await night.goto("/chat/at_room/?at=60")
    await night.wait_for_selector('#log li.msg.target[data-id="60"]')
    await night.locator("#log").screenshot(path=str(SCREENSHOTS / "history-at-dark.png"))
    await dark.close()

    # The server rendered 35..85; the socket resumed after 85 and its frame
    # (the newest 50) said `more`: the rest came from the history API.
    await wait_ids(page, 35, 200)
    assert await in_view(page, 60)  # not taken to the bottom
    # The live feed runs below.
    await sock.say("said after the jump")
    await bea.wait_for_text("said after the jump")
    assert (await shown_ids(page))[-1] == 201
    assert await in_view(page, 60)
    # The read marker is not past what was shown: the newest ones are still unread.
    summary = await page.evaluate(
        "() => fetch('/api/conversations').then(r => r.json())"
        ".then(j => j.conversations.find(c => c.name === 'at_room'))"
    )
    assert summary["unread"] >= 100, summary

    # Scroll-back from there: up to the beginning.
    await page.eval_on_selector("#log", "log => { log.scrollTop = 0; }")
    await wait_ids(page, 1, 201)
    await page.wait_for_selector("#log-start:has-text('Beginning of the conversation')")
    assert await marked(page) == [{"id": 60, "current": "true"}]
    assert not bea.errors, bea.errors


async def test_a_resume_far_behind_fills_the_gap_from_the_api_with_no_gap_or_duplicate(
    app, browser, bots
):
    sock = await (await bots("fb_bot")).enter("fb_room")
    await seed(sock, 10, "before {}")
    cai = await new_person(browser, app.url, "fb_cai")
    page = cai.page
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

    await page.route_web_socket("**/ws/chat/**", route)
    held = HeldHistory()
    held.stale = True  # the first page answers as the server had it before an edit
    await page.route(HISTORY_API, held.handle)
    await cai.enter_room("fb_room")
    assert await shown_ids(page) == list(range(1, 11))

    # Offline while 230 messages are said: more than a first frame holds.
    await cai.context.set_offline(True)
    await cai.wait_state("offline")
    await routes[0].close(code=1006)
    await seed(sock, 230, "away {}")
    await cai.context.set_offline(False)

    # The resume's frame holds the newest 50 and says `more`; the page asks
    # the history API for the rest, newest page first, and says it is loading.
    await asyncio.wait_for(held.waiting.wait(), 15)
    await cai.wait_state("connected")
    assert "after=10&" in routes[1].url
    assert histories[1]["more"] is True
    assert [m["id"] for m in histories[1]["messages"]] == list(range(191, 241))
    assert "before=191" in held.seen[0] and "limit=100" in held.seen[0]
    await page.wait_for_selector("#log li.notice.gap:has-text('Loading missed messages')")
    assert await page.text_content("#status") == "Loading missed messages…"

    # Meanwhile: a live message arrives below, a message of the held page is
    # edited (the page gets its update before the page itself), and the
    # socket drops again: the fill goes on.
    await sock.send_frame(type="edit", id=150, text="away 139, edited")
    await sock.update(150)
    live = await sock.say("live during the fill")
    await cai.wait_for_text("live during the fill")
    assert (await shown_ids(page))[-1] == live["id"] == 241
    await routes[1].close(code=1006)
    await cai.wait_state("reconnecting")
    await cai.wait_state("connected")
    assert len(routes) == 3 and "after=241&" in routes[2].url
    held.release.set()

    await wait_ids(page, 1, 241)
    ids = await shown_ids(page)
    assert ids == list(range(1, 242)) and len(set(ids)) == len(ids)
    await page.wait_for_selector("#log li.notice.gap", state="detached")
    await page.wait_for_function(
        "() => document.getElementById('status').textContent === 'Connected'"
    )
    # The edit heard before its page arrived is shown, not the page's older text.
    assert await page.text_content('#log li.msg[data-id="150"] .bubble') == "away 139, edited"
    assert sum("before=91" in url for url in held.seen) == 1
    assert not cai.errors, cai.errors


async def test_a_replys_quote_brings_an_original_not_on_the_page_into_view(app, browser, bots):
    sock = await (await bots("rq_bot")).enter("rq_room")
    original = await sock.say("the original question")
    await seed(sock, 70, "filler {}")
    await sock.say("the answer", reply_to=original["id"])  # id 72: the page shows 23..72
    far = await (await bots("rq_far")).enter("rq_far_room")
    far_original = await far.say("a question long ago")
    await seed(far, 400, "noise {}")
    await far.say("the late answer", reply_to=far_original["id"])

    dan = await new_person(browser, app.url, "rq_dan")
    page = dan.page
    await dan.enter_room("rq_room")
    quote = '#log li.msg[data-id="72"] .reply-quote'
    assert await page.get_attribute(quote, "class") == "reply-quote is-missing"
    await page.click(quote)  # a few pages back: loaded in place
    await page.wait_for_selector('#log li.msg[data-id="1"].target[aria-current="true"]')
    assert await in_view(page, 1)
    assert await marked(page) == [{"id": 1, "current": "true"}]
    await wait_ids(page, 1, 72)
    assert "the original question" in await page.text_content(quote)

    # Far back: the page opens at it.
    await page.goto("/chat/rq_far_room/")
    await dan.wait_state("connected")
    await page.click('#log li.msg[data-id="402"] .reply-quote')
    await page.wait_for_url(re.compile(r"/chat/rq_far_room/\?at=1$"))
    await dan.wait_state("connected")
    assert await marked(page) == [{"id": 1, "current": "true"}]
    assert await in_view(page, 1)
    assert not dan.errors, dan.errors
