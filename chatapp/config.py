"""Load and validate `config.yaml` plus `CHATAPP_<SECTION>_<KEY>` overrides.

Every error names the key and the bad value in one line, so start-up can stop
with exit status 2 and tell the operator exactly what to fix.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from chatapp.store.urls import cluster_nodes

ENV_PREFIX = "CHATAPP_"
# Not a config key: the path of the config file itself (used by gunicorn).
ENV_CONFIG_PATH = "CHATAPP_CONFIG"


class ConfigError(Exception):
    """A config file or override that cannot be used; the message names the key."""


def _limits(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    return {"low": low, "high": high}


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_limits(0, 65535))
    # Seconds a graceful shutdown waits for requests in flight.
    shutdown_timeout: float = field(default=10.0, metadata=_limits(0, 3600))
    uvloop: bool = False
    access_log: bool = True


@dataclass(frozen=True)
class RedisConfig:
    url: str = "memory://"
    # Seconds to wait for Redis at start-up before giving up with exit 2.
    connect_timeout: float = field(default=5.0, metadata=_limits(0.1, 60))
    # Replicas that must hold a message (Redis WAIT) before the sender's echo
    # confirms it; 0: do not wait.
    wait_replicas: int = field(default=0, metadata=_limits(0, 16))
    # Seconds one WAIT may take; then the sender gets `unavailable` (maybe stored).
    # (Under the 5 s socket timeout of every Redis command.)
    wait_timeout: float = field(default=1.0, metadata=_limits(0.01, 4))


@dataclass(frozen=True)
class SessionConfig:
    secret_key: str = ""
    cookie_name: str = "chatapp_session"
    # Absolute lifetime of a session in seconds, from its login (Django's
    # default: two weeks); nothing done with the session extends it.
    max_age: int = field(default=1_209_600, metadata=_limits(1, None))
    secure: bool = False


@dataclass(frozen=True)
class SecurityConfig:
    allowed_origins: list[str] = field(default_factory=list)
    trusted_proxies: list[str] = field(default_factory=list)
    # Who may read /metrics besides loopback.
    metrics_networks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AccountsConfig:
    bcrypt_rounds: int = field(default=12, metadata=_limits(4, 31))
    # Failed sign-ins per window: per username from one address, per address,
    # and per username from all addresses (see chatapp.accounts.throttle).
    login_failures_per_user: int = field(default=10, metadata=_limits(1, None))
    login_failures_per_address: int = field(default=50, metadata=_limits(1, None))
    login_failures_per_user_total: int = field(default=100, metadata=_limits(1, None))
    login_failure_window: int = field(default=900, metadata=_limits(1, None))
    registrations_per_address: int = field(default=10, metadata=_limits(1, None))


@dataclass(frozen=True)
class ChatConfig:
    max_message_length: int = field(default=4000, metadata=_limits(1, None))
    max_frame_bytes: int = field(default=65536, metadata=_limits(64, None))
    history_limit: int = field(default=1000, metadata=_limits(1, None))
    rate_limit_messages: int = field(default=20, metadata=_limits(1, None))
    rate_limit_seconds: float = field(default=10.0, metadata=_limits(0.001, None))
    empty_room_ttl: int = field(default=604_800, metadata=_limits(0, None))
    heartbeat_seconds: float = field(default=20.0, metadata=_limits(1, 3600))
    # Retired: a joining socket now gets its history and the live feed in one
    # step, so nothing is held for it. Still accepted, so old configs load.
    send_queue_size: int = field(default=512, metadata=_limits(1, None))
    # Unsent bytes a socket may have before it is closed as too slow (1013).
    send_buffer_bytes: int = field(default=1_048_576, metadata=_limits(1024, None))
    page_history: int = field(default=50, metadata=_limits(0, None))
    # Seconds a worker's presence record lives unrefreshed: how long a killed
    # worker's people still show as present. Refreshed every quarter of it.
    presence_ttl: float = field(default=20.0, metadata=_limits(1, 3600))
    # Quotas: open sockets one person may hold on one worker, and rooms one
    # person may create per hour (by opening a room that does not exist).
    max_sockets_per_user: int = field(default=50, metadata=_limits(1, None))
    rooms_per_hour: int = field(default=20, metadata=_limits(0, None))


@dataclass(frozen=True)
class DemoConfig:
    seed_users: bool = False
    # Seeding on a real Redis needs this too (see `demo_seeding_problem`).
    allow_on_redis: bool = False


@dataclass(frozen=True)
class LogConfig:
    level: str = field(default="INFO", metadata={"choices": ("DEBUG", "INFO", "WARNING", "ERROR")})


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def is_memory_store(self) -> bool:
        return self.redis.url.startswith("memory://")

    def replace(self, section: str, **changes: Any) -> Config:
        """Return a copy with keys of one section changed (command-line overrides)."""
        updated = dataclasses.replace(getattr(self, section), **changes)
        return dataclasses.replace(self, **{section: updated})


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _coerce(key: str, value: Any, kind: Any, meta: typing.Mapping[str, Any]) -> Any:
    """Check one value against its declared type and limits."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_describe(value)}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
    elif typing.get_origin(kind) is list:
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {_describe(value)}")
        value = list(value)
    low, high = meta.get("low"), meta.get("high")
    if low is not None and value < low:
        raise ConfigError(f"{key}: must be at least {low}, got {_describe(value)}")
    if high is not None and value > high:
        raise ConfigError(f"{key}: must be at most {high}, got {_describe(value)}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {_describe(value)}")
    return value


