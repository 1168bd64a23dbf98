"""Every `web.AppKey` and `web.RequestKey` of the application, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    pass

config_key = web.AppKey("config", "Config")
store_key = web.AppKey("store", "Store")
accounts_key = web.AppKey("accounts", "Accounts")
throttle_key = web.AppKey("throttle", "LoginThrottle")
rooms_key = web.AppKey("rooms", "RoomDirectory")
chat_key = web.AppKey("chat", "ChatService")
secret_key = web.AppKey("secret", bytes)
metrics_key = web.AppKey("metrics", "Metrics")
admin_key = web.AppKey("admin", "AdminActions")
SESSION_STORAGE = web.AppKey("session_storage", "SignedRedisStorage")

# The logged-in user of this request (None when anonymous), set by the auth middleware.
user_key = web.RequestKey("user", "User | None")
