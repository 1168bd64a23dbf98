"""Issue 18: English and Russian, chosen per request (PROTOCOL.md "Languages")."""

from __future__ import annotations

import re

import pytest
from yarl import URL

from chatapp import i18n
from tests.client import Client
from tests.test_admin import create_user, logged_in, make_room

RU = {"Accept-Language": "ru"}
LANG_RE = re.compile(r'<html lang="([a-z]+)">')


def lang_of(body: str) -> str:
    match = LANG_RE.search(body)
    assert match, "no <html lang>"
    return match.group(1)


def speak_russian(client: Client) -> Client:
    client.http.cookie_jar.update_cookies({i18n.COOKIE: "ru"}, URL(client.base))
    return client


# -- choosing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, "ru", "ru"),
        (None, "ru-RU,ru;q=0.9,en;q=0.8", "ru"),
        (None, "ru;q=0.5, en;q=0.9", "en"),
        (None, "de, fr;q=0.9, ru;q=0.1", "ru"),
        (None, "en;q=0, ru", "ru"),
        (None, None, "en"),
        (None, "", "en"),
        (None, ";;;q=;,,=ru", "en"),
        (None, "ru;q=abc", "en"),
        (None, "x" * 5000, "en"),
        ("ru", "en", "ru"),
        ("en", "ru", "en"),
        ("klingon", "ru", "ru"),
        ("\x00garbage", None, "en"),
    ],
)
def test_negotiate(cookie, header, expected):
    assert i18n.negotiate(cookie, header) == expected


async def test_pages_in_russian_for_accept_language_ru(client: Client):
    for path in ("/login/", "/register/"):
        page = await client.get(path, headers=RU)
        assert page.status == 200
        assert lang_of(page.text) == "ru"
    assert "Войти" in (await client.get("/login/", headers=RU)).text
    assert "Создать учётную запись" in (await client.get("/register/", headers=RU)).text
    missing = await client.get("/nowhere/", headers=RU)
    assert missing.status == 404
    assert lang_of(missing.text) == "ru"
    assert "Страница не найдена" in missing.text
    english = await client.get("/login/")
    assert lang_of(english.text) == "en" and "Log in" in english.text


async def test_weights_count_and_cookie_beats_header(client: Client):
    page = await client.get("/login/", headers={"Accept-Language": "ru;q=0.5, en;q=0.9"})
    assert lang_of(page.text) == "en" and "Log in" in page.text
    speak_russian(client)
    page = await client.get("/login/", headers={"Accept-Language": "en"})
    assert lang_of(page.text) == "ru"


async def test_garbage_cookie_and_header_give_english(client: Client):
    client.http.cookie_jar.update_cookies({i18n.COOKIE: "zz-garbage"}, URL(client.base))
    page = await client.get("/login/", headers={"Accept-Language": "q=;;,*;q=x,\t"})
    assert page.status == 200 and lang_of(page.text) == "en"


async def test_logged_in_pages_in_russian(client: Client, redis_url):
    speak_russian(client)
    assert (await client.register()).status == 302
    rooms = await client.get("/chat/")
    assert lang_of(rooms.text) == "ru"
    assert "Создать комнату или войти в неё" in rooms.text
    assert f"Вы вошли как <strong>{client.name}</strong>" in rooms.text
    room = await client.get("/chat/lobby/")
    assert room.status == 200 and lang_of(room.text) == "ru"
    assert "Сейчас здесь" in room.text and "Отправить" in room.text
    forbidden = await client.get("/admin/")
    assert forbidden.status == 403 and lang_of(forbidden.text) == "ru"
    assert "только суперпользователям" in forbidden.text


