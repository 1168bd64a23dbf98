"""Bad input, fuzzed: random socket frames and random form posts to a real app process.

Hypothesis draws the cases (derandomized: the same cases on every run, no
example database), a few hundred per test. Every case must get a sane
answer: never a 5xx, never an unhandled exception in the server's log, and
the socket and the server keep serving afterwards.
"""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import quote, urlencode

import aiohttp
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chatapp.accounts.users import Accounts
from chatapp.chat.frames import MAX_CLIENT_ID_LENGTH

from .client import PASSWORD, Client, Socket
from .support import AppProcess, RedisServer

pytestmark = [pytest.mark.failure, pytest.mark.multiprocess]

MAX_FRAME = 65536  # chat.max_frame_bytes (default)
MAX_LENGTH = 4000  # chat.max_message_length (default)
ERROR_CODES = {"bad_json", "bad_frame", "unknown_type", "empty_message", "message_too_long"}
LOG_PROBLEMS = ("Traceback", "Error handling request", "unhandled error")

FUZZ = settings(
    max_examples=500,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module")
def fuzz_app():
    """One app process on its own Redis for the module; its log is checked after each test."""
    redis = RedisServer().start()
    app = AppProcess(
        redis.url,
        CHATAPP_CHAT_RATE_LIMIT_MESSAGES="1000000",
        # Random logins fail by the hundred; the fuzzer must still be able to log back in.
        CHATAPP_ACCOUNTS_LOGIN_FAILURES_PER_USER="1000000",
        CHATAPP_ACCOUNTS_LOGIN_FAILURES_PER_ADDRESS="1000000",
    ).start()
    yield app
    app.stop()
    redis.cleanup()


def assert_clean_log(app: AppProcess) -> None:
    log = app.log()
    for problem in LOG_PROBLEMS:
        assert problem not in log, log[log.find(problem) - 2000 : log.find(problem) + 2000]


# -- socket frames -------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
control_text = st.text(st.characters(max_codepoint=0x9F, categories=["Cc"]), min_size=1)
texts = st.text() | control_text | st.text(min_size=MAX_LENGTH - 2, max_size=MAX_LENGTH + 2)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "MESSAGE", "", "presence", "history"]) | json_values,
        "text": texts | json_values,
        "message": texts | json_values,
        "client_id": st.text(max_size=MAX_CLIENT_ID_LENGTH + 10) | json_values,
    },
)


@st.composite
def raw_json(draw) -> str:
    """JSON the standard library would not write: huge numbers, deep nesting, odd tokens."""
    kind = draw(st.sampled_from(["digits", "exponent", "nested", "objects", "tokens", "dupes"]))
    if kind == "digits":
        digits = "9" * draw(st.integers(1, 20000))
        return '{"type": "message", "text": "n", "client_id": ' + digits + "}"
    if kind == "exponent":
        number = draw(st.sampled_from(["1e999", "-1e999", "1e-999", "123456789e308"]))
        return '{"type": "message", "text": ' + number + "}"
    if kind == "nested":
        depth = draw(st.integers(1, 40000))  # past 32768: over chat.max_frame_bytes
        return "[" * depth + "]" * depth
    if kind == "objects":
        depth = draw(st.integers(1, 6000))
        return '{"a":' * depth + "1" + "}" * depth
    if kind == "tokens":
        return draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "null", "", " ", "{", "}"]))
    text = json.dumps(draw(st.text()))
    return '{"type": "message", "text": "first", "text": ' + text + "}"


chat_messages = st.fixed_dictionaries(
    {"type": st.just("message"), "text": texts},
    optional={"client_id": st.text(max_size=MAX_CLIENT_ID_LENGTH + 10)},
)
socket_frames = st.one_of(
    st.tuples(st.just("text"), st.builds(json.dumps, chat_messages)),
    st.tuples(st.just("text"), st.builds(json.dumps, json_values)),
    st.tuples(st.just("text"), st.builds(json.dumps, message_like)),
    st.tuples(st.just("text"), raw_json()),
    st.tuples(st.just("text"), st.text()),
    st.tuples(st.just("bytes-as-text"), st.binary(min_size=1)),  # often invalid UTF-8
    st.tuples(st.just("binary"), st.binary()),
)


