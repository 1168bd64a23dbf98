"""Helpers for the browser tests: Chromium through Playwright, and a person using it.

`BrowserPerson` is the one client that is a browser page; anything that only
speaks HTTP and the socket (a bot in the room) is a `tests/client.py:Client`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .client import PASSWORD
from .support import ROOT, AppProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 375, "height": 812}


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


def require_browser() -> None:
    """Skip with the reason, or fail when CHATAPP_REQUIRE_BROWSER=1 (CI)."""
    reason = browser_unavailable()
    if reason is None:
        return
    if os.environ.get("CHATAPP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests are required (CHATAPP_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(f"browser tests need Chromium: {reason}")


# The app processes of the browser tests: people type faster than the rate limit allows.
APP_ENV = {"CHATAPP_CHAT_RATE_LIMIT_MESSAGES": "100000", "CHATAPP_SERVER_ACCESS_LOG": "false"}


def fresh_app(redis_server, **env: str) -> AppProcess:
    """An app process on the (flushed) shared Redis, for one module's browser tests."""
    client = redis_server.client()
    client.flushall()
    client.close()
    return AppProcess(redis_server.url, **{**APP_ENV, **env}).start()


@contextlib.asynccontextmanager
async def chromium_browser():
    """A headless Debian Chromium driven by Playwright, closed on the way out."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class BrowserPerson:
    """One person in Chromium: a browser context of their own (own cookies) and its page."""

    name: str
    context: object
    page: object
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def register(self) -> None:
        page = self.page
        await page.goto("/register/")
        await page.fill("#username", self.name)
        await page.fill("#password", PASSWORD)
        await page.fill("#password2", PASSWORD)
        await page.click("button[type=submit]:has-text('Register')")
        await page.wait_for_url("**/chat/")

    async def login(self) -> None:
        page = self.page
        await page.goto("/login/")
        await page.fill("#username", self.name)
        await page.fill("#password", PASSWORD)
        await page.press("#password", "Enter")
        await page.wait_for_url("**/chat/")

    async def enter_room(self, room: str) -> None:
        page = self.page
        if not page.url.endswith("/chat/"):
            await page.goto("/chat/")
        await page.fill("#room-name", room)
        await page.press("#room-name", "Enter")
        await page.wait_for_url(f"**/chat/{room}/")
        await self.wait_state("connected")

    async def wait_state(self, state: str, timeout: float = 15_000) -> None:
        await self.page.wait_for_selector(f"#status[data-state={state}]", timeout=timeout)

    async def send(self, text: str) -> None:
        """Type into the composer, press Enter, wait for the server's echo to clear it."""
        page = self.page
        await page.fill("#message-input", text)
        await page.press("#message-input", "Enter")
        await page.wait_for_function(
            "() => document.getElementById('message-input').value === ''", timeout=5_000
        )

    async def wait_for_text(self, text: str, timeout: float = 5_000) -> None:
        await self.page.wait_for_function(
            "t => [...document.querySelectorAll('#log .msg .bubble')]"
            ".some(b => b.textContent === t)",
            arg=text,
            timeout=timeout,
        )

    async def messages(self) -> list[dict]:
        """The log as the page shows it: id, author, text, mine."""
        return await self.page.eval_on_selector_all(
            "#log .msg",
            """items => items.map(li => ({
                id: Number(li.dataset.id), user: li.dataset.user,
                text: li.querySelector('.bubble').textContent,
                mine: li.classList.contains('mine')}))""",
        )

    async def presence(self) -> list[str]:
        return await self.page.eval_on_selector_all(
            "#presence li", "items => items.map(li => li.firstChild.textContent)"
        )


async def new_person(
    browser, base: str, name: str, viewport=None, register=True, login=False
) -> BrowserPerson:
    context = await browser.new_context(base_url=base, viewport=viewport or DESKTOP)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    person = BrowserPerson(name, context, page)
    page.on("dialog", lambda dialog: _record_dialog(person, dialog))
    page.on("pageerror", lambda error: person.errors.append(str(error)))
    page.on(
        "console",
        lambda msg: person.errors.append(msg.text) if msg.type == "error" else None,
    )
    if login:
        await person.login()
    elif register:
        await person.register()
    return person


async def _record_dialog(person: BrowserPerson, dialog) -> None:
    person.dialogs.append(dialog.message)
    await dialog.dismiss()


async def tab_to(page, selector: str, limit: int = 25) -> None:
    """Press Tab until the focused element matches `selector` (keyboard only)."""
    for _ in range(limit):
        if await page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


async def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
