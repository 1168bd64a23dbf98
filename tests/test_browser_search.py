"""Search in Chromium (issue 16, the sidebar side): the search box, highlighted
results built as text, the status line, the keyboard, "only in this conversation",
and a result opening the conversation at that message (`?at=ID`).

The landing page's marking, view and live feed: tests/test_browser_history.py.
"""

from __future__ import annotations

import re

import pytest

from .browser import new_person

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def wait_status(page, text: str) -> None:
    await page.wait_for_function(
        "t => document.getElementById('search-status').textContent === t", arg=text
    )


async def results(page) -> list[dict]:
    return await page.eval_on_selector_all(
        "#search-results li",
        """items => items.map(li => ({
            where: li.querySelector('.result-where').textContent,
            author: li.querySelector('.result-author').textContent,
            time: li.querySelector('time').textContent,
            text: li.querySelector('.result-text').textContent,
            marks: [...li.querySelectorAll('mark.hit')].map(m => m.textContent),
            elements: li.querySelector('.result-text').children.length,
            href: li.querySelector('a')?.getAttribute('href'),
        }))""",
    )


async def test_search_highlights_the_words_and_a_click_opens_the_message(app, browser, bots):
    bot = await bots("bs_bot")
    hall = await bot.enter("bs_hall")
    for i in range(80):  # enough that the page's newest messages do not hold the hit
        await hall.send(f"filler {i}")
    target = await hall.say("The LAUNCH moved to Tuesday <b>not</b> Monday")
    for i in range(80):
        await hall.send(f"more filler {i}")
    await hall.say("the last one")
    other = await bot.enter("bs_other")
    await other.say("tuesday lunch, no launch")

    ada = await new_person(browser, app.url, "bs_ada")
    page = ada.page
    await page.goto("/chat/")
    await page.fill("#search-input", "tuesday LAUNCH")
    await page.press("#search-input", "Enter")
    await wait_status(page, "2 results")
    found = await results(page)
    assert [r["where"] for r in found] == ["#bs_other", "#bs_hall"]  # newest first
    hit = found[1]
    assert hit["text"] == "The LAUNCH moved to Tuesday <b>not</b> Monday"  # as text
    assert hit["marks"] == ["LAUNCH", "Tuesday"]
    assert hit["elements"] == 2  # the two marks, and no <b> element from the message
    assert hit["author"] == "bs_bot" and hit["time"]
    assert hit["href"] == f"/chat/bs_hall/?at={target['id']}"

    await page.click(f"#search-results a[href='{hit['href']}']")
    await page.wait_for_url(re.compile(rf"/chat/bs_hall/\?at={target['id']}$"))
    assert await page.locator(f"#log .msg[data-id='{target['id']}']").count() == 1
    assert not ada.errors, ada.errors


async def test_search_by_keyboard_only_in_this_conversation(app, browser, bots):
    bot = await bots("bk_bot")
    here = await bot.enter("bk_here")
    said = await here.say("kiwi in here")
    away = await bot.enter("bk_away")
    await away.say("kiwi over there")

    ben = await new_person(browser, app.url, "bk_ben")
    page = ben.page
    await page.goto("/chat/bk_here/")
    await ben.wait_state("connected")
    await page.fill("#search-input", "KIWI")
    await page.press("#search-input", "Enter")
    await wait_status(page, "2 results")
    await page.check("#search-here")  # "Only in this conversation": searched again
    await wait_status(page, "1 result")
    assert [r["text"] for r in await results(page)] == ["kiwi in here"]
    await page.fill("#search-input", "nothing like this")
    await page.press("#search-input", "Enter")
    await wait_status(page, "No results")

    await page.fill("#search-input", "kiwi")
    await page.press("#search-input", "Enter")
    await wait_status(page, "1 result")
    await page.press("#search-input", "ArrowDown")
    focused = await page.evaluate("document.activeElement.getAttribute('href')")
    assert focused == f"/chat/bk_here/?at={said['id']}"
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(rf"\?at={said['id']}$"))
    assert await page.locator(f"#log .msg[data-id='{said['id']}']").count() == 1
    assert not ben.errors, ben.errors
