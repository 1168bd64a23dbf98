"""Page frame: security headers, friendly error pages, static files, the header bar."""

import re

import pytest

from chatapp import names
from chatapp.accounts import passwords

from .client import Client


async def test_root_redirects_to_rooms(client):
    response = await client.get("/")
    assert response.status == 302
    assert response.headers["Location"] == "/chat/"


@pytest.mark.parametrize("path", ["/login/", "/static/css/app.css", "/nowhere", "/healthz"])
async def test_security_headers_on_every_response(client, path):
    response = await client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


async def test_unknown_page_is_a_friendly_404(client):
    response = await client.get("/nowhere")
    assert response.status == 404
    assert response.content_type == "text/html"
    assert "There is nothing at this address." in response.text


async def test_no_inline_script_in_pages(client: Client):
    await client.register("nina")
    for path in ("/login/", "/register/", "/chat/"):
        body = (await client.get(path)).body
        assert "<script>" not in body
        assert " on" + "click=" not in body


async def test_header_shows_user_and_logout(client: Client):
    await client.register("olga")
    body = (await client.get("/chat/")).body
    assert "Logged in as <strong>olga</strong>" in body
    assert 'action="/logout/"' in body
    assert 'href="/admin/"' not in body


async def test_rooms_page_is_html_with_lang(client: Client):
    await client.register("pete")
    body = (await client.get("/chat/")).body
    assert '<html lang="en">' in body
    assert "No rooms yet" in body


async def test_room_form_rejects_bad_name_with_400(client: Client):
    await client.register("quinn")
    token = await client.csrf("/chat/")
    response = await client.post("/chat/", data={"room": "9 bad!", "csrf_token": token})
    assert response.status == 400
    assert "Room names are 1 to 64 characters" in response.text


async def test_room_form_redirects_to_room(client: Client):
    await client.register("rita")
    token = await client.csrf("/chat/")
    response = await client.post("/chat/", data={"room": "lobby", "csrf_token": token})
    assert response.status == 302
    assert response.headers["Location"] == "/chat/lobby/"


async def test_username_is_escaped_in_pages(client: Client):
    response = await client.register("<b>x</b>")
    body = response.body
    assert "<b>x</b>" not in body
    assert "&lt;b&gt;x&lt;/b&gt;" in body


async def test_metrics_served_on_loopback(client):
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"


def _input_tag(page: str, input_id: str) -> str:
    match = re.search(rf'<input id="{input_id}"[^>]*>', page)
    assert match, f"no #{input_id}"
    return match.group(0)


async def test_forms_carry_the_limits_the_server_checks(client: Client):
    register = (await client.get("/register/")).body
    username = _input_tag(register, "username")
    assert f'data-max-length="{names.USERNAME_MAX}"' in username
    assert f'maxlength="{names.USERNAME_MAX}"' in username
    assert f'pattern="{names.USERNAME_RE.pattern}"' in username
    password = _input_tag(register, "password")
    assert f'data-min-length="{passwords.MIN_LENGTH}"' in password
    assert f'data-max-bytes="{passwords.MAX_BYTES}"' in password
    await client.register("nina")
    rooms = (await client.get("/chat/")).body
    room = _input_tag(rooms, "room-name")
    assert f'data-max-length="{names.ROOM_MAX}"' in room
    assert f'maxlength="{names.ROOM_MAX}"' in room
    assert f'pattern="{names.ROOM_RE.pattern}"' in room
