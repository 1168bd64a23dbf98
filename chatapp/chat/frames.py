"""The WebSocket frames of the contract: parse what clients send, build what they get.

Pure functions, no I/O. Messages are JSON built once (by the store script) and
passed around as bytes; frames built here are bytes too, ready for the wire.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from chatapp.chat.emoji import is_single_emoji
from chatapp.i18n import N_, Msg, nMsg

MAX_CLIENT_ID_LENGTH = 128
# Every stored message starts with this, so its id can be read without parsing.
MESSAGE_PREFIX = b'{"type":"message","id":'
# And every `update` frame with this: its change number is read the same way.
UPDATE_PREFIX = b'{"type":"update","rev":'
TYPING_PREFIX = b'{"type":"typing","username":'


@dataclass(frozen=True)
class Outgoing:
    """A valid chat message from a client (`reply_to`: the id it answers)."""

    text: str
    client_id: str | None
    reply_to: int | None = None


@dataclass(frozen=True)
class MarkRead:
    """`{"type": "read", "id": N}`: the conversation is read up to N."""

    id: int


@dataclass(frozen=True)
class Edit:
    id: int
    text: str


@dataclass(frozen=True)
class Delete:
    id: int


@dataclass(frozen=True)
class React:
    """Toggle the sender's `emoji` on message `id`."""

    id: int
    emoji: str


@dataclass(frozen=True)
class Typing:
    """The sender is typing: relayed to the others, never stored."""


TYPING = Typing()
ClientFrame = Outgoing | MarkRead | Edit | Delete | React | Typing
MAX_ID = 2**53  # ids are JSON numbers: beyond this a client cannot hold them exactly

# What a frame with a bad message id is told (msgids; see FrameError).
_REPLY_TO_ID = N_("A reply_to must be a message id (a whole number).")
_READ_ID = N_("A read frame's id must be a message id (a whole number).")
_EDIT_ID = N_("An edit frame's id must be a message id (a whole number).")
_DELETE_ID = N_("A delete frame's id must be a message id (a whole number).")
_REACT_ID = N_("A react frame's id must be a message id (a whole number).")


class FrameError(Exception):
    """A client frame that breaks the contract; becomes an `error` frame.

    `detail` is English, a msgid (or a `chatapp.i18n.Msg` with its parameters):
    this module does not know the socket's language; `ChatService.send_error`
    translates it into the connection's.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def parse_client_frame(raw: str, max_length: int) -> ClientFrame:
    """Validate one text frame from a client; raise FrameError saying what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise FrameError("bad_json", N_("Frames must be JSON text.")) from None
    if not isinstance(data, dict):
        raise FrameError("bad_frame", N_("A frame must be a JSON object."))
    kind = data.get("type", "message" if "message" in data else None)
    if kind == "message":
        # {"message": "..."} is the seed's frame; {"type": "message", "text": "..."} ours.
        text = _text(data["text"] if "text" in data else data.get("message"), max_length)
        client_id = data.get("client_id")
        if client_id is not None and (
            not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID_LENGTH
        ):
            raise FrameError(
                "bad_frame",
                Msg(
                    "client_id must be a string of at most {max} characters.",
                    max=MAX_CLIENT_ID_LENGTH,
                ),
            )
        reply_to = data.get("reply_to")
        if reply_to is not None:
            reply_to = _message_id(data, "reply_to", _REPLY_TO_ID)
        return Outgoing(text, client_id, reply_to)
    if kind == "typing":
        return TYPING
    if kind == "read":
        return MarkRead(_message_id(data, "id", _READ_ID))
    if kind == "edit":
        message_id = _message_id(data, "id", _EDIT_ID)
        return Edit(message_id, _text(data.get("text"), max_length))
    if kind == "delete":
        return Delete(_message_id(data, "id", _DELETE_ID))
    if kind == "react":
        message_id = _message_id(data, "id", _REACT_ID)
        emoji = data.get("emoji")
        if not isinstance(emoji, str) or not is_single_emoji(emoji):
            raise FrameError("bad_emoji", N_("A reaction is one emoji, such as 👍."))
        return React(message_id, emoji)
    raise FrameError("unknown_type", Msg("Unknown frame type {kind}.", kind=repr(str(kind)[:40])))


