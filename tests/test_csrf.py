"""Every form POST needs the session's CSRF token."""

import pytest

from .conftest import PASSWORD, AuthActions, page_text


@pytest.mark.parametrize("path", ["/login/", "/register/"])
async def test_post_without_csrf_is_forbidden(client, path):
    await client.get(path)
    response = await client.post(
        path, data={"username": "x", "password": PASSWORD, "password2": PASSWORD}
    )
    assert response.status == 403
    assert "CSRF check failed" in await page_text(response)


async def test_post_with_wrong_csrf_is_forbidden(client):
    await client.get("/login/")
    response = await client.post(
        "/login/", data={"username": "x", "password": "y", "csrf_token": "forged"}
    )
    assert response.status == 403


async def test_token_of_another_session_is_refused(client, aiohttp_client):
    other = AuthActions(await aiohttp_client(client.server))
    token = await other.csrf("/login/")
    await client.get("/login/")
    response = await client.post(
        "/login/", data={"username": "x", "password": "y", "csrf_token": token}
    )
    assert response.status == 403


async def test_logout_without_csrf_is_forbidden_and_keeps_session(auth: AuthActions):
    await auth.register("hank")
    response = await auth.client.post("/logout/", data={})
    assert response.status == 403
    assert (await auth.client.get("/chat/", allow_redirects=False)).status == 200


async def test_every_form_carries_a_token(auth: AuthActions):
    for path in ("/login/", "/register/"):
        assert 'name="csrf_token" value="' in await (await auth.client.get(path)).text()
    await auth.register("ivy")
    page = await (await auth.client.get("/chat/")).text()
    assert page.count('name="csrf_token"') == page.count("<form")
