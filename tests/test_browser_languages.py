"""Issue 18 in a real Chromium with a Russian locale: the pages and the page scripts
speak Russian (plural forms through Intl.PluralRules, dates through Intl.DateTimeFormat).

Screenshots of the room in Russian at 1440 px and 375 px go to
test-artifacts/screenshots/ (room-ru-1440.png, room-ru-375.png).
"""

from __future__ import annotations

import pytest

from .browser import DESKTOP, PHONE, screenshot
from .client import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def russian_page(browser, base: str, viewport=DESKTOP):
    context = await browser.new_context(base_url=base, viewport=viewport, locale="ru-RU")
    page = await context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors


async def text_of(page, selector: str) -> str:
    return (await page.text_content(selector)) or ""


async def test_russian_locale_register_log_in_send_presence_and_unread(app, browser, bots, room):
    page, errors = await russian_page(browser, app.url)
    # Register, in Russian (Chromium's locale sends Accept-Language: ru-RU).
    await page.goto("/register/")
    assert await page.get_attribute("html", "lang") == "ru"
    assert await text_of(page, "h1") == "Создать учётную запись"
    # The page script checks as one types, in Russian too.
    await page.fill("#username", "9ivan")
    await page.fill("#password", "123")
    await page.wait_for_selector("#username-errors li")
    assert "не может начинаться с цифры" in await text_of(page, "#username-errors")
    await page.fill("#username", "ivan_ru")
    await page.fill("#password", PASSWORD)
    await page.fill("#password2", PASSWORD)
    await page.click("form[action='/register/'] button[type=submit]")
    await page.wait_for_url("**/chat/")
    # Log out and back in through the Russian login form.
    await page.click("form[action='/logout/'] button")
    await page.wait_for_url("**/login/")
    assert await text_of(page, "h1") == "Войти"
    await page.fill("#username", "ivan_ru")
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_url("**/chat/")
    # A room with a bot in it: presence in Russian, a message sent.
    other = f"{room}_b"
    await page.goto(f"/chat/{other}/")  # joined once: it is in the sidebar from now on
    await page.wait_for_selector("#status[data-state=connected]")
    bot = await bots("petr")
    bot_sock = await bot.enter(room)
    await page.goto(f"/chat/{room}/")
    await page.wait_for_selector("#status[data-state=connected]")
    assert await text_of(page, "#status") == "Подключено"
    await page.wait_for_function(
        "() => document.getElementById('presence-words').textContent === '2 человека'"
    )
    await page.fill("#message-input", "Привет всем!")
    await page.press("#message-input", "Enter")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#log .msg .bubble')]"
        ".some(b => b.textContent === 'Привет всем!')"
    )
    # Dates and times in Russian (Intl.DateTimeFormat("ru")): "2 дек. 2026 г., 10:30".
    title = await page.get_attribute("#log .msg time", "title")
    assert title and " г." in title, title
    # Unread in another conversation: the sidebar counts in Russian plural forms.
    other_sock = await bot.enter(other)
    for n in range(1, 6):
        await other_sock.say(f"сообщение {n}")
        words = ("непрочитанное сообщение", "непрочитанных сообщения", "непрочитанных сообщений")[
            0 if n == 1 else 1 if n < 5 else 2
        ]
        await page.wait_for_function(
            """([conv, n, words]) => {
                const li = document.querySelector(`#sidebar li[data-conversation="${conv}"]`);
                const badge = li && li.querySelector('[data-unread-badge]');
                return badge && !badge.hidden
                    && badge.querySelector('[data-n]').textContent === String(n)
                    && badge.querySelector('.sr-only').textContent === ' ' + words;
            }""",
            arg=[other, n, words],
        )
    await bot_sock.close()
    await page.wait_for_function(
        "() => document.getElementById('presence-words').textContent === '1 человек'"
    )
    await screenshot(page, "room-ru-1440")
    # The room list: "1 человек здесь" next to the room ivan is in (polled by rooms.js).
    await page.set_viewport_size(PHONE)
    await page.reload()
    await page.wait_for_selector("#status[data-state=connected]")
    await screenshot(page, "room-ru-375")
    assert not errors, errors


async def test_the_switch_turns_a_russian_browser_english_and_back(app, browser):
    page, errors = await russian_page(browser, app.url)
    await page.goto("/login/")
    assert await page.get_attribute("html", "lang") == "ru"
    await page.click("header form[action='/language/'] button[value=en]")
    await page.wait_for_url("**/login/")
    assert await page.get_attribute("html", "lang") == "en"
    assert await text_of(page, "h1") == "Log in"
    await page.click("header form[action='/language/'] button[value=ru]")
    await page.wait_for_url("**/login/")
    assert await text_of(page, "h1") == "Войти"
    assert not errors, errors
