"""The WebSocket frames of the contract: parse what clients send, build what they get.

Pure functions, no I/O. Messages are JSON built once (by the store script) and
passed around as bytes; frames built here are bytes too, ready for the wire.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

MAX_CLIENT_ID_LENGTH = 128
# Every stored message starts with this, so its id can be read without parsing.
MESSAGE_PREFIX = b'{"type":"message","id":'


@dataclass(frozen=True)
class Outgoing:
    """A valid chat message from a client."""

    text: str
    client_id: str | None


@dataclass(frozen=True)
class MarkRead:
    """`{"type": "read", "id": N}`: the conversation is read up to N."""

    id: int


ClientFrame = Outgoing | MarkRead
MAX_ID = 2**53  # ids are JSON numbers: beyond this a client cannot hold them exactly


class FrameError(Exception):
    """A client frame that breaks the contract; becomes an `error` frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def parse_client_frame(raw: str, max_length: int) -> ClientFrame:
    """Validate one text frame from a client; raise FrameError saying what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise FrameError("bad_json", "Frames must be JSON text.") from None
    if not isinstance(data, dict):
        raise FrameError("bad_frame", "A frame must be a JSON object.")
    kind = data.get("type", "message" if "message" in data else None)
    if kind == "read":
        message_id = data.get("id")
        if type(message_id) is not int or not 0 <= message_id <= MAX_ID:
            raise FrameError("bad_frame", "A read frame needs an id: a whole number.")
        return MarkRead(message_id)
    if kind != "message":
        raise FrameError("unknown_type", f"Unknown frame type {str(kind)[:40]!r}.")
    # {"message": "..."} is the seed's frame; {"type": "message", "text": "..."} ours.
    text = data["text"] if "text" in data else data.get("message")
    if not isinstance(text, str):
        raise FrameError("bad_frame", "A message needs a text string.")
    if not text.strip():
        raise FrameError("empty_message", "The message is empty.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameError("bad_frame", "The text is not valid Unicode (lone surrogate).") from None
    if len(text) > max_length:
        raise FrameError(
            "message_too_long", f"Messages are at most {max_length} characters ({len(text)} sent)."
        )
    client_id = data.get("client_id")
    if client_id is not None and (
        not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID_LENGTH
    ):
        raise FrameError(
            "bad_frame", f"client_id must be a string of at most {MAX_CLIENT_ID_LENGTH} characters."
        )
    return Outgoing(text=text, client_id=client_id)


def message_body(room: str, username: str, text: str, client_id: str | None) -> str:
    """The part of a message after `"ts":<ts>` (the store script adds id and ts)."""
    return (
        ',"room":'
        + json.dumps(room)
        + ',"username":'
        + json.dumps(username)
        + ',"text":'
        + json.dumps(text, ensure_ascii=False)
        + ',"client_id":'
        + json.dumps(client_id)
        + "}"
    )


def message_id(message: bytes) -> int | None:
    """The id of a stored message frame, read from its fixed prefix."""
    if not message.startswith(MESSAGE_PREFIX):
        return None
    end = message.find(b",", len(MESSAGE_PREFIX))
    try:
        return int(message[len(MESSAGE_PREFIX) : end])
    except ValueError:
        return None


def message_author(message: bytes) -> str:
    """The username of a stored message frame."""
    try:
        return str(json.loads(message).get("username", ""))
    except ValueError:
        return ""


def history_frame(messages: Iterable[bytes], truncated: bool) -> bytes:
    return (
        b'{"type":"history","messages":['
        + b",".join(messages)
        + b'],"truncated":'
        + (b"true" if truncated else b"false")
        + b"}"
    )


def presence_frame(users: list[str]) -> bytes:
    return json.dumps({"type": "presence", "users": users, "count": len(users)}).encode()


def error_frame(code: str, detail: str, client_id: str | None = None) -> bytes:
    frame = {"type": "error", "code": code, "detail": detail}
    if client_id is not None:
        frame["client_id"] = client_id  # which of the sender's messages failed
    return json.dumps(frame).encode()


def notify_frame(conversation: str, url: str, message: bytes) -> bytes:
    """`notify`: someone mentioned this person, or wrote to them directly."""
    return (
        b'{"type":"notify","conversation":'
        + json.dumps(conversation).encode()
        + b',"url":'
        + json.dumps(url).encode()
        + b',"message":'
        + message
        + b"}"
    )


def read_frame(conversation: str, message_id: int) -> bytes:
    """`read`: this person read `conversation` up to `message_id` (on another tab)."""
    return json.dumps({"type": "read", "conversation": conversation, "id": message_id}).encode()


def activity_frame(conversation: str, message_id: int, username: str) -> bytes:
    """`activity`: a new message in a conversation of this person's sidebar."""
    return json.dumps(
        {"type": "activity", "conversation": conversation, "id": message_id, "username": username}
    ).encode()


def conversations_frame(conversation: str) -> bytes:
    """`conversations`: this person's list changed (added to a private room): refetch it."""
    return json.dumps({"type": "conversations", "changed": conversation}).encode()
