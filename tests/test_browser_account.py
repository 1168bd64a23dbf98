"""Change password and your sessions in a real Chromium, with the keyboard only.

Issue 13, "Session control for people": a second browser context signed out
from the first is logged out (its room socket closes, its page goes to login).
"""

from __future__ import annotations

import pytest

from .browser import (
    DESKTOP,
    PASSWORD,
    new_person,
    screenshot,
    tab_to,
)

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

NEW_PASSWORD = "Another-Pass-77"


async def test_change_password_with_the_keyboard_signs_the_other_browser_out(app, browser):
    laptop = await new_person(browser, app.url, "cp_ann")
    phone = await new_person(browser, app.url, "cp_ann", register=False, login=True)
    await phone.enter_room("cp_room")
    page = laptop.page
    keys = page.keyboard
    await page.goto("/chat/")
    await tab_to(page, ".site-nav a[href='/account/password/']")
    await keys.press("Enter")
    await page.wait_for_url("**/account/password/")
    # A refused change says why, next to the field, and keeps focus there.
    await tab_to(page, "#current_password")
    await keys.type("not-my-password")
    await tab_to(page, "#password")
    await keys.type(NEW_PASSWORD)
    await tab_to(page, "#password2")
    await keys.type(NEW_PASSWORD)
    await keys.press("Enter")
    await page.wait_for_selector("#current_password-errors:has-text('not correct')")
    assert await page.evaluate("document.activeElement.id") == "current_password"
    await keys.type(PASSWORD)
    await tab_to(page, "#password")
    await keys.type(NEW_PASSWORD)
    await tab_to(page, "#password2")
    await keys.type(NEW_PASSWORD)
    await keys.press("Enter")
    await page.wait_for_url("**/account/sessions/")
    flash = await page.text_content("#account-flash")
    assert "Your password was changed. 1 other session was signed out." in flash
    # The other browser's room socket closed (1008) and its page went to login.
    await phone.page.wait_for_url("**/login/**", timeout=5_000)
    await screenshot(page, "account-sessions-after-password-change")
    # The refused attempt's 400 is the only console line.
    assert [e for e in laptop.errors if "status of 400" not in e] == []


async def test_a_session_signed_out_from_the_sessions_page_is_logged_out(app, browser):
    laptop = await new_person(browser, app.url, "ss_bea")
    phone = await new_person(browser, app.url, "ss_bea", register=False, login=True)
    await phone.enter_room("ss_room")
    page = laptop.page
    keys = page.keyboard
    await page.goto("/chat/")
    await tab_to(page, ".site-nav a[href='/account/sessions/']")
    await keys.press("Enter")
    await page.wait_for_url("**/account/sessions/")
    assert await page.locator("#session-list li").count() == 2
    assert await page.locator("#session-list li[aria-current=true]").count() == 1
    await screenshot(page, "account-sessions")
    # Keyboard only: Tab to the other session's "Sign out" and press Enter.
    other = "#session-list li:not([aria-current]) button"
    await tab_to(page, other)
    await keys.press("Enter")
    await page.wait_for_url("**/account/sessions/")
    await page.wait_for_selector("#account-flash:has-text('Signed out')")
    assert await page.locator("#session-list li").count() == 1
    # The phone's room socket was closed with 1008: its page leaves for login.
    await phone.page.wait_for_url("**/login/**", timeout=5_000)
    await phone.page.goto("/chat/")
    assert "/login/" in phone.page.url
    # The laptop is still signed in.
    await page.goto("/chat/")
    assert page.url.endswith("/chat/")
    assert laptop.errors == []


async def test_sign_out_everywhere_else_with_the_keyboard(app, browser):
    laptop = await new_person(browser, app.url, "se_cy")
    phone = await new_person(browser, app.url, "se_cy", register=False, login=True)
    await phone.enter_room("se_room")
    page = laptop.page
    await page.goto("/account/sessions/")
    await tab_to(page, "#end-others")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#account-flash:has-text('1 other session was signed out.')")
    await phone.page.wait_for_url("**/login/**", timeout=5_000)
    await page.set_viewport_size(DESKTOP)
    assert await page.locator("#session-list li").count() == 1