def _parse_env_value(raw: str, kind: Any) -> Any:
    """Read an environment string as YAML; lists may also be comma-separated."""
    if typing.get_origin(kind) is list and not raw.lstrip().startswith("["):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if kind is str:
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _env_overrides(environ: typing.Mapping[str, str]) -> dict[tuple[str, str], str]:
    sections = _sections()
    overrides: dict[tuple[str, str], str] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        known = section in sections and key in {
            f.name for f in dataclasses.fields(sections[section])
        }
        if not known:
            raise ConfigError(f"{name}: no such config key ({section}.{key or '?'})")
        overrides[(section, key)] = raw
    return overrides


def build_config(
    data: typing.Mapping[str, Any] | None, environ: typing.Mapping[str, str] | None = None
) -> Config:
    """Validate a parsed config mapping, apply environment overrides, return a Config."""
    data = {} if data is None else data
    if not isinstance(data, typing.Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {_describe(data)}")
    sections = _sections()
    for section in data:
        if section not in sections:
            raise ConfigError(f"{section}: unknown config section")
    env = _env_overrides(os.environ if environ is None else environ)
    built = {}
    for section, cls in sections.items():
        given = data.get(section) or {}
        if not isinstance(given, typing.Mapping):
            raise ConfigError(f"{section}: expected a mapping of keys, got {_describe(given)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in given:
            if key not in fields:
                raise ConfigError(f"{section}.{key}: unknown config key")
        values = {}
        for name, fld in fields.items():
            full = f"{section}.{name}"
            if (section, name) in env:
                value = _parse_env_value(env[(section, name)], hints[name])
                full = f"{ENV_PREFIX}{section.upper()}_{name.upper()} ({full})"
            elif name in given:
                value = given[name]
            else:
                continue
            values[name] = _coerce(full, value, hints[name], fld.metadata)
        built[section] = cls(**values)
    config = Config(**built)
    _check_semantics(config)
    return config


def _check_semantics(config: Config) -> None:
    url = config.redis.url
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix", "memory", "redis+cluster"):
        raise ConfigError(
            f"redis.url: expected redis://host:port/db, rediss://, unix://, "
            f"redis+cluster://host:port[,host:port...] or memory://, got {_describe(url)}"
        )
    if scheme == "redis+cluster":
        try:
            nodes = cluster_nodes(url)
        except ValueError:
            nodes = []
        if not nodes or not all(host and 0 < port < 65536 for host, port in nodes):
            raise ConfigError(
                "redis.url: expected redis+cluster://host:port[,host:port...], "
                f"got {_describe(url)}"
            )
    for origin in config.security.allowed_origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ConfigError(
                "security.allowed_origins: expected origins like https://chat.example.com, "
                f"got {_describe(origin)}"
            )
    for key in ("trusted_proxies", "metrics_networks"):
        for net in getattr(config.security, key):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(
                    f"security.{key}: expected IP addresses or networks, got {_describe(net)}"
                ) from None


def demo_seeding_problem(config: Config) -> str | None:
    """Why this config may not serve: demo users asked for on a real Redis without opt-in.

    The shipped config.yaml turns `demo.seed_users` on for a first run on
    `memory://`; whoever copies it and only points `redis.url` at a real Redis
    would otherwise get `admin`/`admin` as a superuser in a lasting store.
    Checked when serving, not at load: the admin commands seed nothing and
    must stay usable (e.g. `setpassword admin`).
    """
    demo = config.demo
    if not demo.seed_users or config.is_memory_store or demo.allow_on_redis:
        return None
    return (
        "demo.seed_users is on with a real Redis (redis.url), which would create the demo "
        "superuser admin/admin there: turn demo.seed_users off (CHATAPP_DEMO_SEED_USERS=false), "
        "or set demo.allow_on_redis: true (CHATAPP_DEMO_ALLOW_ON_REDIS=true) to seed on purpose"
    )


def load_config(
    path: str | os.PathLike[str], environ: typing.Mapping[str, str] | None = None
) -> Config:
    """Read the YAML file at `path` (which must exist) and build the Config."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {os.fspath(path)}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise ConfigError(f"config file {os.fspath(path)}{line}: not valid YAML") from None
    return build_config(data, environ)
