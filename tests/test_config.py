"""config.yaml validation and CHATAPP_<SECTION>_<KEY> overrides."""

import pytest

from chatapp.config import ConfigError, build_config, load_config

from .support import ROOT


def test_shipped_config_loads_with_memory_store_and_demo_users():
    config = load_config(ROOT / "config.yaml", environ={})
    assert config.redis.url == "memory://"
    assert config.demo.seed_users is True
    assert config.chat.history_limit == 1000
    assert config.chat.rate_limit_messages == 20


def test_defaults_match_the_contract():
    chat = build_config({}, environ={}).chat
    assert (chat.max_message_length, chat.max_frame_bytes, chat.history_limit) == (
        4000,
        65536,
        1000,
    )
    assert (chat.rate_limit_messages, chat.rate_limit_seconds) == (20, 10.0)
    assert build_config({}, environ={}).accounts.bcrypt_rounds == 12


def test_env_overrides_the_file():
    config = build_config(
        {"chat": {"history_limit": 5}},
        environ={
            "CHATAPP_CHAT_HISTORY_LIMIT": "7",
            "CHATAPP_CHAT_RATE_LIMIT_MESSAGES": "1000000",
            "CHATAPP_REDIS_URL": "redis://127.0.0.1:6390/1",
            "CHATAPP_DEMO_SEED_USERS": "true",
            "CHATAPP_SECURITY_ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "CHATAPP_CONFIG": "elsewhere.yaml",
        },
    )
    assert config.chat.history_limit == 7
    assert config.chat.rate_limit_messages == 1_000_000
    assert config.redis.url == "redis://127.0.0.1:6390/1"
    assert config.demo.seed_users is True
    assert config.security.allowed_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    ("data", "environ", "expected"),
    [
        ({"chat": {"histroy_limit": 5}}, {}, "chat.histroy_limit: unknown config key"),
        ({"chats": {}}, {}, "chats: unknown config section"),
        ({"server": {"port": "eighty"}}, {}, "server.port: expected an integer, got 'eighty'"),
        ({"server": {"port": 70000}}, {}, "server.port: must be at most 65535, got 70000"),
        ({"demo": {"seed_users": "yes please"}}, {}, "demo.seed_users: expected true or false"),
        ({"chat": {"history_limit": 0}}, {}, "chat.history_limit: must be at least 1, got 0"),
        ({"redis": {"url": "http://x"}}, {}, "redis.url: expected redis://"),
        ({"log": {"level": "LOUD"}}, {}, "log.level: must be one of"),
        (
            {},
            {"CHATAPP_CHAT_HISTORY_LIMIT": "lots"},
            "CHATAPP_CHAT_HISTORY_LIMIT (chat.history_limit)",
        ),
        ({}, {"CHATAPP_CHAT_NOPE": "1"}, "CHATAPP_CHAT_NOPE: no such config key"),
        ({"security": {"allowed_origins": ["chat.example"]}}, {}, "security.allowed_origins"),
        ({"security": {"trusted_proxies": ["proxy"]}}, {}, "security.trusted_proxies"),
    ],
)
def test_bad_config_names_the_key(data, environ, expected):
    with pytest.raises(ConfigError) as error:
        build_config(data, environ=environ)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  port: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, environ={})
