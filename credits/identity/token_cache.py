"""API token identities a web worker keeps in memory, forgotten as soon as they may change.

Identifying a token is a database round trip, and on a balance read it was a third
of the request's cost. On PostgreSQL a worker keeps the identity of each token it
has seen for up to ``ttl_seconds``, but only while a listener on the
``credits_identity`` channel is connected: every change to a token, a user or a
role notifies that channel when its transaction commits (migration 0021), and the
listener then forgets every identity. A revoked token, a deactivated user or a
revoked role therefore counts on the next request any worker answers after the
notification arrives, milliseconds after the commit; the time-to-live only bounds
how long an identity lives if a notification could ever be lost. While the
listener is not connected (starting, or the database restarting) nothing is kept
and every request reads the database.

A read that began before a change and ends after its notification must not put
the old identity back: each read carries the cache's generation from before it
started, and an identity is kept only if no notification (or reconnection) has
moved the generation since.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import psycopg
from sqlalchemy import Engine

from credits.identity.tokens import TokenIdentity, hash_secret

CHANNEL = "credits_identity"
DEFAULT_MAX_ENTRIES = 10_000
log = logging.getLogger(__name__)


class IdentityCache:
    """Token identities by secret hash, thread-safe, kept only while ``listening``."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, TokenIdentity]] = {}
        self._generation = 0
        self._listening = False

    @property
    def generation(self) -> int:
        """Read before identifying a token in the database; hand it to :meth:`keep`."""
        return self._generation

    @property
    def listening(self) -> bool:
        return self._listening

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, secret_hash: str) -> TokenIdentity | None:
        """The identity kept for this secret, unless it is older than the time-to-live."""
        entry = self._entries.get(secret_hash)
        if entry is None or not self._listening:
            return None
        kept_at, identity = entry
        if self._clock() - kept_at > self.ttl_seconds:
            with self._lock:
                if self._entries.get(secret_hash) is entry:
                    del self._entries[secret_hash]
            return None
        return identity

    def keep(self, secret_hash: str, identity: TokenIdentity, *, generation: int) -> None:
        """Keeps ``identity``, read at ``generation``, unless anything changed since."""
        with self._lock:
            if not self._listening or generation != self._generation:
                return
            if secret_hash not in self._entries and len(self._entries) >= self.max_entries:
                # Dicts keep insertion order: the first entry is the longest kept.
                del self._entries[next(iter(self._entries))]
            self._entries[secret_hash] = (self._clock(), identity)

    def note_use(self, secret_hash: str, at: datetime) -> None:
        """Records that the token's last use was just written as ``at``."""
        with self._lock:
            entry = self._entries.get(secret_hash)
            if entry is not None:
                kept_at, identity = entry
                self._entries[secret_hash] = (kept_at, replace(identity, last_used_at=at))

    def forget_all(self) -> None:
        """Something about tokens, users or roles changed: nothing kept still holds."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def set_listening(self, listening: bool) -> None:
        """Whether changes are being heard; identities are kept only while they are."""
        with self._lock:
            self._listening = listening
            self._generation += 1
            self._entries.clear()


# The triggers of migration 0021 that notify CHANNEL.
NOTIFYING_TRIGGERS = (
    "api_tokens_identity_changed",
    "api_tokens_identity_removed",
    "users_identity_changed",
    "users_identity_removed",
    "user_roles_identity_changed",
)


def _notifying(connection: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Whether every trigger that notifies CHANNEL is on the app's tables and fires
    (enabled for ordinary sessions: 'O', or always: 'A')."""
    row = connection.execute(
        "SELECT count(DISTINCT t.tgname) FROM pg_trigger t"
        " WHERE t.tgname = ANY(%s) AND t.tgenabled IN ('O', 'A')"
        " AND t.tgrelid IN (to_regclass('api_tokens'), to_regclass('users'),"
        " to_regclass('user_roles'))",
        [list(NOTIFYING_TRIGGERS)],
    ).fetchone()
    return row is not None and row[0] == len(NOTIFYING_TRIGGERS)


# The listener checks its connection every few seconds (check_seconds); a bound on
# unacknowledged data makes a check on a dead peer fail within about 20 s rather
# than the kernel's minutes, and keepalives cover the waits. An operator's own
# settings in the database URL win. Operators find the connection in
# pg_stat_activity by its application name.
LISTENER_APPLICATION_NAME = "credits-token-listener"
LISTENER_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 2,
    "tcp_user_timeout": 20_000,
}


