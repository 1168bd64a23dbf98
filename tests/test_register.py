"""Registration through the form: the username rule, Django's password rules, uniqueness."""

import pytest

from .client import PASSWORD, Client


async def test_register_logs_in_and_redirects_to_rooms(client: Client):
    response = await client.register("alice")
    assert response.status == 302
    assert response.headers["Location"] == "/chat/"
    page = await client.get("/chat/")
    assert page.status == 200
    assert "Logged in as <strong>alice</strong>" in page.body


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
async def test_register_refuses_bad_username(client: Client, username, message):
    response = await client.register(username)
    assert response.status == 400
    assert message in response.text


@pytest.mark.parametrize("username", ["a", "_", "A_1", "x" * 32])
async def test_register_accepts_edge_usernames(client: Client, username):
    response = await client.register(username, password="Sturdy-Pass-42")
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
async def test_register_enforces_password_rules(client: Client, password, password2, message):
    response = await client.register("bob_smith", password=password, password2=password2)
    assert response.status == 400
    assert message in response.text


async def test_register_keeps_username_but_not_password_on_error(client: Client):
    response = await client.register("carol", password="short", password2="short")
    body = response.body
    assert 'value="carol"' in body
    assert "short" not in body.split("<form", 1)[1].split("</form>")[0].replace("too short", "")


async def test_register_refuses_duplicate_name_in_other_case(client: Client):
    assert (await client.register("Dave")).status == 302
    await client.logout()
    response = await client.register("dAVE")
    assert response.status == 400
    assert "A user with that username already exists." in response.text


async def test_password_of_exactly_72_bytes_is_accepted(client: Client):
    password = "Zq-" + "x" * 69  # 72 ASCII bytes, not common, not numeric
    assert (await client.register("erin", password=password)).status == 302
    await client.logout()
    assert (await client.login("erin", password=password)).status == 302


async def test_register_works_on_both_stores(app_factory, any_store_url):
    client = await app_factory(any_store_url)
    assert (await client.register("frank", PASSWORD)).status == 302
    await client.logout()
    assert (await client.login("FRANK", PASSWORD)).status == 302
