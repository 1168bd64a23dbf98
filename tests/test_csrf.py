"""Every form POST needs the session's CSRF token."""

import pytest

from .client import PASSWORD, Client


@pytest.mark.parametrize("path", ["/login/", "/register/"])
async def test_post_without_csrf_is_forbidden(client, path):
    await client.get(path)
    response = await client.post(
        path, data={"username": "x", "password": PASSWORD, "password2": PASSWORD}
    )
    assert response.status == 403
    assert "CSRF check failed" in response.text


async def test_post_with_wrong_csrf_is_forbidden(client):
    await client.get("/login/")
    response = await client.post(
        "/login/", data={"username": "x", "password": "y", "csrf_token": "forged"}
    )
    assert response.status == 403


async def test_token_of_another_session_is_refused(client):
    async with client.another() as other:
        token = await other.csrf("/login/")
    await client.get("/login/")
    response = await client.post(
        "/login/", data={"username": "x", "password": "y", "csrf_token": token}
    )
    assert response.status == 403


async def test_logout_without_csrf_is_forbidden_and_keeps_session(client: Client):
    await client.register("hank")
    response = await client.post("/logout/", data={})
    assert response.status == 403
    assert (await client.get("/chat/")).status == 200


async def test_every_form_carries_a_token(client: Client):
    for path in ("/login/", "/register/"):
        assert 'name="csrf_token" value="' in (await client.get(path)).body
    await client.register("ivy")
    page = (await client.get("/chat/")).body
    assert page.count('name="csrf_token"') == page.count("<form")
