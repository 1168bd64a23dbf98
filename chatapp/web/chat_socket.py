"""The sockets `/ws/chat/{room}/` and `/ws/dm/{username}/`: handshake, read loop, frames.

This handler is the only reader of its socket. Who the user is is settled
here before the upgrade (session cookie and Origin); the page middlewares
are skipped (`middlewares.socket_gate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

from aiohttp import WSMsgType, hdrs, web
from redis.exceptions import RedisError

from chatapp.appkeys import accounts_key, chat_key, config_key
from chatapp.chat.broker import (
    MAX_REACTIONS,
    Forbidden,
    NotHeld,
    RateLimited,
    TooManyReactions,
    Unavailable,
)
from chatapp.chat.conversations import Conversation, dm_name
from chatapp.chat.frames import (
    Delete,
    Edit,
    FrameError,
    MarkRead,
    Outgoing,
    React,
    Typing,
    parse_client_frame,
)
from chatapp.chat.hub import Connection
from chatapp.chat.service import Refused
from chatapp.chat.wire import POLICY, drop_connection
from chatapp.i18n import N_, nMsg
from chatapp.names import ROOM_RE, USERNAME_RE
from chatapp.web.languages import language_of
from chatapp.web.middlewares import DM_SOCKET_ROUTE, SOCKET_ROUTE, socket_user
from chatapp.web.netutil import Network, parse_networks, request_scheme
from chatapp.web.params import whole_number
from chatapp.web.socket_check import upgrade_problem

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def origin_allowed(
    request: web.Request, allowed: list[str], trusted_proxies: Sequence[Network] = ()
) -> bool:
    """The handshake's Origin is configured exactly, or (none configured) this very site.

    "This site" is the request's scheme and `Host`: `https://host` is another
    origin than `http://host`. The scheme is the connection's, or
    `X-Forwarded-Proto` from a trusted proxy (`netutil.request_scheme`).
    """
    origin = request.headers.get("Origin")
    if not origin:
        return False
    if allowed:
        return origin.rstrip("/") in {o.rstrip("/") for o in allowed}
    parts = urlsplit(origin)
    # The Host header, not `request.host`: that is cached on the request (see
    # `middlewares.socket_gate`). A handshake without Host matches nothing.
    host = request.headers.get(hdrs.HOST, "")
    return (
        bool(host)
        and parts.scheme == request_scheme(request, trusted_proxies)
        and parts.netloc.lower() == host.lower()
    )


def _query(request: web.Request) -> dict[str, list[str]]:
    # From the URL, not `request.query`, which is cached on the request.
    return parse_qs(request.rel_url.raw_query_string)


def _parse_number(query: dict[str, list[str]], name: str, what: str) -> int | None:
    """`?after=ID` or `?rev=R`: absent, or a whole number (else 400)."""
    raw = query.get(name, [None])[0]
    if raw is None or raw == "":
        return None
    number = whole_number(raw)
    if number is None:
        raise web.HTTPBadRequest(text=f"{name} must be {what} (a whole number).")
    return number


async def _conversation(
    request: web.Request, target: str, username: str, direct: bool
) -> Conversation:
    """The conversation a handshake asks for, if `username` may read it; else 404 (403 for
    a direct conversation with a disabled account)."""
    chat = request.app[chat_key]
    if direct:
        peer = (
            await request.app[accounts_key].get(target) if USERNAME_RE.fullmatch(target) else None
        )
        if peer is None:
            raise web.HTTPNotFound(text="No such user.")
        if peer.disabled:
            raise web.HTTPForbidden(text="This account is disabled.")
        return Conversation(dm_name(username, peer.username), "dm")
    if not ROOM_RE.fullmatch(target):
        raise web.HTTPNotFound(text="No such room: room names are letters, digits and _.")
    conversation = await chat.conversations.find_readable(target, username)
    if conversation is None:  # a private room of others: it does not exist for them
        raise web.HTTPNotFound(text="No such room.")
    return conversation


# One handler, and no helper coroutine around its read loop: every frame on a
# socket's stack, and every local in it, is held for as long as the socket is open.
@routes.get("/ws/dm/{username}/", name=DM_SOCKET_ROUTE)
@routes.get("/ws/chat/{room}/", name=SOCKET_ROUTE)
async def chat_socket(request: web.Request) -> web.WebSocketResponse:
    direct = "username" in request.match_info
    target = request.match_info["username"] if direct else request.match_info["room"]
    room = target
    # Who asks comes first: anyone not logged in gets 403, whatever the room.
    try:
        who = await socket_user(request)
        if who is None:
            raise web.HTTPForbidden(text="Log in first.")
        username, session_id = who
        conversation = await _conversation(request, target, username, direct)
    except RedisError as exc:
        # An outage, not a bug: one line, and a status that says "come back".
        log.warning("refused socket to %r: Redis unavailable (%s)", room, exc)
        raise web.HTTPServiceUnavailable(text="Store unavailable; try again.") from None
    room = conversation.name
    config = request.app[config_key]
    security = config.security
    if not origin_allowed(
        request, security.allowed_origins, parse_networks(security.trusted_proxies)
    ):
        log.warning("refused socket from origin %r", request.headers.get("Origin"))
        raise web.HTTPForbidden(text="Origin not allowed.")
    query = _query(request)
    after = _parse_number(query, "after", "a message id")
    rev = _parse_number(query, "rev", "a change number")
    # `?sidebar=1`: this socket's page shows the person's conversations, so it
    # follows them (an `activity` frame per message elsewhere). Opt-in: a socket
    # that shows one conversation costs nothing per message of the others.
    sidebar = query.get("sidebar", [""])[0] == "1"
    problem = upgrade_problem(request)
    if problem:  # aiohttp would answer 400 without a word in the log
        log.warning("refused socket to %r: %s", room, problem)
        raise web.HTTPBadRequest(text=f"Not a WebSocket handshake: {problem}.")
    chat = request.app[chat_key]
    limits = chat.limits
    # No permessage-deflate: the hub writes one pre-framed copy of each message to
    # every socket, which a per-socket compressor would forbid (and chat frames
    # are small; a zlib context costs far more memory than a socket).
    # No aiohttp heartbeat and no autoping: the worker's one heartbeat pings
    # silent sockets (heartbeat.py), and this loop answers pings and notes pongs.
    ws = web.WebSocketResponse(max_msg_size=limits.max_frame_bytes, autoping=False, compress=False)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the peer left during the handshake
        return ws
    conn = Connection(
        ws,
        transport,
        username,
        room,
        max_buffer=limits.send_buffer_bytes,
        session_id=session_id,
        # The page's language (its cookie, else Accept-Language): error details speak it.
        lang=language_of(request),
    )
    max_length = limits.max_message_length
    try:
        await chat.join(conn, after, conversation, rev=rev, sidebar=sidebar)
        who = conversation = query = None  # not kept for the socket's life
        # The read loop is inline (not a helper coroutine): every frame on a
        # socket's stack is held for as long as the socket is open.
        async for msg in ws:
            conn.heard()
            if msg.type == WSMsgType.TEXT:
                await _on_text(chat, conn, msg.data, max_length)
            elif msg.type == WSMsgType.BINARY:
                chat.send_error(
                    conn, "bad_frame", N_("Binary frames are not accepted; send JSON text.")
                )
            elif msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.ERROR:
                log.info("socket of %s in %s: %s", conn.username, room, ws.exception())
                break
    except Refused as refusal:
        log.info("socket of %s in %s refused: %s", username, room, refusal.code)
        chat.send_error(conn, refusal.code, refusal.detail)
        await conn.close(POLICY, refusal.code)
    except (Unavailable, RedisError, OSError, TimeoutError) as exc:
        # After the upgrade there is no HTTP answer to give: log, close, leave.
        log.warning("socket of %s in %s ended: store unavailable (%s)", username, room, exc)
    finally:
        # Shielded: a cancelled handler (peer gone, handler_cancellation) must
        # still leave the room, or presence would show a ghost until expiry.
        leaving = asyncio.ensure_future(_leave(chat, conn))
        try:
            await asyncio.shield(leaving)
        finally:
            if not ws.closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.close(), 2.0)
            await _drop_if_stuck(request, conn)
    return ws


async def _drop_if_stuck(request: web.Request, conn: Connection, grace: float = 2.0) -> None:
    """Reset the connection if its peer still leaves data unread after `grace` s.

    A closed socket's transport waits until its buffered data is sent (the
    close frame last): a peer that stopped reading (a frozen process, one that
    missed its heartbeat or overflowed its queue) would keep the connection and
    that buffer forever. A peer only a little behind still gets its close frame.
    """
    transport = request.transport
    for _ in range(round(grace / 0.1)):
        if transport is None or not transport.get_write_buffer_size():
            return
        await asyncio.sleep(0.1)
    if transport is None or not transport.get_write_buffer_size():
        return
    log.info(
        "dropped the connection of %s in %s: %d bytes left unread",
        conn.username,
        conn.room,
        transport.get_write_buffer_size(),
    )
    drop_connection(transport)


async def _leave(chat, conn: Connection) -> None:
    try:
        await chat.leave(conn)
    except Exception as exc:  # Redis down: presence records expire by themselves
        why = str(exc) or type(exc).__name__
        log.warning("leave of %s in %s not recorded: %s", conn.username, conn.room, why)


async def _on_text(chat, conn: Connection, data: str, max_length: int) -> None:
    try:
        frame = parse_client_frame(data, max_length)
    except FrameError as error:
        chat.send_error(conn, error.code, error.detail)
        return
    if isinstance(frame, MarkRead):
        try:
            await chat.mark_read(conn, frame.id)
        except (RedisError, OSError) as exc:
            log.warning("read marker of %s in %s not stored: %s", conn.username, conn.room, exc)
        return
    if isinstance(frame, Typing):
        try:
            await chat.typing(conn)
        except (RedisError, OSError) as exc:  # not stored anyway: nothing is lost
            log.info("typing of %s in %s not relayed: %s", conn.username, conn.room, exc)
        return
    client_id = frame.client_id if isinstance(frame, Outgoing) else None
    try:
        if isinstance(frame, Outgoing):
            await chat.send(conn, frame.text, frame.client_id, frame.reply_to)
        elif isinstance(frame, Edit):
            await chat.edit(conn, frame.id, frame.text)
        elif isinstance(frame, Delete):
            await chat.delete(conn, frame.id)
        else:
            await chat.react(conn, frame.id, frame.emoji)
    except RateLimited:
        detail = (
            N_("Too many messages; slow down. Not sent.")
            if isinstance(frame, Outgoing)
            else N_("Too many messages; slow down. Not done.")
        )
        chat.send_error(conn, "rate_limited", detail, client_id)
    except NotHeld:
        chat.send_error(conn, "not_found", _NOT_HELD[type(frame)], client_id)
    except Forbidden:
        chat.send_error(conn, "forbidden", _FORBIDDEN[type(frame)])
    except TooManyReactions:
        chat.send_error(
            conn,
            "too_many_reactions",
            nMsg(
                "A message takes at most {n} different reaction.",
                "A message takes at most {n} different reactions.",
                MAX_REACTIONS,
            ),
        )
    except Unavailable as exc:
        kind = "message" if isinstance(frame, Outgoing) else "change"
        if exc.unreplicated:
            kind += "_unreplicated"
        elif exc.maybe_stored:
            kind += "_maybe_stored"
        chat.send_error(conn, "unavailable", _UNAVAILABLE[kind], client_id)


# Error details: msgids, translated into the socket's language by ChatService.send_error.
_NOT_HELD = {
    Outgoing: N_("The message you reply to is not held here any more. Not sent."),
    Edit: N_("No such message here (deleted, or too old to be held)."),
    Delete: N_("No such message here (deleted already, or too old to be held)."),
    React: N_("No such message here (deleted, or too old to be held)."),
}
_FORBIDDEN = {
    Edit: N_("Only its author can edit a message."),
    Delete: N_("Only its author, the room's owner or an administrator can delete a message."),
}
_UNAVAILABLE = {
    "message_unreplicated": N_(
        "Redis did not confirm the message on enough replicas in time: it may still be "
        "stored, and then it will show up."
    ),
    "change_unreplicated": N_(
        "Redis did not confirm the change on enough replicas in time: it may still be "
        "stored, and then it will show up."
    ),
    "message_maybe_stored": N_(
        "Redis did not answer in time: the message may still be stored, and then it will show up."
    ),
    "change_maybe_stored": N_(
        "Redis did not answer in time: the change may still be stored, and then it will show up."
    ),
    "message": N_("The message was not stored (Redis unavailable)."),
    "change": N_("The change was not stored (Redis unavailable)."),
}