def _message_id(data: dict, field: str, problem: str) -> int:
    """`data[field]` if it is a message id, else FrameError with `problem`."""
    value = data.get(field)
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise FrameError("bad_frame", problem)
    return value


def _text(text: object, max_length: int) -> str:
    """A message's text as the contract allows it, or FrameError saying why not."""
    if not isinstance(text, str):
        raise FrameError("bad_frame", N_("A message needs a text string."))
    if not text.strip():
        raise FrameError("empty_message", N_("The message is empty."))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameError(
            "bad_frame", N_("The text is not valid Unicode (lone surrogate).")
        ) from None
    if len(text) > max_length:
        raise FrameError(
            "message_too_long",
            nMsg(
                "Messages are at most {n} character ({sent} sent).",
                "Messages are at most {n} characters ({sent} sent).",
                max_length,
                sent=len(text),
            ),
        )
    return text


def message_body(
    room: str, username: str, text: str, client_id: str | None, reply_to: int | None = None
) -> str:
    """The part of a message after `"ts":<ts>` (the store script adds id and ts).

    Field order is fixed (the change script rewrites messages in this order):
    room, username, text, client_id, then the optional reply_to, edited,
    deleted, reactions and rev.
    """
    return (
        ',"room":'
        + json.dumps(room)
        + ',"username":'
        + json.dumps(username)
        + ',"text":'
        + json.dumps(text, ensure_ascii=False)
        + ',"client_id":'
        + json.dumps(client_id)
        + ("" if reply_to is None else f',"reply_to":{reply_to}')
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


def update_rev(frame: bytes) -> int | None:
    """The `rev` of an `update` frame, read from its fixed prefix (None: another frame)."""
    if not frame.startswith(UPDATE_PREFIX):
        return None
    end = frame.find(b",", len(UPDATE_PREFIX))
    try:
        return int(frame[len(UPDATE_PREFIX) : end])
    except ValueError:
        return None


def update_frame(rev: int, message: bytes) -> bytes:
    """`update`: a message's state after its change number `rev` (the store script
    builds the same bytes when it publishes)."""
    return UPDATE_PREFIX + str(rev).encode() + b',"message":' + message + b"}"


def history_frame(
    messages: Iterable[bytes],
    truncated: bool,
    rev: int | None = None,
    updates: Iterable[bytes] | None = None,
    more: bool = False,
) -> bytes:
    """`history`; with `rev`, the conversation's latest change number, with
    `updates`, the changes a resuming client missed; `more`: older held
    messages (newer than the client's `after`) are left to the history API."""
    frame = (
        b'{"type":"history","messages":['
        + b",".join(messages)
        + b'],"truncated":'
        + (b"true" if truncated else b"false")
        + b',"more":'
        + (b"true" if more else b"false")
    )
    if updates is not None:
        frame += b',"updates":[' + b",".join(updates) + b"]"
    if rev is not None:
        frame += b',"rev":' + str(rev).encode()
    return frame + b"}"


def typing_frame(username: str) -> bytes:
    return TYPING_PREFIX + json.dumps(username).encode() + b"}"


def typing_author(frame: bytes) -> str | None:
    """Who a `typing` frame is about (None: another frame)."""
    if not frame.startswith(TYPING_PREFIX):
        return None
    try:
        return json.loads(frame[len(TYPING_PREFIX) : -1])
    except ValueError:
        return None


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


def following_frame() -> bytes:
    """`conversations` on a sidebar socket once it follows the person's conversations:
    the list read from now on misses nothing, so the page reads it then."""
    return b'{"type":"conversations","following":true}'


def conversations_frame(conversation: str) -> bytes:
    """`conversations`: this person's list changed (added to a private room): refetch it."""
    return json.dumps({"type": "conversations", "changed": conversation}).encode()
