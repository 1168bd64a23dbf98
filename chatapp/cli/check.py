"""`python -m chatapp --config config.yaml check`: is this deployment ready?

One line per finding, then a summary. Exit status (PROTOCOL.md, Commands):
0 nothing needs fixing, 1 something a production deploy should fix was
found, 2 the app could not run (bad config — reported before this runs —
or an unreachable Redis, naming the URL).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from chatapp.config import Config
from chatapp.store.client import StoreUnavailable

OK, FIX, CANNOT_RUN = 0, 1, 2


@dataclass(frozen=True)
class Finding:
    fix: bool  # a production deploy should fix it (else: a note)
    text: str

    def line(self) -> str:
        return f"{'fix' if self.fix else 'note'}: {self.text}"


def config_findings(config: Config) -> list[Finding]:
    """What the config alone says."""
    found = []
    if config.is_memory_store:
        found.append(
            Finding(
                True,
                "redis.url is memory://: one process only, and everything is forgotten when it "
                "stops; use a real Redis (redis://host:port/db)",
            )
        )
    elif not config.session.secret_key:
        found.append(
            Finding(
                True,
                "session.secret_key is not set: a key generated at start-up is kept in Redis; "
                "set one (CHATAPP_SESSION_SECRET_KEY), the same for every worker",
            )
        )
    if not config.session.secure:
        found.append(
            Finding(
                True,
                "session.secure is false: session cookies also travel over plain http; "
                "serve over TLS and set it true",
            )
        )
    if config.demo.seed_users:
        found.append(
            Finding(
                True,
                "demo.seed_users is on: admin/admin (a superuser) and two demo users are "
                "created at start-up; turn it off",
            )
        )
    if not config.security.allowed_origins:
        found.append(
            Finding(
                False,
                "security.allowed_origins is empty: sockets are accepted from the request's own "
                "host only; behind a proxy, pass the Host header with its port ($http_host)",
            )
        )
    if not config.security.trusted_proxies:
        found.append(
            Finding(
                False,
                "security.trusted_proxies is empty: behind a proxy, list it so throttles and "
                "/metrics see the client's address, not the proxy's",
            )
        )
    return found


async def store_findings(config: Config) -> list[Finding]:
    """What Redis says: reachable (else StoreUnavailable), demo passwords left in use,
    fewer replicas than `redis.wait_replicas`."""
    from chatapp.accounts.users import DEMO_USERS, Accounts
    from chatapp.store.client import make_store

    store = make_store(config.redis.url)
    accounts = Accounts(store.raw, config.accounts.bcrypt_rounds)
    try:
        await store.wait_ready(config.redis.connect_timeout)
        found = []
        for name, password, _ in DEMO_USERS:
            if await accounts.authenticate(name, password) is not None:
                found.append(
                    Finding(
                        True,
                        f"user {name} still has its demo password: change it "
                        f"(setpassword {name}) or disable the user",
                    )
                )
        wanted = config.redis.wait_replicas
        if wanted and (have := await store.replicas()) < wanted:
            found.append(
                Finding(
                    True,
                    f"redis.wait_replicas is {wanted} but a primary has {have} replica(s): "
                    "messages stored there would answer `unavailable`; attach replicas "
                    "or lower it",
                )
            )
        return found
    finally:
        accounts.close()
        await store.close()


def run_check(config: Config) -> int:
    """Print the findings and a summary; return the exit status."""
    found = config_findings(config)
    try:
        if not config.is_memory_store:
            found += asyncio.run(store_findings(config))
    except StoreUnavailable as exc:
        print(f"error: {exc}")
        print("chatapp check: the app cannot run with this config")
        return CANNOT_RUN
    for finding in found:
        print(finding.line())
    to_fix = sum(f.fix for f in found)
    if to_fix:
        print(f"chatapp check: {to_fix} finding(s) to fix before production")
        return FIX
    print("chatapp check: ready for production")
    return OK
