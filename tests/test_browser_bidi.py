"""Bidi controls in messages (issue 13, item 14), in a real Chromium.

Seen: bidi overrides (U+202E) and zero-width characters in a message could
reorder what others see. Each message body, author, time and presence name
is now rendered bidi-isolated (`unicode-bidi` in app.css, `<bdi>` for names),
so whatever a message holds stays inside its own box, in its own order.
"""

from __future__ import annotations

import pytest

from .browser import new_person
from .client import Client

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

RLO, RLI, ZWSP = "\u202e", "\u2067", "\u200b"
# An unterminated override, an unterminated isolate and a zero-width space,
# around text that an override shows backwards ("evil.exe" as "exe.live").
PAYLOAD = f"{RLO}exe.live{RLI} said{ZWSP}"


# What the reader sees of one message, by position on screen, and whether each
# part is bidi-isolated from its neighbours.
LAYOUT = """id => {
    const li = document.querySelector(`.msg[data-id="${id}"]`);
    const box = el => el.getBoundingClientRect();
    const isolated = el => el.tagName === 'BDI'
        || ['isolate', 'isolate-override', 'plaintext'].includes(getComputedStyle(el).unicodeBidi);
    const author = li.querySelector('.author'), time = li.querySelector('time');
    const meta = li.querySelector('.meta'), bubble = li.querySelector('.bubble');
    return {
        authorLeftOfTime: box(author).right <= box(time).left,
        metaAboveBubble: box(meta).bottom <= box(bubble).top + 0.5,
        authorText: author.textContent,
        isolated: {author: isolated(author), time: isolated(time), bubble: isolated(bubble)},
    };
}"""

PRESENCE_ISOLATED = """() => [...document.querySelectorAll('#presence li')].map(li => {
    const name = li.querySelector('bdi');
    return name !== null && name.textContent.length > 0;
})"""


async def test_a_bidi_override_in_a_message_reorders_nothing_around_it(app, browser):
    reader = await new_person(browser, app.url, "rhea")
    bot = await Client(app.url, "mallory").sign_in()
    try:
        await reader.enter_room("bidi")
        sock = await bot.enter("bidi")
        first = await sock.say(PAYLOAD)
        follower = await sock.say("after it")
        await reader.wait_for_text(PAYLOAD)
        await reader.wait_for_text("after it")
        for view in ("live", "reloaded"):
            if view == "reloaded":
                await reader.page.reload()
                await reader.wait_state("connected")
            layout = await reader.page.evaluate(LAYOUT, first["id"])
            assert layout["authorText"] == "mallory", view
            assert layout["authorLeftOfTime"], f"{view}: the override moved the time"
            assert layout["metaAboveBubble"], view
            assert layout["isolated"] == {"author": True, "time": True, "bubble": True}, view
            # The next message starts a box of its own, below, untouched.
            below = await reader.page.evaluate(
                """([a, b]) => {
                    const box = id => document.querySelector(`.msg[data-id="${id}"] .bubble`)
                        .getBoundingClientRect();
                    return box(a).bottom <= box(b).top;
                }""",
                [first["id"], follower["id"]],
            )
            assert below, view
            await reader.page.wait_for_function(
                "() => document.querySelectorAll('#presence li').length === 2"
            )
            assert await reader.page.evaluate(PRESENCE_ISOLATED) == [True, True], view
        assert reader.errors == []
    finally:
        await bot.close()
