"""Registration through the form: the username rule, Django's password rules, uniqueness."""

import pytest

from .conftest import PASSWORD, AuthActions, page_text


async def test_register_logs_in_and_redirects_to_rooms(auth: AuthActions):
    response = await auth.register("alice")
    assert response.status == 302
    assert response.headers["Location"] == "/chat/"
    page = await auth.client.get("/chat/")
    assert page.status == 200
    assert "Logged in as <strong>alice</strong>" in await page.text()


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("", "Enter a username."),
        ("1alice", "not starting with a digit"),
        ("al ice", "letters, digits and _"),
        ("alice!", "letters, digits and _"),
        ("a" * 33, "1 to 32 characters"),
        ("élise", "letters, digits and _"),
    ],
)
async def test_register_refuses_bad_username(auth: AuthActions, username, message):
    response = await auth.register(username)
    assert response.status == 400
    assert message in await page_text(response)


@pytest.mark.parametrize("username", ["a", "_", "A_1", "x" * 32])
async def test_register_accepts_edge_usernames(auth: AuthActions, username):
    response = await auth.register(username, password="Sturdy-Pass-42")
    assert response.status == 302


@pytest.mark.parametrize(
    ("password", "password2", "message"),
    [
        ("Sh0rt!", None, "too short. It must contain at least 8 characters"),
        ("83920174652", None, "entirely numeric"),
        ("password1", None, "too common"),
        ("Qwertyuiop", None, "too common"),
        ("bob_smithy1", None, "too similar to the username"),
        ("Sturdy-Pass-42", "Sturdy-Pass-43", "two password fields didn't match"),
        ("€" * 25, None, "too long: at most 72 bytes"),
    ],
)
async def test_register_enforces_password_rules(auth: AuthActions, password, password2, message):
    response = await auth.register("bob_smith", password=password, password2=password2)
    assert response.status == 400
    assert message in await page_text(response)


async def test_register_keeps_username_but_not_password_on_error(auth: AuthActions):
    response = await auth.register("carol", password="short", password2="short")
    body = await response.text()
    assert 'value="carol"' in body
    assert "short" not in body.split("<form", 1)[1].split("</form>")[0].replace("too short", "")


async def test_register_refuses_duplicate_name_in_other_case(auth: AuthActions, client):
    assert (await auth.register("Dave")).status == 302
    await auth.logout()
    response = await auth.register("dAVE")
    assert response.status == 400
    assert "A user with that username already exists." in await page_text(response)


async def test_password_of_exactly_72_bytes_is_accepted(auth: AuthActions):
    password = "Zq-" + "x" * 69  # 72 ASCII bytes, not common, not numeric
    assert (await auth.register("erin", password=password)).status == 302
    await auth.logout()
    assert (await auth.login("erin", password=password)).status == 302


async def test_register_works_on_both_stores(app_factory, any_store_url):
    client = await app_factory(any_store_url)
    actions = AuthActions(client)
    assert (await actions.register("frank", PASSWORD)).status == 302
    await actions.logout()
    assert (await actions.login("FRANK", PASSWORD)).status == 302
