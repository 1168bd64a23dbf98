"""Every Redis key and channel chatapp uses, in one place.

All live under the `chatapp:` prefix, so an operator can see the whole layout
here and share a Redis with other programs.

Laid out for a Redis Cluster, where one Lua script may only touch keys of one
hash slot: every key of one conversation carries the hash tag `{room:<name>}`
(its id counter, history, changes, rev, presence, rate counters, meta,
members and its pub/sub channel), and the users zset and every user's hash
share the tag `{users}` (the superuser guard reads them together). Every
other key is used alone. (Before layout 2 the tags were not there:
`store.layout` renames old keys once.)

One exception to the prefix: a session is
kept by aiohttp-session's RedisStorage under `<session.cookie_name>_<id>`
(`chatapp_session_<id>` by default), a name it builds from the cookie name.
`Keys.session` builds that name, and everything of ours that touches a
session key calls it.
"""

from __future__ import annotations

PREFIX = "chatapp:"


class Keys:
    """Names of every Redis key and channel (all `bytes`-safe ASCII)."""

    secret = PREFIX + "secret"
    # A random token set once: if it is gone, Redis lost its data (restarted
    # without persistence, or flushed) and room ids have started over.
    epoch = PREFIX + "epoch"
    users = PREFIX + "{users}"  # zset: lower-case name -> joined time
    rooms = PREFIX + "rooms"  # zset: room name -> last activity time
    # hash: lower-case room name -> the room's name as first created, so names
    # are unique regardless of letter case (another casing finds the room).
    room_names = PREFIX + "roomnames"
    # zset: private room or direct conversation -> last activity (the admin page's list)
    private_conversations = PREFIX + "conversations"
    audit = PREFIX + "audit"  # list, newest first, capped: admin actions (JSON)
    # list, newest first, capped: sign-ins, failures, lockouts, logouts, password
    # changes, sessions ended (JSON); apart, so a flood of failures cannot push
    # the admin actions out.
    signin_audit = PREFIX + "audit:signins"

    @staticmethod
    def user(name: str) -> str:
        """hash: a user's name, password hash, flags (in the users zset's slot)."""
        return f"{PREFIX}{{users}}:{name.lower()}"

    @staticmethod
    def user_sessions(name: str) -> str:
        return f"{PREFIX}user:{name.lower()}:sessions"

    @staticmethod
    def session(cookie_name: str, session_id: str) -> str:
        """A session, as aiohttp-session's RedisStorage names it: `<cookie name>_<id>`.

        The one key outside the `chatapp:` prefix: the storage builds it from
        `session.cookie_name`.
        """
        return f"{cookie_name}_{session_id}"

    @staticmethod
    def user_conversations(name: str) -> str:
        """zset: the conversations in a person's sidebar -> when they joined it."""
        return f"{PREFIX}user:{name.lower()}:conversations"

    @staticmethod
    def user_read(name: str) -> str:
        """hash: conversation -> the id a person has read up to."""
        return f"{PREFIX}user:{name.lower()}:read"

    @staticmethod
    def _room(room: str, part: str) -> str:
        return f"{PREFIX}{{room:{room}}}:{part}"

    @staticmethod
    def room_meta(room: str) -> str:
        """hash of a private room: kind, owner (lower case), owner's name, created."""
        return Keys._room(room, "meta")

    @staticmethod
    def room_access(room: str) -> str:
        """set of a private room: the lower-case names of its members (owner included)."""
        return Keys._room(room, "access")

    @staticmethod
    def room_seq(room: str) -> str:
        return Keys._room(room, "seq")

    @staticmethod
    def room_history(room: str) -> str:
        return Keys._room(room, "history")

    @staticmethod
    def room_rev(room: str) -> str:
        """The room's change number: every edit, delete or reaction change takes the next."""
        return Keys._room(room, "rev")

    @staticmethod
    def room_changes(room: str) -> str:
        """zset: id of a changed message -> the rev of its latest change."""
        return Keys._room(room, "changes")

    @staticmethod
    def room_state(room: str) -> list[str]:
        """The keys holding a room's messages, which live and expire together."""
        return [
            Keys.room_seq(room),
            Keys.room_history(room),
            Keys.room_rev(room),
            Keys.room_changes(room),
            Keys.room_published(room),
        ]

    @staticmethod
    def room_published(room: str) -> str:
        """With `redis.wait_replicas`: the newest id published (messages are published
        in id order once replicated, by `chat.broker`'s _PUBLISH_UPTO)."""
        return Keys._room(room, "published")

    @staticmethod
    def room_members(room: str) -> str:
        """zset: "<worker>|<username>" -> expiry time of that presence record."""
        return Keys._room(room, "members")

    @staticmethod
    def room_channel(room: str) -> str:
        return Keys._room(room, "channel")

    control_channel = PREFIX + "control"
    # Held for one presence refresh period by the worker sweeping rooms no live
    # worker has a socket in (see chat.presence).
    presence_sweep_lease = PREFIX + "presence:sweep"

    @staticmethod
    def room_of_channel(channel: str) -> str:
        return channel[len(PREFIX) + len("{room:") : -len("}:channel")]

    @staticmethod
    def send_rate(room: str, username: str) -> str:
        """Counter of what `username` sent to `room` (messages and changes) in the
        current rate window; in the room's slot, so the store script can count it."""
        return Keys._room(room, f"rate:{username.lower()}")

    @staticmethod
    def rooms_created(username: str) -> str:
        """Counter of rooms `username` created in the current hour (expires with it)."""
        return f"{PREFIX}quota:rooms:{username.lower()}"

    # Throttles (chatapp.accounts.throttle): one counter per key, names and
    # addresses already made short and safe by the throttle.
    @staticmethod
    def login_attempts_pair(name: str, address: str) -> str:
        return f"{PREFIX}throttle:login:pair:{name}:{address}"

    @staticmethod
    def login_attempts_address(address: str) -> str:
        return f"{PREFIX}throttle:login:addr:{address}"

    @staticmethod
    def login_attempts_user(name: str) -> str:
        return f"{PREFIX}throttle:login:user:{name}"

    @staticmethod
    def registrations_address(address: str) -> str:
        return f"{PREFIX}throttle:register:addr:{address}"
