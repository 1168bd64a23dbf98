"""Deploy the way operators will: the shipped nginx site in front of `gunicorn -w 2`.

Each end-to-end test starts its own redis-server (the session's, emptied),
gunicorn with two aiohttp workers serving docs/deploy/config.production.yaml,
and nginx running docs/deploy/nginx-chatapp.conf with only the substitutions
of `deploy_support.site_for_test` (checked here: no drift), all on free
ports, all stopped after the test. Browser tests drive Chromium through nginx.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from chatapp.config import load_config

from .browser import DESKTOP, BrowserPerson
from .client import Client
from .deploy_support import (
    PRODUCTION_CONFIG,
    SITE,
    SUBSTITUTED,
    UNIT,
    NginxProcess,
    make_certificate,
    require_nginx,
    site_for_test,
    upstream_connections,
)
from .support import ROOT, GunicornProcess, app_env, free_port, run_cli, until, until_sync

pytestmark = pytest.mark.multiprocess
# The async tests run on the session's event loop, the one the shared Chromium lives on.
on_session_loop = pytest.mark.asyncio(loop_scope="session")

# Counts every WebSocket the page opens, synchronously (so a retry run by the
# page's fake clock is counted before the clock call returns).
COUNT_SOCKETS_JS = """
window.__sockets = 0;
window.WebSocket = class extends window.WebSocket {
  constructor(...args) { super(...args); window.__sockets += 1; }
};
"""


# -- the deployment ---------------------------------------------------------------------


@dataclass
class Deployment:
    gunicorn: GunicornProcess
    nginx: NginxProcess
    http_port: int  # the HTTP server of the site (a redirect to HTTPS)
    main_port: int  # the main server: HTTPS, or plain HTTP when tls=False
    tls: bool

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.main_port}"

    def worker_pids(self, count: int = 2) -> list[int]:
        return until_sync(
            lambda: len(pids := self.gunicorn.worker_pids()) == count and pids,
            20,
            f"{count} gunicorn workers",
        )

    def sockets(self) -> dict[int, int]:
        """nginx's established connections to gunicorn (the upgraded sockets): {port: pid}."""
        return upstream_connections(self.gunicorn.port, self.gunicorn.worker_pids())


def old_host_recipe(site: str) -> str:
    """The recipe this issue replaced: `Host $host`, which drops the port."""
    assert site.count("proxy_set_header Host $http_host;") == 2
    return site.replace("proxy_set_header Host $http_host;", "proxy_set_header Host $host;")


def without_upgrade_headers(site: str) -> str:
    """A proxy that does not pass the WebSocket's Upgrade and Connection headers on."""
    lines = ["proxy_set_header Upgrade $http_upgrade;", 'proxy_set_header Connection "upgrade";']
    for line in lines:
        assert site.count(line) == 1
        site = site.replace(line, "")
    return site


@pytest.fixture
def deploy(redis_url, tmp_path):
    """deploy(tls=..., edit=..., **env): Redis + gunicorn -w 2 + nginx with the shipped site."""
    require_nginx()
    started: list[Deployment] = []
    cert, key = make_certificate(tmp_path)

    def start(*, tls: bool = False, edit: Callable[[str], str] | None = None, **env) -> Deployment:
        app_env = {
            "CHATAPP_CONFIG": str(PRODUCTION_CONFIG),
            "CHATAPP_SESSION_SECURE": "true" if tls else "false",
            "CHATAPP_SECURITY_TRUSTED_PROXIES": "127.0.0.1",
            "CHATAPP_CHAT_RATE_LIMIT_MESSAGES": "100000",
            **env,
        }
        gunicorn = GunicornProcess(redis_url, workers=2, **app_env)
        http_port, main_port = free_port(), free_port()
        site = site_for_test(
            upstream_port=gunicorn.port,
            http_port=http_port,
            https_port=main_port,
            cert=cert,
            key=key,
            tls=tls,
        )
        nginx = NginxProcess(edit(site) if edit else site, [http_port, main_port])
        deployment = Deployment(gunicorn, nginx, http_port, main_port, tls)
        started.append(deployment)
        gunicorn.launch()
        nginx.start()
        gunicorn.wait_ready(20)
        deployment.worker_pids()
        return deployment

    yield start
    for deployment in started:
        deployment.nginx.cleanup()
        deployment.gunicorn.stop()
        log = deployment.gunicorn.log()
        assert "Traceback" not in log, log


