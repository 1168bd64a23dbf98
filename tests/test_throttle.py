"""Sign-in and registration throttles: counted before bcrypt runs, per pair, address and
username; past a limit, 429. Sign-ins never queue behind new password hashes."""

import asyncio
from collections import Counter

from .client import PASSWORD


async def test_too_many_failures_for_a_user_get_429(app_factory, redis_url):
    client = await app_factory(redis_url, accounts={"login_failures_per_user": 3})
    await client.register("jack")
    await client.logout()
    for _ in range(3):
        assert (await client.login("jack", "wrong-pass-1")).status == 400
    response = await client.login("jack", "wrong-pass-1")
    assert response.status == 429
    assert "Too many failed login attempts. Try again in 15 minutes." in response.text
    assert 0 < int(response.headers["Retry-After"]) <= 900
    # Even the right password waits: the attacker must not learn it meanwhile.
    assert (await client.login("jack")).status == 429


async def test_address_limit_covers_many_usernames(app_factory, redis_url):
    client = await app_factory(
        redis_url, accounts={"login_failures_per_address": 4, "login_failures_per_user": 100}
    )
    for i in range(4):
        assert (await client.login(f"user{i}", "wrong-pass-1")).status == 400
    assert (await client.login("someone_else", "wrong-pass-1")).status == 429


async def test_failures_are_counted_in_redis(app_factory, redis_server, redis_url):
    client = await app_factory(redis_url)
    await client.login("kate", "wrong-pass-1")
    r = redis_server.client()
    assert r.get("chatapp:throttle:login:user:kate") == b"1"
    assert 0 < r.ttl("chatapp:throttle:login:user:kate") <= 900


async def test_success_resets_the_user_count(app_factory, redis_url):
    client = await app_factory(redis_url, accounts={"login_failures_per_user": 2})
    await client.register("liam")
    await client.logout()
    assert (await client.login("liam", "wrong-pass-1")).status == 400
    assert (await client.login("liam")).status == 302
    await client.logout()
    assert (await client.login("liam", "wrong-pass-1")).status == 400
    assert (await client.login("liam", "wrong-pass-1")).status == 400
    assert (await client.login("liam")).status == 429


async def test_forwarded_for_is_ignored_from_untrusted_peers(app_factory, redis_url, redis_server):
    client = await app_factory(redis_url)
    token = await client.csrf()
    await client.post(
        "/login/",
        data={"username": "mia", "password": "x", "csrf_token": token},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    keys = {k.decode() for k in redis_server.client().keys("chatapp:throttle:login:addr:*")}
    assert keys == {"chatapp:throttle:login:addr:127.0.0.1"}


async def test_forwarded_for_is_believed_from_trusted_proxies(app_factory, redis_url, redis_server):
    client = await app_factory(redis_url, security={"trusted_proxies": ["127.0.0.1"]})
    token = await client.csrf()
    await client.post(
        "/login/",
        data={"username": "mia", "password": "x", "csrf_token": token},
        headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
    )
    keys = {k.decode() for k in redis_server.client().keys("chatapp:throttle:login:addr:*")}
    assert keys == {"chatapp:throttle:login:addr:203.0.113.9"}


async def test_forty_parallel_wrong_guesses_get_at_most_the_limit_checked(app_factory, redis_url):
    """Each guess takes its place before bcrypt runs: 400 means checked, 429 not."""
    client = await app_factory(redis_url, accounts={"login_failures_per_user": 10})
    await client.register("olga")
    await client.logout()
    token = await client.csrf("/login/")
    guess = {"username": "olga", "password": "wrong-pass-1", "csrf_token": token}
    answers = await asyncio.gather(*(client.post("/login/", data=guess) for _ in range(40)))
    statuses = Counter(a.status for a in answers)
    assert statuses == {400: 10, 429: 30}


async def test_right_password_from_a_fresh_address_signs_in_after_anothers_failures(
    app_factory, redis_url
):
    """Ten failures from one address lock that address out of the account, no one else."""
    client = await app_factory(
        redis_url,
        accounts={"login_failures_per_user": 10},
        security={"trusted_proxies": ["127.0.0.1"]},
    )
    await client.register("pia")
    await client.logout()
    token = await client.csrf("/login/")

    async def login(password: str, address: str):
        data = {"username": "pia", "password": password, "csrf_token": token}
        return await client.post("/login/", data=data, headers={"X-Forwarded-For": address})

    for _ in range(10):
        assert (await login("wrong-pass-1", "198.51.100.66")).status == 400
    assert (await login(PASSWORD, "198.51.100.66")).status == 429
    assert (await login(PASSWORD, "203.0.113.5")).status == 302


async def test_the_per_username_total_limit_holds_across_addresses(app_factory, redis_url):
    client = await app_factory(
        redis_url,
        accounts={"login_failures_per_user": 100, "login_failures_per_user_total": 3},
        security={"trusted_proxies": ["127.0.0.1"]},
    )
    token = await client.csrf("/login/")
    data = {"username": "quin", "password": "wrong-pass-1", "csrf_token": token}
    for i in range(3):
        headers = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
        assert (await client.post("/login/", data=data, headers=headers)).status == 400
    headers = {"X-Forwarded-For": "198.51.100.9"}
    assert (await client.post("/login/", data=data, headers=headers)).status == 429


async def test_registrations_past_the_limit_per_address_get_429(app_factory, redis_url):
    client = await app_factory(redis_url, accounts={"registrations_per_address": 2})
    for name in ("rita", "sam"):
        assert (await client.register(name)).status == 302
        await client.logout()
    response = await client.register("tom")
    assert response.status == 429
    assert "Too many accounts were created from your address" in response.text
    assert (await client.login("tom")).status == 400  # nothing was created


async def test_a_huge_username_leaves_only_short_keys(app_factory, redis_url, redis_server):
    client = await app_factory(redis_url)
    assert (await client.login("x" * 200_000, "wrong-pass-1")).status == 400
    keys = redis_server.client().keys("chatapp:throttle:*")
    assert keys and max(len(k) for k in keys) < 120


async def test_sign_in_does_not_wait_behind_queued_registrations(app_factory, redis_url):
    """New hashes have their own pool: a sign-in is checked while four of them queue,
    and a fifth and sixth registration at once are told the server is busy (503)."""
    client = await app_factory(redis_url, accounts={"bcrypt_rounds": 13})
    await client.register("uma")
    await client.logout()
    done: list[str] = []

    async def register(name: str) -> int:
        other = client.another()
        try:
            status = (await other.register(name)).status
        finally:
            await other.close()
        done.append(name)
        return status

    async def sign_in() -> int:
        status = (await client.login("uma")).status
        done.append("uma")
        return status

    registrations = [asyncio.create_task(register(f"reg{i}")) for i in range(6)]
    login = asyncio.create_task(sign_in())
    statuses = await asyncio.gather(*registrations)
    assert await login == 302
    assert sorted(statuses) == [302, 302, 302, 302, 503, 503]
    finished = [name for name in done if name != "uma"]
    # Four hashes, one at a time, take four bcrypt runs; the sign-in took one.
    assert done.index("uma") < done.index(finished[-1])
