"""A web worker's memory of API token identities (credits/identity/token_cache.py),
without a database: kept only while listening, never across a change it may have
missed, for no longer than its time-to-live, and still checked for expiry."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from credits.db import utcnow
from credits.identity.actor import Actor
from credits.identity.errors import TokenExpired
from credits.identity.models import Role
from credits.identity.token_cache import IdentityCache, identify
from credits.identity.tokens import TokenIdentity, hash_secret

SECRET = "crd_abcdefgh" + "x" * 35


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _identity(token_id: int = 1, *, expires_at: datetime | None = None) -> TokenIdentity:
    return TokenIdentity(
        actor=Actor.for_user(
            user_id=7,
            email="ada@example.org",
            roles=frozenset({Role.RESEARCHER}),
            scopes=None,
            token_id=token_id,
        ),
        token_id=token_id,
        prefix="crd_abcdefgh",
        expires_at=expires_at,
        last_used_at=utcnow(),
    )


class Database:
    """Stands in for the database: counts reads and recorded uses."""

    def __init__(self, identity: TokenIdentity) -> None:
        self.identity = identity
        self.reads = 0
        self.uses: list[int] = []
        self.used_at: list[datetime] = []

    def read(self, secret_hash: str) -> TokenIdentity:
        assert secret_hash == hash_secret(SECRET)
        self.reads += 1
        return self.identity

    def record_use(self, identity: TokenIdentity, at: datetime) -> None:
        self.uses.append(identity.token_id)
        self.used_at.append(at)


def _listening_cache(clock: Clock | None = None, **options: int) -> IdentityCache:
    cache = IdentityCache(ttl_seconds=30, clock=clock or Clock(), **options)
    cache.set_listening(True)
    return cache


def test_a_kept_identity_answers_later_requests_without_a_read() -> None:
    database = Database(_identity())
    cache = _listening_cache()
    now = utcnow()

    first = identify(cache, database.read, database.record_use, secret=SECRET, now=now)
    second = identify(cache, database.read, database.record_use, secret=SECRET, now=now)

    assert first == second == database.identity
    assert database.reads == 1


def test_nothing_is_kept_while_no_listener_hears_changes() -> None:
    database = Database(_identity())
    cache = IdentityCache(ttl_seconds=30)
    for _ in range(2):
        identify(cache, database.read, database.record_use, secret=SECRET, now=utcnow())
    assert database.reads == 2
    assert len(cache) == 0


def test_a_change_heard_makes_the_next_request_read_again() -> None:
    database = Database(_identity())
    cache = _listening_cache()
    identify(cache, database.read, database.record_use, secret=SECRET, now=utcnow())

    cache.forget_all()
    identify(cache, database.read, database.record_use, secret=SECRET, now=utcnow())

    assert database.reads == 2


def test_an_identity_read_before_a_change_is_not_kept_after_it() -> None:
    cache = _listening_cache()
    started_at = cache.generation  # the read starts
    cache.forget_all()  # a revocation commits and is heard before the read ends
    cache.keep(hash_secret(SECRET), _identity(), generation=started_at)
    assert cache.find(hash_secret(SECRET)) is None


def test_losing_the_listener_forgets_everything_and_keeps_nothing_new() -> None:
    cache = _listening_cache()
    cache.keep(hash_secret(SECRET), _identity(), generation=cache.generation)
    assert cache.find(hash_secret(SECRET)) is not None

    cache.set_listening(False)
    assert cache.find(hash_secret(SECRET)) is None
    cache.keep(hash_secret(SECRET), _identity(), generation=cache.generation)
    assert len(cache) == 0


def test_an_identity_is_read_again_after_its_time_to_live() -> None:
    clock = Clock()
    cache = _listening_cache(clock)
    cache.keep(hash_secret(SECRET), _identity(), generation=cache.generation)
    clock.now += 30
    assert cache.find(hash_secret(SECRET)) is not None
    clock.now += 0.5
    assert cache.find(hash_secret(SECRET)) is None
    assert len(cache) == 0


def test_a_kept_token_past_its_expiry_is_refused() -> None:
    now = utcnow()
    database = Database(_identity(expires_at=now + timedelta(seconds=5)))
    cache = _listening_cache()
    identify(cache, database.read, database.record_use, secret=SECRET, now=now)

    with pytest.raises(TokenExpired, match="crd_abcdefgh… expired at"):
        identify(
            cache,
            database.read,
            database.record_use,
            secret=SECRET,
            now=now + timedelta(seconds=5),
        )
    assert database.reads == 1


def test_a_kept_token_records_its_use_once_a_minute() -> None:
    start = utcnow()
    database = Database(_identity())
    database.identity = TokenIdentity(
        **{**database.identity.__dict__, "last_used_at": start - timedelta(minutes=5)}
    )
    cache = _listening_cache()

    for seconds in (0, 10, 59, 60, 61, 125):
        identify(
            cache,
            database.read,
            database.record_use,
            secret=SECRET,
            now=start + timedelta(seconds=seconds),
        )

    assert database.reads == 1
    assert database.uses == [1, 1, 1]  # at 0 s, 60 s and 125 s
    assert database.used_at == [start + timedelta(seconds=s) for s in (0, 60, 125)]


def test_the_longest_kept_identity_makes_room_when_full() -> None:
    cache = _listening_cache(max_entries=2)
    for n in range(3):
        cache.keep(f"hash-{n}", _identity(n), generation=cache.generation)
    assert len(cache) == 2
    assert cache.find("hash-0") is None
    assert cache.find("hash-1") is not None
    assert cache.find("hash-2") is not None