async def test_admin_page_in_russian_with_plural_counts(people, aiohttp_server, redis_url):
    from chatapp.app import create_app
    from tests.conftest import make_config

    server = await aiohttp_server(create_app(make_config(redis_url)))
    boss = speak_russian(people(str(server.make_url("")).rstrip("/"), "boss"))
    await logged_in(boss, redis_url, superuser=True)
    await make_room(redis_url, "lobby")
    page = await boss.get("/admin/")
    assert page.status == 200 and lang_of(page.text) == "ru"
    assert "Администрирование" in page.text and "Пользователи" in page.text
    assert "<td>открытая</td>" in page.text
    # A private room's members, counted in every Russian plural form.
    made = await boss.submit("/chat/", {"room": "secret", "private": "1"}, token_from="/chat/")
    assert made.status == 302
    members = 1  # the owner
    for n in (1, 2, 5, 11, 21, 22, 25):
        while members < n:
            name = f"member{members}"
            await create_user(redis_url, name)
            added = await boss.submit(
                "/chat/secret/members/", {"username": name}, token_from="/chat/secret/"
            )
            assert added.status == 302, added.text
            members += 1
        row = (await boss.get("/admin/")).text.split('<tr data-room="secret">')[1]
        form = ("участник", "участника", "участников")[i18n.translations("ru").plural(n)]
        assert f"<td>закрытая, {n} {form}</td>" in row
        assert form == {1: "участник", 2: "участника", 22: "участника", 21: "участник"}.get(
            n, "участников"
        )


# -- the switch --------------------------------------------------------------------


async def test_post_language_sets_the_cookie_for_a_year_and_redirects_same_site(client: Client):
    token = await client.csrf("/login/")
    response = await client.post(
        "/language/", data={"lang": "ru", "csrf_token": token, "next": "/register/?x=1"}
    )
    assert response.status == 302 and response.location == "/register/?x=1"
    cookie = next(h for h in response.headers.getall("Set-Cookie") if h.startswith("chatapp_lang="))
    assert cookie.startswith("chatapp_lang=ru;") and "Max-Age=31536000" in cookie
    assert lang_of((await client.get("/login/")).text) == "ru"
    for evil in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = await client.post(
            "/language/", data={"lang": "en", "csrf_token": token, "next": evil}
        )
        assert response.status == 302 and response.location == "/chat/"
    response = await client.post("/language/", data={"lang": "xx", "csrf_token": token})
    assert response.location == "/chat/"
    assert lang_of((await client.get("/login/")).text) == "en"


async def test_post_language_needs_csrf(client: Client):
    response = await client.post("/language/", data={"lang": "ru"})
    assert response.status == 403
    assert not any(h.startswith("chatapp_lang=") for h in response.headers.getall("Set-Cookie", []))


async def test_the_switch_is_on_every_page_and_the_login_page(client: Client):
    page = (await client.get("/login/")).text
    assert page.count('action="/language/"') == 2  # header and login card
    assert 'name="lang" value="ru"' in page
    russian = (await client.get("/login/", headers=RU)).text
    assert 'name="lang" value="en"' in russian


# -- forms -------------------------------------------------------------------------


async def test_registration_rules_in_russian(client: Client):
    speak_russian(client)
    page = await client.register("9bad", "123", "124")
    assert page.status == 400
    text = page.text
    assert "Имя пользователя — от 1 до 32 символов" in text
    assert "Пароль слишком короткий: нужно хотя бы 8 символов." in text
    assert "Пароль состоит только из цифр." in text
    assert "Этот пароль слишком распространён." in text
    assert "Пароли не совпадают." in text
    similar = await client.register("marianne", "marianne1", "marianne1")
    assert "Пароль слишком похож на имя пользователя." in similar.text
    long = await client.register("longpw", "ж" * 40, "ж" * 40)
    assert "не больше 72 байт (этот занимает 80)" in long.text
    empty = await client.register("", "", "")
    assert "Введите имя пользователя." in empty.text and "Введите пароль." in empty.text


async def test_bad_login_and_throttling_in_russian(app_factory, redis_url):
    client = speak_russian(await app_factory(redis_url, accounts={"login_failures_per_user": 2}))
    bad = await client.login("nobody_here", "wrong-password")
    assert bad.status == 400
    assert "Введите правильные имя пользователя и пароль." in bad.text
    await client.login("nobody_here", "wrong-password")
    throttled = await client.login("nobody_here", "wrong-password")
    assert throttled.status == 429
    minutes = int(re.search(r"через (\d+) минут", throttled.text).group(1))
    form = ("минуту", "минуты", "минут")[i18n.translations("ru").plural(minutes)]
    assert f"Слишком много неудачных попыток входа. Попробуйте снова через {minutes} {form}." in (
        throttled.text
    )
    assert minutes == 15 and form == "минут"  # the window is 15 minutes


