"""Failed logins are counted in Redis per username and per address; past the limit, 429."""


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