# -- browsers ---------------------------------------------------------------------------


# (`browser` is the run's shared Chromium, from tests/conftest.py.)


async def person(browser, base: str, name: str) -> BrowserPerson:
    """A registered person in a context of their own, counting the page's WebSockets."""
    context = await browser.new_context(base_url=base, viewport=DESKTOP, ignore_https_errors=True)
    await context.add_init_script(COUNT_SOCKETS_JS)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    someone = BrowserPerson(name, context, page)
    page.on("pageerror", lambda error: someone.errors.append(str(error)))
    await someone.register()
    return someone


async def sockets_opened(someone: BrowserPerson) -> int:
    return await someone.page.evaluate("() => window.__sockets")


async def say(sender: BrowserPerson, text: str) -> None:
    """Send as a person would: when the page keeps the text (the connection dropped
    before the server got it), wait to be connected and press Enter again."""
    page = sender.page
    for _ in range(5):
        await sender.wait_state("connected", timeout=20_000)
        await page.fill("#message-input", text)
        await page.press("#message-input", "Enter")
        outcome = await page.wait_for_function(
            """() => {
                const input = document.getElementById('message-input');
                const help = document.getElementById('composer-help');
                if (input.value === '') return 'sent';
                const kept = ['send', 'connection'].includes(help.dataset.reason);
                return kept ? help.textContent : false;
            }""",
            timeout=20_000,
        )
        if await outcome.json_value() == "sent":
            return
    raise AssertionError(f"{sender.name} could not send {text!r}")


async def shown(someone: BrowserPerson) -> list[tuple[int, str, str]]:
    return [(m["id"], m["user"], m["text"]) for m in await someone.messages()]


async def both_show(people: list[BrowserPerson], count: int) -> list[tuple[int, str, str]]:
    """Wait until every page shows `count` messages; they must show the same ones."""

    async def settled():
        logs = [await shown(p) for p in people]
        return all(len(log) >= count for log in logs) and logs

    logs = await until(settled, 20, f"{count} messages on every page", interval=0.2)
    for someone, log in zip(people[1:], logs[1:], strict=True):
        assert log == logs[0], f"{someone.name}'s page differs from {people[0].name}'s"
    return logs[0]


async def on_two_workers(
    deployment: Deployment, ann: BrowserPerson, ben: BrowserPerson, room: str
) -> dict[str, int]:
    """Enter `room` as ann, then ben, re-entering as ben until their sockets are on
    different workers (seen from /proc: nginx's connections to gunicorn). {name: pid}."""
    await ann.enter_room(room)
    ann_sockets = await until(
        lambda: len(s := deployment.sockets()) == 1 and s, 10, "ann's socket behind nginx"
    )
    ann_port, ann_pid = next(iter(ann_sockets.items()))
    await ben.enter_room(room)
    for _ in range(30):
        both = await until(
            lambda: len(s := deployment.sockets()) == 2 and ann_port in s and s,
            10,
            "two sockets behind nginx",
        )
        ben_port, ben_pid = next((p, pid) for p, pid in both.items() if p != ann_port)
        if ben_pid != ann_pid:
            return {"ann": ann_pid, "ben": ben_pid}
        await ben.page.reload()
        await ben.wait_state("connected")
        await until(
            lambda old=ben_port: old not in deployment.sockets(), 10, "ben's old socket gone"
        )
    raise AssertionError("30 sockets in a row landed on ann's worker")


# -- end to end: nginx + gunicorn -w 2 + Redis + Chromium --------------------------------