def expected_text(raw: str) -> str | None:
    """The text a frame carries if the server should store it (None: an error is due)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    return data["text"] if "text" in data else data.get("message")


class FuzzSocket:
    def __init__(self, person: Client) -> None:
        self.person = person
        self.sock: Socket | None = None
        self.cases = 0
        self.outcomes: dict[str, int] = {}

    async def open(self) -> Socket:
        if self.sock is None or self.sock.ws.closed:
            self.sock = await self.person.join("fuzz")
            assert (await self.sock.next("history"))["type"] == "history"
        return self.sock

    async def answer(self) -> aiohttp.WSMessage | dict:
        """The next message or error frame (presence skipped), or the close."""
        while True:
            msg = await asyncio.wait_for(self.sock.ws.receive(), 10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return msg
            frame = json.loads(msg.data)
            if frame["type"] in ("message", "error"):
                return frame

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@pytest.fixture
async def fuzz_socket(fuzz_app, figure):
    async with Client(fuzz_app.url, "fuzzer") as person:
        fuzz = FuzzSocket(person)
        yield fuzz
        # Afterwards the same socket still works, and so does the server.
        sock = await fuzz.open()
        await sock.send("still here", client_id="after-fuzzing")
        echo = await sock.next("message")
        assert (echo["text"], echo["client_id"]) == ("still here", "after-fuzzing")
        assert (await person.get("/healthz")).status == 200
        await sock.close()
    assert_clean_log(fuzz_app)
    figure("socket frames fuzzed", fuzz.cases)
    figure("outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(fuzz.outcomes.items())))


@FUZZ
@given(frame=socket_frames)
@example(frame=("text", "[" * 40000 + "]" * 40000))  # over chat.max_frame_bytes
@example(frame=("bytes-as-text", b'{"type": "message", "text": "\xff\xfe"}'))
@example(frame=("text", '{"type": "message", "text": "\\ud800"}'))  # an escaped lone surrogate
@example(frame=("binary", b""))
async def test_fuzzed_socket_frames_get_an_answer_and_never_break_the_server(fuzz_socket, frame):
    """Break: send random frames on a chat socket: any JSON, message-shaped objects with
    wrong types, huge numbers, deep nesting, invalid UTF-8, binary frames, control
    characters, texts around the length limit.

    Must hold: every frame gets exactly one answer: the stored message echoed with the
    same text, or an `error` frame with a known code (binary: bad_frame); a frame over
    chat.max_frame_bytes closes the socket with 1009 and a text frame that is not
    UTF-8 closes it with 1007 (RFC 6455 says to fail the connection), nothing else
    closes it; the server never logs an unhandled exception, and after all cases the
    socket and /healthz still work.
    """
    kind, payload = frame
    fuzz_socket.cases += 1
    sock = await fuzz_socket.open()
    ws = sock.ws
    if kind == "binary":
        await ws.send_bytes(payload)
        size, valid_text = len(payload), None
    elif kind == "bytes-as-text":
        await ws._writer.send_frame(payload, aiohttp.WSMsgType.TEXT)  # no UTF-8 check here
        size = len(payload)
        try:
            payload.decode("utf-8")
            valid_text = True
        except UnicodeDecodeError:
            valid_text = False
        payload = payload.decode("utf-8", "replace")
    else:
        size = len(payload.encode("utf-8", "surrogatepass"))
        valid_text = True
        try:
            payload.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: not UTF-8 on the wire
            valid_text = False
        await ws._writer.send_frame(
            payload.encode("utf-8", "surrogatepass"), aiohttp.WSMsgType.TEXT
        )
    answer = await fuzz_socket.answer()
    closed = None
    if isinstance(answer, aiohttp.WSMessage):  # the close frame carries the server's code
        closed = answer.data if answer.type == aiohttp.WSMsgType.CLOSE else ws.close_code
    if size > MAX_FRAME:
        assert closed == 1009, answer
        fuzz_socket.count("closed 1009 (too large)")
        return
    if valid_text is False:
        assert closed == 1007, answer
        fuzz_socket.count("closed 1007 (not UTF-8)")
        return
    assert isinstance(answer, dict), f"socket closed ({ws.close_code}) after {payload[:200]!r}"
    if kind == "binary":
        assert answer == {**answer, "type": "error", "code": "bad_frame"}, answer
        fuzz_socket.count("error bad_frame")
        return
    if answer["type"] == "error":
        assert answer["code"] in ERROR_CODES, answer
        assert answer["detail"]
        fuzz_socket.count(f"error {answer['code']}")
        return
    assert answer["text"] == expected_text(payload)
    assert answer["username"] == "fuzzer" and answer["room"] == "fuzz"
    fuzz_socket.count("stored and echoed")


# -- form posts ----------------------------------------------------------------------

BOUNDARY = "----chatappFuzzBoundary7MA4YWxkTrZu0gW"


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body as a browser builds it (the second field a file)."""
    parts = []
    for i, (name, value) in enumerate(fields.items()):
        # The HTML spec escapes only these in names; the rest goes as UTF-8.
        name = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        head = f'Content-Disposition: form-data; name="{name}"'
        if i == 1:
            head += '; filename="f.txt"\r\nContent-Type: text/plain'
        parts.append(f"--{BOUNDARY}\r\n{head}\r\n\r\n{value}\r\n")
    body = "".join(parts) + f"--{BOUNDARY}--\r\n"
    return body.encode("utf-8", "surrogatepass"), f"multipart/form-data; boundary={BOUNDARY}"


FORM_FIELDS = ["username", "password", "password2", "csrf_token", "next", "room"]
names = st.sampled_from(["ann", "nobody", "Ann", "x" * 65, "9lives", "a/b", "..", "%2e"]) | (
    st.text(max_size=40)
)
field_values = (
    st.text()
    | control_text
    | st.text(min_size=200, max_size=3000)
    | st.sampled_from([PASSWORD, "ann", "fuzz_room", "/chat/", "//evil.example", "€" * 25])
)