# -- plural forms ------------------------------------------------------------------

FORMS = {
    1: ("сообщение", "человек"),
    2: ("сообщения", "человека"),
    5: ("сообщений", "человек"),
    11: ("сообщений", "человек"),
    21: ("сообщение", "человек"),
    22: ("сообщения", "человека"),
    25: ("сообщений", "человек"),
}


@pytest.mark.parametrize("n", sorted(FORMS))
def test_russian_plural_forms(n):
    """The catalog's plural rule and forms: gettext ngettext as the templates call it."""
    ru = i18n.translations("ru")
    message, person = FORMS[n]
    assert ru.ngettext("%(num)d person", "%(num)d people", n) % {"num": n} == f"{n} {person}"
    assert ru.ngettext("person here", "people here", n) == f"{person} здесь"
    unread = ru.ngettext("unread", "unread", n)
    adjective = {"сообщение": "непрочитанное"}.get(message, "непрочитанных")
    assert unread == f"{adjective} {message}"
    token = i18n.activate("ru")
    try:
        assert i18n.ngettext("{n} session ended", "{n} sessions ended", n).format(n=n) == (
            f"{'завершён' if message == 'сообщение' else 'завершено'} {n} "
            + {"сообщение": "сеанс", "сообщения": "сеанса"}.get(message, "сеансов")
        )
    finally:
        i18n.reset(token)


async def test_presence_and_unread_render_russian_plurals(people, aiohttp_server, redis_url):
    from chatapp.app import create_app
    from tests.conftest import make_config

    server = await aiohttp_server(
        create_app(make_config(redis_url, chat={"rate_limit_messages": 1_000_000}))
    )
    base = str(server.make_url("")).rstrip("/")
    ann = speak_russian(people(base, "ann"))
    bob = people(base, "bob")
    await ann.sign_in()
    await bob.sign_in()
    # bob is in lobby: ann's room list says "1 человек здесь"
    sock = await bob.enter("lobby")
    page = await ann.get("/chat/")
    assert re.search(r"data-count>1</span>\s*<span data-people>человек здесь", page.text)
    # ann visits lobby once (a read marker), then bob writes 2, 5... messages she has not read
    ann_sock = await ann.enter("lobby")
    await ann_sock.close()
    page = await ann.get("/chat/lobby/")
    assert "1 человек" in page.text  # the room page's presence words
    sent = 0
    for n in (2, 5, 21):
        while sent < n:
            await sock.say(f"hello {sent}")
            sent += 1
        rooms = await ann.get("/chat/")
        words = {
            2: "непрочитанных сообщения",
            5: "непрочитанных сообщений",
            21: "непрочитанное сообщение",
        }
        assert f'<span data-n>{n}</span><span class="sr-only"> {words[n]}</span>' in rooms.text


# -- error frames ------------------------------------------------------------------