async def chat_through_a_worker_restart(deployment: Deployment, browser, room: str) -> None:
    """Two people on two workers chat; ann's worker gets SIGTERM mid-chat (gunicorn
    respawns it); both pages resume and show the same messages, none missed or doubled."""
    ann = await person(browser, deployment.base, "ann")
    ben = await person(browser, deployment.base, "ben")
    workers = await on_two_workers(deployment, ann, ben, room)
    opened = {"ann": await sockets_opened(ann), "ben": await sockets_opened(ben)}
    sent: list[tuple[str, str]] = []
    resumed_at = None  # messages sent when ann's page had opened its next socket
    # Until ann has resumed on another worker and four more messages went both ways.
    while resumed_at is None or len(sent) < max(12, resumed_at + 4):
        assert len(sent) < 80, "ann's page never resumed after the SIGTERM"
        i = len(sent)
        sender, reader = (ann, ben) if i % 2 == 0 else (ben, ann)
        text = f"message {i} from {sender.name}"
        await say(sender, text)
        sent.append((sender.name, text))
        await reader.wait_for_text(text, timeout=20_000)  # live, across workers
        if i == 4:
            os.kill(workers["ann"], signal.SIGTERM)
        if resumed_at is None and await sockets_opened(ann) > opened["ann"]:
            resumed_at = len(sent)
    log = await both_show([ann, ben], len(sent))
    assert [m[0] for m in log] == list(range(1, len(sent) + 1))  # nothing missed or doubled
    assert [(user, text) for _, user, text in log] == sent
    # Ann's socket was on the stopped worker and resumed; ben's was never touched.
    assert await sockets_opened(ben) == opened["ben"]
    pids = deployment.worker_pids()
    assert workers["ann"] not in pids and workers["ben"] in pids  # gunicorn respawned it
    for someone in (ann, ben):
        assert someone.errors == []


@pytest.mark.browser
@on_session_loop
async def test_nginx_two_workers_chat_live_and_resume_after_a_worker_sigterm(deploy, browser, room):
    deployment = deploy(tls=False)
    await chat_through_a_worker_restart(deployment, browser, room)