def connector_for(engine: Engine) -> Callable[[], psycopg.Connection[tuple[object, ...]]]:
    """Opens a connection of its own, outside ``engine``'s pool, to the same server with
    the same parameters, in autocommit as LISTEN wants, named and with keepalives."""
    arguments, parameters = engine.dialect.create_connect_args(engine.url)

    def connect() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            *arguments,
            **{
                **LISTENER_KEEPALIVES,
                **parameters,
                "autocommit": True,
                "application_name": LISTENER_APPLICATION_NAME,
            },
        )

    return connect


class IdentityListener:
    """A daemon thread that listens on CHANNEL and empties ``cache`` on each
    notification; it reconnects after ``retry_seconds`` when its connection fails,
    and checks the connection every ``check_seconds`` without a notification."""

    def __init__(
        self,
        cache: IdentityCache,
        connect: Callable[[], psycopg.Connection[tuple[object, ...]]],
        *,
        retry_seconds: float = 1.0,
        check_seconds: float = 5.0,
        missing_triggers_wait_seconds: float = 60.0,
    ) -> None:
        self.cache = cache
        self._connect = connect
        self._retry_seconds = retry_seconds
        self._check_seconds = check_seconds
        self._missing_triggers_wait_seconds = missing_triggers_wait_seconds
        self._said_missing = False
        self._stopping = threading.Event()
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._thread = threading.Thread(target=self._run, name="credits-identity", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stops listening within ``check_seconds`` and forgets every identity."""
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except (psycopg.Error, OSError) as error:
                log.warning("token identity listener lost its connection: %s", error)
            finally:
                self.cache.set_listening(False)
                self._close()
            self._stopping.wait(self._retry_seconds)

    def _listen(self) -> None:
        connection = self._connection = self._connect()
        connection.execute(f"LISTEN {CHANNEL}")
        if not self._triggers_in_place(connection):
            return
        self.cache.set_listening(True)
        while not self._stopping.is_set():
            heard = False
            for _ in connection.notifies(timeout=self._check_seconds, stop_after=1):
                self.cache.forget_all()
                heard = True
            # The check also shows a dead server, which a wait would not.
            if not heard and not self._triggers_in_place(connection):
                return

    def _triggers_in_place(self, connection: psycopg.Connection[tuple[object, ...]]) -> bool:
        """Whether the triggers are there; without them nothing would ever be heard, so
        nothing is kept: the caller stops listening, and the next try is a while later
        (said once as an error, then quietly)."""
        if _notifying(connection):
            self._said_missing = False
            return True
        report = log.debug if self._said_missing else log.error
        report(
            "the database has no identity change triggers (migration 0021 or later is "
            "not applied): API token identities are read on every request"
        )
        self._said_missing = True
        self.cache.set_listening(False)
        self._close()
        self._stopping.wait(self._missing_triggers_wait_seconds)
        return False

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):  # already broken: nothing to close
                connection.close()


def identify(
    cache: IdentityCache | None,
    read: Callable[[str], TokenIdentity],
    record_use: Callable[[TokenIdentity, datetime], None],
    *,
    secret: str,
    now: datetime,
) -> TokenIdentity:
    """The identity of ``secret``: kept in ``cache``, or ``read`` from the database by
    the secret's hash (and then kept). A kept identity is still checked for expiry.
    ``record_use`` writes the use at ``now`` when one is due (once a minute per token).

    Raises what :func:`credits.identity.tokens.identify_token` raises.
    """
    hashed = hash_secret(secret)
    if cache is None:
        identity = read(hashed)
    else:
        generation = cache.generation
        kept = cache.find(hashed)
        if kept is None:
            identity = read(hashed)
            cache.keep(hashed, identity, generation=generation)
        else:
            kept.check_unexpired(now)
            identity = kept
    if identity.use_due(now):
        record_use(identity, now)
        if cache is not None:
            cache.note_use(hashed, now)
    return identity


def start_listening(engine: Engine, *, ttl_seconds: float) -> IdentityCache | None:
    """A cache with its listener running, for a web worker on PostgreSQL; None where
    identities are not kept (SQLite, or ``ttl_seconds`` 0)."""
    if engine.dialect.name != "postgresql" or ttl_seconds <= 0:
        return None
    cache = IdentityCache(ttl_seconds=ttl_seconds)
    IdentityListener(cache, connector_for(engine)).start()
    return cache
