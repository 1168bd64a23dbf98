"""Every `web.AppKey` and `web.RequestKey` of the application, in one place.

Typed with the real classes, so a type checker knows what `app[chat_key]`
is. This module imports the domain modules and none of them imports it
(only `chatapp.app`, `chatapp.gunicorn` and `chatapp.web` do): no cycle.
"""

from __future__ import annotations

from aiohttp import web

from chatapp.accounts.demo import DemoPasswords
from chatapp.accounts.sessions import SignedRedisStorage
from chatapp.accounts.throttle import LoginThrottle
from chatapp.accounts.users import Accounts, User
from chatapp.admin import AdminActions
from chatapp.chat.rooms import RoomDirectory
from chatapp.chat.service import ChatService
from chatapp.config import Config
from chatapp.metrics import Metrics
from chatapp.store.client import Store

config_key = web.AppKey("config", Config)
store_key = web.AppKey("store", Store)
session_storage_key = web.AppKey("session_storage", SignedRedisStorage)
accounts_key = web.AppKey("accounts", Accounts)
demo_passwords_key = web.AppKey("demo_passwords", DemoPasswords)
throttle_key = web.AppKey("throttle", LoginThrottle)
admin_key = web.AppKey("admin", AdminActions)
metrics_key = web.AppKey("metrics", Metrics)
chat_key = web.AppKey("chat", ChatService)
rooms_key = web.AppKey("rooms", RoomDirectory)

# The logged-in user of this request (None when anonymous), set by the auth middleware.
user_key: web.RequestKey[User | None] = web.RequestKey("user", User | None)  # type: ignore[arg-type]

# The language this request speaks ("en", "ru"), set by chatapp.web.languages.middleware.
lang_key: web.RequestKey[str] = web.RequestKey("lang", str)