@st.composite
def form_posts(draw) -> dict:
    target = draw(st.sampled_from(["register", "login", "logout", "room", "user", "delete"]))
    if target == "user":
        action = draw(st.sampled_from(["disable", "enable", "grant", "revoke"]))
        name = draw(names.filter(lambda n: n.lower() not in ("boss", "fuzzer")))
        path = f"/admin/users/{quote(name, safe='')}/{action}"
    elif target == "delete":
        path = f"/admin/rooms/{quote(draw(names), safe='')}/delete"
    else:
        path = {"register": "/register/", "login": "/login/", "logout": "/logout/"}.get(
            target, "/chat/"
        )
    if draw(st.booleans()):
        path += "?next=" + quote(draw(st.text(max_size=30)), safe="")
    fields = draw(
        st.dictionaries(st.sampled_from(FORM_FIELDS) | st.text(max_size=12), field_values)
    )
    return {
        "path": path,
        "fields": fields,
        "token": draw(st.sampled_from(["valid", "valid", "valid", "missing", "wrong"])),
        "encoding": draw(st.sampled_from(["urlencoded", "multipart"] * 2 + ["bytes", "json"])),
        "junk": draw(
            st.binary(max_size=200)
            | st.text(max_size=100).map(str.encode)
            | st.sampled_from([b"%", b"%zz", b"a=%ff", b"=&=&", b"csrf_token", b"\xff"])
        ),
    }


class FuzzForms:
    """A superuser's browser session; logged back in when a case logs it out."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client: Client | None = None
        self.token = ""
        self.cases = 0
        self.statuses: dict[int, int] = {}

    async def login(self) -> None:
        if self.client is not None:
            await self.client.close()
        self.client = Client(self.base, "boss")
        assert (await self.client.login()).status == 302
        self.token = await self.client.csrf("/chat/")

    async def post(self, case: dict) -> int:
        fields = dict(case["fields"])
        if case["token"] == "valid":
            fields["csrf_token"] = self.token
        elif case["token"] == "wrong":
            fields["csrf_token"] = "x" + self.token[1:]
        else:
            fields.pop("csrf_token", None)
        kwargs: dict = {}
        if case["encoding"] == "urlencoded":
            kwargs["data"] = urlencode(fields).encode()
            kwargs["headers"] = {"Content-Type": "application/x-www-form-urlencoded"}
        elif case["encoding"] == "multipart":
            kwargs["data"], content_type = multipart(fields)
            kwargs["headers"] = {"Content-Type": content_type}
        elif case["encoding"] == "bytes":
            # Raw body: any bytes, then the token, as urlencoded: invalid UTF-8 and escapes.
            body = case["junk"] + b"&csrf_token=" + quote(fields.get("csrf_token", "")).encode()
            kwargs["data"] = body
            kwargs["headers"] = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            kwargs["json"] = fields
        return (await self.client.request("POST", case["path"], **kwargs)).status


@pytest.fixture
async def fuzz_forms(fuzz_app, figure):
    client = aioredis.from_url(fuzz_app.env["CHATAPP_REDIS_URL"])
    try:
        accounts = Accounts(client, 4)
        for name, superuser in (("boss", True), ("ann", False)):
            if not await accounts.exists(name):
                await accounts.create(name, PASSWORD, superuser=superuser)
    finally:
        await client.aclose()
    forms = FuzzForms(fuzz_app.url)
    await forms.login()
    yield forms
    # Afterwards the server still serves pages and the superuser's session works.
    await forms.login()
    assert (await forms.client.get("/admin/")).status == 200
    assert (await forms.client.get("/healthz")).status == 200
    await forms.client.close()
    assert_clean_log(fuzz_app)
    figure("form posts fuzzed", forms.cases)
    figure("statuses", ", ".join(f"{k}: {v}" for k, v in sorted(forms.statuses.items())))


@FUZZ
@given(case=form_posts())
@example(  # a control character in a multipart name: aiohttp raises InvalidHeader
    case={
        "path": "/register/",
        "fields": {"\x1f": ""},
        "token": "valid",
        "encoding": "multipart",
        "junk": b"",
    }
)
async def test_fuzzed_form_posts_never_get_a_5xx(fuzz_forms, case):
    """Break: post random forms to every form of the site (register, login, logout,
    create or join a room, the admin's user and room actions) with random fields and
    values (control characters, long texts, file uploads), a valid, wrong or missing
    CSRF token, urlencoded, multipart, raw bytes (invalid UTF-8 and escapes) or JSON.

    Must hold: never a 5xx and never an unhandled exception in the server's log; the
    answers are the contract's (redirect, 400 with the form, 403, 404, 413, 429); the
    server keeps serving pages afterwards.
    """
    fuzz_forms.cases += 1
    status = await fuzz_forms.post(case)
    fuzz_forms.statuses[status] = fuzz_forms.statuses.get(status, 0) + 1
    assert status < 500, (status, case)
    assert status in (200, 302, 400, 403, 404, 405, 413, 429), (status, case)
    if status == 302 and re.match(r"/(logout|login|register)/", case["path"]):
        await fuzz_forms.login()  # that case ended or changed the session
