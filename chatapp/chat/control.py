"""Control events: what one worker (or the command line) asks every worker to do.

They travel on `Keys.control_channel`, which every worker's subscriber
listens to. One encoder and one decoder, so the page, the command line and
the workers cannot disagree on the format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis.asyncio as aioredis

from chatapp.store.keys import Keys

# Reasons sent with the 1008 close (PROTOCOL.md: logged out, user disabled, room deleted).
LOGGED_OUT = "logged out"
USER_DISABLED = "user disabled"
ROOM_DELETED = "room deleted"


@dataclass(frozen=True)
class CloseUser:
    """Close every socket of `username` (any letter case) with 1008."""

    username: str
    reason: str


@dataclass(frozen=True)
class CloseRoom:
    """Close every socket in `room` with 1008."""

    room: str
    reason: str


@dataclass(frozen=True)
class CloseSessions:
    """Close every socket opened with one of `session_ids` with 1008 (the sessions ended)."""

    session_ids: tuple[str, ...]
    reason: str


ControlEvent = CloseUser | CloseRoom | CloseSessions


class BadControlEvent(ValueError):
    """Bytes on the control channel that are not an event this version knows."""


def encode(event: ControlEvent) -> bytes:
    if isinstance(event, CloseUser):
        data = {"action": "close_user", "username": event.username, "reason": event.reason}
    elif isinstance(event, CloseRoom):
        data = {"action": "close_room", "room": event.room, "reason": event.reason}
    else:
        data = {"action": "close_sessions", "sessions": list(event.session_ids)}
        data["reason"] = event.reason
    return json.dumps(data).encode()


def decode(data: bytes) -> ControlEvent:
    """The event in `data`; BadControlEvent if it is not one."""
    try:
        event = json.loads(data)
        action = event["action"]
        reason = str(event.get("reason", ""))
        if action == "close_user":
            return CloseUser(str(event["username"]), reason)
        if action == "close_room":
            return CloseRoom(str(event["room"]), reason)
        if action == "close_sessions" and isinstance(event["sessions"], list):
            return CloseSessions(tuple(str(s) for s in event["sessions"]), reason)
    except (ValueError, TypeError, KeyError):
        pass
    raise BadControlEvent(f"not a control event: {data[:100]!r}")


async def publish(redis: aioredis.Redis, event: ControlEvent) -> int:
    """Send `event` to every worker; return how many were listening."""
    return await redis.publish(Keys.control_channel, encode(event))
