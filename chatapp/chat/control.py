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
REMOVED = "removed from the room"


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


@dataclass(frozen=True)
class CloseMember:
    """Close `username`'s sockets in `room` (removed from a private room) with 1008."""

    room: str
    username: str
    reason: str


@dataclass(frozen=True)
class ToPerson:
    """A frame for every socket of `username` (not those on `conversation`): a
    `notify` for a mention or a direct message, or a `read` marker for their other
    tabs. `watch`: their sockets start following `conversation` for the sidebar."""

    username: str
    conversation: str
    frame: bytes
    watch: bool = False


ControlEvent = CloseUser | CloseRoom | CloseSessions | CloseMember | ToPerson


class BadControlEvent(ValueError):
    """Bytes on the control channel that are not an event this version knows."""


def encode(event: ControlEvent) -> bytes:
    if isinstance(event, CloseUser):
        data = {"action": "close_user", "username": event.username, "reason": event.reason}
    elif isinstance(event, CloseRoom):
        data = {"action": "close_room", "room": event.room, "reason": event.reason}
    elif isinstance(event, CloseSessions):
        data = {"action": "close_sessions", "sessions": list(event.session_ids)}
        data["reason"] = event.reason
    elif isinstance(event, CloseMember):
        data = {"action": "close_member", "room": event.room, "username": event.username}
        data["reason"] = event.reason
    else:
        data = {
            "action": "to_person",
            "username": event.username,
            "conversation": event.conversation,
            "frame": event.frame.decode(),
            "watch": event.watch,
        }
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
        if action == "close_member":
            return CloseMember(str(event["room"]), str(event["username"]), reason)
        if action == "to_person":
            return ToPerson(
                str(event["username"]),
                str(event["conversation"]),
                str(event["frame"]).encode(),
                bool(event.get("watch")),
            )
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    raise BadControlEvent(f"not a control event: {data[:100]!r}")


async def publish(redis: aioredis.Redis, event: ControlEvent) -> int:
    """Send `event` to every worker; return how many were listening."""
    return await redis.publish(Keys.control_channel, encode(event))
