"""Token identities kept by web workers on PostgreSQL: every change to who a token
stands for notifies the ``credits_identity`` channel at commit (migration 0021),
listeners forget what they kept, and a listener that loses its connection keeps
nothing until it is back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial

import psycopg
import pytest
from conftest import (
    create_migrated_postgres_database,
    create_postgres_database,
    drop_postgres_database,
)
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from credits.db import make_engine, make_session_factory, session_scope, utcnow
from credits.identity import account, password_reset, service, tokens
from credits.identity.actor import Actor
from credits.identity.errors import TokenOwnerInactive, TokenRevoked
from credits.identity.models import Role
from credits.identity.token_cache import (
    CHANNEL,
    LISTENER_APPLICATION_NAME,
    IdentityCache,
    IdentityListener,
    connector_for,
    identify,
)
from credits.identity.tokens import TokenIdentity
from credits.migrate import upgrade
from credits.notifications.models import OutboxMessage

pytestmark = pytest.mark.postgres
ACTOR = Actor.system("test")
DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    url, admin_url = create_migrated_postgres_database()
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop_postgres_database(url, admin_url)


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def _user_with_token(
    factory: sessionmaker[Session], email: str, workers: list[Worker] | None = None
) -> str:
    """A new user (their role notifies the channel) and token, once ``workers`` have
    heard that notification: a late one would empty their caches mid-test."""
    before = [worker.cache.generation for worker in workers or []]
    with session_scope(factory) as session:
        service.create_user(session, email=email, name="Ada", roles=["researcher"], actor=ACTOR)
        secret = tokens.create_token(session, email=email, actor=ACTOR).secret
    for worker, generation in zip(workers or [], before, strict=True):
        _eventually(partial(_heard_since, worker, generation), "hearing the user")
    return secret


def _tries_logged(caplog: pytest.LogCaptureFixture, count: int) -> bool:
    return sum("no identity change triggers" in r.getMessage() for r in caplog.records) >= count


def _forgot(worker: Worker) -> bool:
    return len(worker.cache) == 0


def _heard_since(worker: Worker, generation: int) -> bool:
    return worker.cache.generation > generation


def _deactivate(session: Session, email: str) -> None:
    # No service deactivates an account yet; operators do it in SQL.
    session.execute(text("UPDATE users SET is_active = false WHERE email = :e"), {"e": email})


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {DEADLINE_S} s"
        time.sleep(0.01)


class Worker:
    """One web worker's cache and listener, reading tokens from ``factory``."""

    def __init__(self, engine: Engine, factory: sessionmaker[Session]) -> None:
        self.cache = IdentityCache(ttl_seconds=300)
        self.listener = IdentityListener(
            self.cache, connector_for(engine), retry_seconds=0.2, check_seconds=0.5
        )
        self.factory = factory
        self.reads = 0
        self.listener.start()
        _eventually(lambda: self.cache.listening, "listening")

    def read(self, secret_hash: str) -> TokenIdentity:
        self.reads += 1
        with session_scope(self.factory) as session:
            return tokens.identify_token(session, secret_hash=secret_hash)

    def record_use(self, identity: TokenIdentity, at: datetime) -> None:
        with session_scope(self.factory) as session:
            tokens.mark_token_used(session, token_id=identity.token_id, at=at)

    def identify(self, secret: str) -> TokenIdentity:
        return identify(self.cache, self.read, self.record_use, secret=secret, now=utcnow())


@pytest.fixture
def workers(engine: Engine, factory: sessionmaker[Session]) -> Iterator[list[Worker]]:
    started = [Worker(engine, factory), Worker(engine, factory)]
    yield started
    for worker in started:
        worker.listener.stop()


def _notifications(engine: Engine) -> psycopg.Connection[tuple[object, ...]]:
    connection = connector_for(engine)()
    connection.execute(f"LISTEN {CHANNEL}")
    return connection