async def test_error_frame_details_speak_the_sockets_language(start_server):
    """A socket opened with a Russian cookie gets Russian details; the codes are the contract's."""
    base = await start_server(chat={"max_message_length": 21, "max_sockets_per_user": 3})
    async with Client(base, "ann") as ann, Client(base, "bob") as bob:
        speak_russian(ann)
        sock = await ann.join("lobby")
        await sock.ws.send_str("{not json")
        error = await sock.next("error")
        assert error["code"] == "bad_json"
        assert error["detail"] == "Фреймы должны быть текстом в формате JSON."
        await sock.send("   ")
        error = await sock.next("error")
        assert (error["code"], error["detail"]) == ("empty_message", "Сообщение пустое.")
        await sock.send("x" * 22, client_id="long")
        error = await sock.next("error")
        assert error["code"] == "message_too_long"
        assert error["detail"] == "Сообщение может быть не длиннее 21 символа (отправлено 22)."
        await sock.send_frame(type="dance")
        error = await sock.next("error")
        assert (error["code"], error["detail"]) == (
            "unknown_type",
            "Неизвестный тип фрейма: 'dance'.",
        )
        await sock.ws.send_bytes(b"\x00")
        error = await sock.next("error")
        assert error["code"] == "bad_frame" and error["detail"].startswith("Двоичные фреймы")
        # Someone else's message: only its author edits it.
        theirs = await (await bob.join("lobby")).say("bob's words")
        await sock.send_frame(type="edit", id=theirs["id"], text="mine now")
        error = await sock.next("error")
        assert error["code"] == "forbidden"
        assert error["detail"] == "Изменить сообщение может только его автор."
        # The same mistakes on an English socket: the same codes, English details.
        english = await bob.join("lobby")
        await english.ws.send_str("{not json")
        error = await english.next("error")
        assert (error["code"], error["detail"]) == ("bad_json", "Frames must be JSON text.")
        # Past the socket quota: the refusal's count takes the right plural form.
        for _ in range(2):
            await ann.join("lobby")
        refused = await ann.join("lobby")
        error = await refused.next("error")
        assert error["code"] == "too_many_sockets"
        assert error["detail"].startswith("У вас уже открыто 3 подключения к чату")


def test_msg_translates_later_with_its_parameters():
    msg = i18n.nMsg(
        "A message takes at most {n} different reaction.",
        "A message takes at most {n} different reactions.",
        21,
    )
    assert msg == "A message takes at most 21 different reactions."
    assert i18n.in_language(msg, "ru") == "У сообщения может быть не больше 21 разной реакции."
    assert i18n.in_language(msg, "en") == msg
    assert i18n.in_language("Not in any catalog.", "ru") == "Not in any catalog."


# -- the page scripts' catalog -----------------------------------------------------


async def test_script_catalog_serves_translations_and_the_plural_rule(client: Client):
    response = await client.get("/i18n/ru.json")
    assert response.status == 200 and response.content_type == "application/json"
    catalog = response.json()
    assert catalog["lang"] == "ru" and catalog["forms"] == 3
    # Intl.PluralRules("ru") categories -> gettext form index.
    assert catalog["plural"] == {"one": 0, "few": 1, "many": 2}
    assert catalog["messages"]["Connected"] == "Подключено"
    assert catalog["messages"]["{n} new message ↓"] == [
        "{n} новое сообщение ↓",
        "{n} новых сообщения ↓",
        "{n} новых сообщений ↓",
    ]
    english = (await client.get("/i18n/en.json")).json()
    assert english["messages"] == {} and english["plural"] == {"one": 0, "other": 1}
    assert (await client.get("/i18n/xx.json")).status == 404
    assert "script-src 'self';" in response.headers["Content-Security-Policy"]
    assert not response.headers.getall("Set-Cookie", [])  # no session for a catalog


async def test_room_list_activity_in_russian(client: Client):
    speak_russian(client)
    await client.register()
    sock = await client.enter("lobby")
    await sock.say("привет")
    page = await client.get("/chat/")
    assert "активна только что" in page.text


async def test_the_500_page_in_russian(aiohttp_client, redis_url):
    """A handler that fails: the error page middleware answers 500 in the request's language."""
    from aiohttp import web

    from chatapp.app import create_app
    from tests.conftest import make_config

    app = create_app(make_config(redis_url))

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_get("/broken/", broken)
    client = Client(await aiohttp_client(app))
    page = await client.get("/broken/", headers=RU)
    assert page.status == 500 and lang_of(page.text) == "ru"
    assert "Что-то пошло не так" in page.text and "a bug" not in page.text
    english = await client.get("/broken/")
    assert english.status == 500 and "Something went wrong" in english.text


async def test_search_errors_shown_on_the_page_are_in_russian(client: Client):
    speak_russian(client)
    await client.register()
    empty = await client.get("/api/search?q=%20")
    assert empty.status == 400 and empty.json()["error"] == "Введите слово для поиска."
    many = await client.get("/api/search?q=" + "+".join(f"w{i}" for i in range(51)))
    assert many.json()["error"] == "В поисковом запросе может быть не больше 50 слов."