@pytest.mark.browser
@on_session_loop
async def test_tls_secure_cookie_https_origin_and_resume_after_a_worker_sigterm(
    deploy, browser, room
):
    deployment = deploy(tls=True)
    # Plain HTTP is redirected to HTTPS, path kept.
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{deployment.http_port}/chat/{room}/?x=1"
        async with http.get(url, allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"] == f"https://127.0.0.1/chat/{room}/?x=1"
    await chat_through_a_worker_restart(deployment, browser, room)
    for context in browser.contexts:
        cookies = {c["name"]: c for c in await context.cookies()}
        assert cookies["chatapp_session"]["secure"] is True
        assert cookies["chatapp_session"]["httpOnly"] is True
    # The pages' own sockets came from https:// origins and were accepted; so is
    # a socket opened by hand with that Origin.
    async with Client(deployment.base, "cat", ssl=False) as cat:
        sock = await cat.join(room, origin=deployment.base)
        assert (await sock.next("history"))["messages"]


@on_session_loop
async def test_tls_socket_refuses_an_http_origin(deploy, room):
    deployment = deploy(tls=True)
    http_origin = deployment.base.replace("https://", "http://")
    async with Client(deployment.base, "ann", ssl=False) as ann:
        await (await ann.join(room, origin=deployment.base)).next("history")
        check = await ann.json(f"/api/socket-check?origin={http_origin}")
        assert check["allowed"] is False, check
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await ann.join(room, origin=http_origin)
        assert refused.value.status == 403
    assert f"refused socket from origin '{http_origin}'" in deployment.gunicorn.log()


@pytest.mark.browser
@on_session_loop
async def test_old_host_recipe_page_says_refused_within_15s_and_stops_retrying(
    deploy, browser, room
):
    deployment = deploy(tls=False, edit=old_host_recipe)
    ann = await person(browser, deployment.base, "ann")  # the pages work
    page = ann.page
    await page.clock.install()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await page.goto(f"/chat/{room}/")
    await ann.wait_state("refused", timeout=15_000)
    assert loop.time() - started < 15
    explanation = await page.text_content("#composer-help")
    assert "server refused the live connection" in explanation
    assert f"origin ({deployment.base})" in explanation
    assert 'sees the host as "127.0.0.1"' in explanation  # the port was dropped
    assert "security.allowed_origins" in explanation
    assert "proxy_set_header Host $http_host" in explanation
    assert await page.is_hidden("#retry")
    # Stopped: every retry the page had scheduled would run in these two minutes.
    attempts = await sockets_opened(ann)
    await page.clock.pause_at(await page.evaluate("Date.now()") + 1000)
    await page.clock.run_for(120_000)
    assert await sockets_opened(ann) == attempts
    assert await page.get_attribute("#status", "data-state") == "refused"
    assert f"refused socket from origin '{deployment.base}'" in deployment.gunicorn.log()


@on_session_loop
async def test_proxy_that_strips_upgrade_is_refused_with_a_log_line_naming_it(deploy, room):
    deployment = deploy(tls=False, edit=without_upgrade_headers)
    async with Client(deployment.base, "ann") as ann:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await ann.join(room)
        assert refused.value.status == 400
    await until(
        lambda: (
            f"refused socket to '{room}': no 'Upgrade: websocket' header"
            in deployment.gunicorn.log()
        ),
        10,
        "the log line naming the missing header",
    )


@pytest.mark.browser
@on_session_loop
async def test_rolling_restart_one_worker_at_a_time_then_reload_loses_and_doubles_nothing(
    deploy, browser, room
):
    deployment = deploy(tls=False)
    ann = await person(browser, deployment.base, "ann")
    ben = await person(browser, deployment.base, "ben")
    await on_two_workers(deployment, ann, ben, room)
    sent: list[tuple[str, str]] = []
    stop = asyncio.Event()

    async def chat() -> None:
        """Ann and ben take turns, each message seen live by the other, until told to stop."""
        while not stop.is_set():
            sender, reader = (ann, ben) if len(sent) % 2 == 0 else (ben, ann)
            text = f"message {len(sent)} from {sender.name}"
            await say(sender, text)
            sent.append((sender.name, text))
            await reader.wait_for_text(text, timeout=20_000)

    def chatted(count: int) -> Callable[[], bool]:
        def check() -> bool:
            if chatting.done():
                chatting.result()  # its failure, if any
                raise AssertionError("the chat stopped")
            return len(sent) >= count

        return check

    chatting = asyncio.create_task(chat())
    try:
        await until(chatted(2), 30, "the chat under way")
        # One worker at a time: SIGTERM it, gunicorn starts its replacement.
        for pid in deployment.worker_pids():
            os.kill(pid, signal.SIGTERM)
            await until(
                lambda pid=pid: pid not in (p := deployment.gunicorn.worker_pids()) and len(p) == 2,
                20,
                f"worker {pid} replaced",
            )
            await until(chatted(len(sent) + 2), 30, "the chat going on")
        # Then what `systemctl reload` does: HUP to the master, new workers, old ones stop.
        old = set(deployment.worker_pids())
        deployment.gunicorn.signal(signal.SIGHUP)
        await until(
            lambda: len(p := deployment.gunicorn.worker_pids()) == 2 and not old & set(p),
            30,
            "the workers replaced by a reload",
        )
        await until(chatted(len(sent) + 4), 30, "the chat going on after the reload")
        stop.set()
        await asyncio.wait_for(chatting, 60)
    finally:
        chatting.cancel()
    log = await both_show([ann, ben], len(sent))
    assert [m[0] for m in log] == list(range(1, len(sent) + 1))
    assert [(user, text) for _, user, text in log] == sent
    # Each page lost its socket at least once to each kind of restart, and resumed.
    for someone in (ann, ben):
        assert await sockets_opened(someone) >= 3, someone.name


# -- the shipped files ------------------------------------------------------------------


def test_the_shipped_nginx_site_is_the_one_the_tests_run(tmp_path):
    require_nginx()
    cert, key = make_certificate(tmp_path)
    shipped = SITE.read_text().splitlines()
    for tls in (True, False):
        ran = site_for_test(
            upstream_port=18080, http_port=18081, https_port=18082, cert=cert, key=key, tls=tls
        ).splitlines()
        assert len(ran) == len(shipped)
        changed = [(a, b) for a, b in zip(shipped, ran, strict=True) if a != b]
        assert sorted(a for a, _ in changed) == sorted(SUBSTITUTED), changed
        # And nginx itself accepts it.
        nginx = NginxProcess("\n".join(ran), [])
        try:
            result = nginx.test_config()
            assert result.returncode == 0, result.stderr
        finally:
            nginx.cleanup()


def test_the_shipped_nginx_site_keeps_the_port_forwards_the_scheme_and_upgrades():
    site = SITE.read_text()
    directives = [line.split("#")[0].strip() for line in site.splitlines()]
    assert directives.count("proxy_set_header Host $http_host;") == 2
    assert not [d for d in directives if re.fullmatch(r"proxy_set_header Host \$host;", d)]
    assert directives.count("proxy_set_header X-Forwarded-Proto $scheme;") == 2
    assert directives.count("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;") == 2
    assert "proxy_set_header Upgrade $http_upgrade;" in directives
    assert 'proxy_set_header Connection "upgrade";' in directives
    assert "return 301 https://$host$request_uri;" in directives
    timeout = next(d for d in directives if d.startswith("proxy_read_timeout"))
    heartbeat = load_config(PRODUCTION_CONFIG, environ={}).chat.heartbeat_seconds
    assert int(re.search(r"(\d+)s", timeout).group(1)) > heartbeat * 1.5


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_systemd_unit_parses_and_stops_gracefully():
    unit = _unit(UNIT)
    service = unit["Service"]
    one = {key: values[-1] for key, values in service.items()}
    assert one["User"] and one["User"] != "root"
    assert one["Restart"] in ("on-failure", "always")
    assert one["KillSignal"] == "SIGTERM"
    assert one["KillMode"] == "mixed"  # SIGTERM to gunicorn, which stops its workers
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "strict"
    graceful = int(re.search(r"--graceful-timeout (\d+)", one["ExecStart"]).group(1))
    assert int(one["TimeoutStopSec"].rstrip("s")) > graceful
    assert "aiohttp.GunicornWebWorker" in one["ExecStart"]
    assert "kill -s HUP $MAINPID" in one["ExecReload"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # the structural check above is all there is
        return
    result = subprocess.run(
        [analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    # The programs live on the deployed machine only; anything else is a real finding.
    findings = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not re.search(r"Command /opt/chatapp/\S+ is not executable", line)
    ]
    assert findings == []


def test_the_production_config_loads_and_passes_check(redis_url):
    config = load_config(PRODUCTION_CONFIG, environ={})
    assert config.redis.url.startswith("redis://")
    assert config.session.secure is True
    assert config.demo.seed_users is False
    assert "127.0.0.1" in config.security.trusted_proxies
    env = app_env(redis_url, CHATAPP_SESSION_SECRET_KEY="a-real-secret-from-the-environment")
    result = run_cli("--config", str(PRODUCTION_CONFIG), "check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # Without the secret from the environment, `check` says what to fix.
    del env["CHATAPP_SESSION_SECRET_KEY"]
    result = run_cli("--config", str(PRODUCTION_CONFIG), "check", env=env)
    assert result.returncode == 1
    assert "fix: session.secret_key is not set" in result.stdout


def test_the_readme_deploy_section_uses_the_shipped_files():
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    for path in (SITE, UNIT, PRODUCTION_CONFIG):
        relative = str(path.relative_to(ROOT))
        assert relative in deploy, relative
        assert path.exists()
    assert "python -m chatapp --config /etc/chatapp/config.yaml check" in deploy
    assert deploy.index(" check") < deploy.index("systemctl enable")  # check comes first
    assert "kill -HUP" in deploy and "systemctl reload chatapp" in deploy
    # The key lines the README quotes are the shipped file's lines.
    site = {line.split("#")[0].strip() for line in SITE.read_text().splitlines()}
    quoted = re.search(r"```nginx\n(.*?)```", deploy, re.S).group(1)
    for line in quoted.splitlines():
        line = line.split("#")[0].strip()
        if line and line not in ("...", "}") and not line.endswith("{"):
            assert line in site, line
    assert "Host $host;" not in deploy