def _heard(connection: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """What the channel carried up to a marker this function sends itself."""
    connection.execute(f"NOTIFY {CHANNEL}, 'marker'")
    heard: list[str] = []
    for notice in connection.notifies(timeout=DEADLINE_S):
        if notice.payload == "marker":
            return heard
        heard.append(notice.payload)
    pytest.fail("the marker notification never arrived")


def test_revoking_a_token_makes_every_worker_forget_it(
    workers: list[Worker], factory: sessionmaker[Session]
) -> None:
    secret = _user_with_token(factory, "revoked@example.org", workers)
    for worker in workers:
        worker.identify(secret)
        worker.identify(secret)
    assert [worker.reads for worker in workers] == [1, 1]

    with session_scope(factory) as session:
        token_id = tokens.identify_token(session, secret=secret).token_id
        tokens.revoke_token(session, token_id=token_id, actor=ACTOR)

    for worker in workers:
        _eventually(partial(_forgot, worker), "forgetting")
        with pytest.raises(TokenRevoked):
            worker.identify(secret)


def _link_token(session: Session, email: str) -> str:
    """A reset link's token for the account, from the mail queued for it."""
    link = "https://credits.example.org/reset-password/"
    row_id = password_reset.request_reset(
        session, email=email, link_for=lambda token: link + token, minutes=60
    )
    message = session.get(OutboxMessage, row_id)
    assert message is not None
    return message.body.split(link, 1)[1].split()[0]


@pytest.mark.parametrize("recovery", ["password reset", "sign out everywhere"])
def test_recovering_the_account_makes_every_worker_refuse_its_tokens(
    workers: list[Worker], factory: sessionmaker[Session], recovery: str
) -> None:
    email = f"recovered-{recovery.replace(' ', '-')}@example.org"
    secret = _user_with_token(factory, email, workers)
    with session_scope(factory) as session:
        # Neither a password nor a reset link changes who a token stands for: no notice.
        service.set_password(session, email=email, password="an old long password", actor=ACTOR)
        link = _link_token(session, email)
    for worker in workers:
        worker.identify(secret)
        worker.identify(secret)
    assert [worker.reads for worker in workers] == [1, 1]

    with session_scope(factory) as session:
        if recovery == "password reset":
            password_reset.reset_password(session, token=link, password="a brand new password")
        else:
            account.sign_out_everywhere(session, actor=service.actor_for_email(session, email))

    for worker in workers:
        _eventually(partial(_forgot, worker), "forgetting")
        with pytest.raises(TokenRevoked):
            worker.identify(secret)


def test_deactivating_the_owner_makes_the_workers_refuse_the_token(
    workers: list[Worker], factory: sessionmaker[Session]
) -> None:
    secret = _user_with_token(factory, "deactivated@example.org", workers)
    workers[0].identify(secret)

    with session_scope(factory) as session:
        _deactivate(session, "deactivated@example.org")

    _eventually(lambda: len(workers[0].cache) == 0, "forgetting")
    with pytest.raises(TokenOwnerInactive):
        workers[0].identify(secret)


def test_a_role_granted_shows_on_the_next_request(
    workers: list[Worker], factory: sessionmaker[Session]
) -> None:
    secret = _user_with_token(factory, "promoted@example.org", workers)
    assert workers[0].identify(secret).actor.roles == frozenset({Role.RESEARCHER})

    with session_scope(factory) as session:
        service.grant_role(session, email="promoted@example.org", role="funder", actor=ACTOR)

    _eventually(lambda: len(workers[0].cache) == 0, "forgetting")
    assert workers[0].identify(secret).actor.roles == {Role.RESEARCHER, Role.FUNDER}


def test_each_identity_change_notifies_and_recording_a_use_does_not(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    secret = _user_with_token(factory, "changes@example.org")
    listening = _notifications(engine)
    try:
        with session_scope(factory) as session:
            token_id = tokens.identify_token(session, secret=secret).token_id
            tokens.mark_token_used(session, token_id=token_id, at=utcnow())
        assert _heard(listening) == []

        with session_scope(factory) as session:
            service.grant_role(session, email="changes@example.org", role="reviewer", actor=ACTOR)
        assert _heard(listening) == ["user_roles"]
        with session_scope(factory) as session:
            _deactivate(session, "changes@example.org")
        assert _heard(listening) == ["users"]
        with session_scope(factory) as session:
            tokens.revoke_token(session, token_id=token_id, actor=ACTOR)
        assert _heard(listening) == ["api_tokens"]
        with session_scope(factory) as session:
            session.execute(text("DELETE FROM api_tokens WHERE id = :id"), {"id": token_id})
        assert _heard(listening) == ["api_tokens"]
    finally:
        listening.close()


def test_a_listener_that_loses_its_connection_keeps_nothing_until_it_is_back(
    workers: list[Worker], factory: sessionmaker[Session], engine: Engine
) -> None:
    worker = workers[0]
    secret = _user_with_token(factory, "reconnect@example.org", workers)
    worker.identify(secret)
    assert len(worker.cache) == 1
    generation = worker.cache.generation

    with engine.connect() as connection:
        ended = connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :name"
            ),
            {"name": LISTENER_APPLICATION_NAME},
        ).all()
    assert ended

    # Lost (the generation moves and everything is forgotten), then listening again.
    _eventually(lambda: worker.cache.generation >= generation + 2, "reconnecting")
    _eventually(lambda: worker.cache.listening, "listening again")
    assert len(worker.cache) == 0
    worker.identify(secret)
    assert len(worker.cache) == 1
    with session_scope(factory) as session:
        service.grant_role(session, email="reconnect@example.org", role="funder", actor=ACTOR)
    _eventually(lambda: len(worker.cache) == 0, "hearing changes after reconnecting")


def test_without_the_notifying_triggers_a_worker_keeps_nothing_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, admin_url = create_postgres_database()
    engine = make_engine(url)
    try:
        upgrade(url, "0020")  # before migration 0021's triggers
        factory = make_session_factory(engine)
        cache = IdentityCache(ttl_seconds=300)
        listener = IdentityListener(
            cache, connector_for(engine), retry_seconds=0.1, missing_triggers_wait_seconds=0.1
        )
        caplog.set_level(logging.DEBUG, logger="credits.identity.token_cache")
        listener.start()
        try:
            secret = _user_with_token(factory, "untriggered@example.org")
            _eventually(partial(_tries_logged, caplog, 3), "three tries")
            assert not cache.listening
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1
            assert "no identity change triggers" in errors[0].getMessage()
            hashed = tokens.hash_secret(secret)
            with session_scope(factory) as session:
                identity = tokens.identify_token(session, secret_hash=hashed)
            cache.keep(hashed, identity, generation=cache.generation)
            assert len(cache) == 0
        finally:
            listener.stop()
    finally:
        engine.dispose()
        drop_postgres_database(url, admin_url)


def test_a_trigger_disabled_while_listening_stops_the_keeping(
    workers: list[Worker], factory: sessionmaker[Session], engine: Engine
) -> None:
    worker = workers[0]
    worker.identify(_user_with_token(factory, "disabled@example.org", workers))
    assert len(worker.cache) == 1
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE users DISABLE TRIGGER users_identity_changed")
    try:
        _eventually(lambda: not worker.cache.listening, "no longer listening")
        assert len(worker.cache) == 0
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE users ENABLE TRIGGER users_identity_changed")
