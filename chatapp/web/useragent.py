"""A short, readable summary of a User-Agent header: "Firefox 128 on Linux".

Only words from the tables below and a major version number of digits come
out, so whatever the header holds, the summary is safe to store and show.
"""

from __future__ import annotations

import re

MAX_HEADER = 512  # characters of the header looked at

# (token in the header, name shown); the first that matches wins, so the
# browsers that also claim "Chrome" or "Safari" come before those.
_BROWSERS = (
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Vivaldi/", "Vivaldi"),
    ("YaBrowser/", "Yandex Browser"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),  # Safari's own version lives in Version/
    ("curl/", "curl"),
    ("Python/", "Python"),
)
_SYSTEMS = (
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)
_VERSION = re.compile(r"(\d{1,5})")


def summary(header: str | None) -> str:
    """E.g. "Chrome 126 on Windows"; "Unknown browser" when nothing is recognised."""
    text = (header or "")[:MAX_HEADER]
    browser = ""
    for token, name in _BROWSERS:
        at = text.find(token)
        if at >= 0:
            version = _VERSION.match(text, at + len(token))
            browser = f"{name} {version.group(1)}" if version else name
            break
    if not browser and "Safari/" in text:
        browser = "Safari"
    system = next((name for token, name in _SYSTEMS if token in text), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or (f"A browser on {system}" if system else "Unknown browser")
