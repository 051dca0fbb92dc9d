"""Failed password sign-ins are throttled per account and per client address.

Memory storage here (the embedded profile's); one test counts in the real Redis
at ``CREDITS_TEST_REDIS_URL`` and shows two web processes sharing the counts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from conftest import required_service_url
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import create_user
from credits.settings import load_settings

EMAIL = "ada@uni.edu"
PASSWORD = "correct horse battery staple"
WRONG = "not the password at all"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def users(joined_session_factory: sessionmaker[Session]) -> None:
    with session_scope(joined_session_factory) as db:
        for email in (EMAIL, "grace@uni.edu"):
            create_user(
                db,
                email=email,
                name=email.split("@")[0],
                roles=(Role.RESEARCHER,),
                actor=Actor.system("tests"),
                password=PASSWORD,
            )


def _app(factory: sessionmaker[Session], **settings: Any) -> Flask:
    return create_app(load_settings(**settings), session_factory=factory)


def _attempt(
    client: FlaskClient,
    email: str,
    password: str,
    address: str = "192.0.2.10",
    forwarded_for: str | None = None,
) -> tuple[int, str, dict[str, str]]:
    page = client.get("/login", environ_base={"REMOTE_ADDR": address})
    token = _CSRF.search(page.get_data(as_text=True))
    assert token is not None
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token[1], "next": "/jobs"},
        environ_base={"REMOTE_ADDR": address},
        headers={"X-Forwarded-For": forwarded_for} if forwarded_for else {},
    )
    return response.status_code, response.get_data(as_text=True), dict(response.headers)


def test_ten_failed_sign_ins_lock_the_account_for_a_while_even_for_the_right_password(
    users: None, joined_session_factory: sessionmaker[Session]
) -> None:
    client = _app(joined_session_factory).test_client()
    for number in range(10):
        # A different address each time: only the per-account limit can stop them.
        assert _attempt(client, EMAIL, WRONG, f"192.0.2.{number}")[0] == 401

    status, page, headers = _attempt(client, EMAIL, PASSWORD, "198.51.100.7")

    assert status == 429
    assert "Too many failed sign-ins for this account or from your network" in page
    assert "Wait a minute and try again." in page
    assert 0 < int(headers["Retry-After"]) <= 60
    assert f'value="{EMAIL}"' in page  # the form keeps what was typed
    assert 'name="next" value="/jobs"' in page
    # Another account is not held up.
    assert _attempt(client, "grace@uni.edu", PASSWORD, "198.51.100.7")[0] == 302


def test_failed_sign_ins_from_one_address_are_limited_across_accounts(
    users: None, joined_session_factory: sessionmaker[Session]
) -> None:
    client = _app(joined_session_factory, login_limit_per_address="4/minute").test_client()
    for number in range(4):
        assert _attempt(client, f"nobody{number}@uni.edu", WRONG)[0] == 401

    assert _attempt(client, EMAIL, PASSWORD)[0] == 429
    assert _attempt(client, EMAIL, PASSWORD, "203.0.113.5")[0] == 302


def test_a_client_cannot_escape_the_address_limit_by_claiming_other_addresses(
    users: None, joined_session_factory: sessionmaker[Session]
) -> None:
    client = _app(joined_session_factory, login_limit_per_address="4/minute").test_client()
    for number in range(4):
        forged = f"203.0.113.{number}"
        assert _attempt(client, f"nobody{number}@uni.edu", WRONG, forwarded_for=forged)[0] == 401

    assert _attempt(client, EMAIL, PASSWORD, forwarded_for="198.51.100.99")[0] == 429


def test_behind_a_trusted_proxy_each_client_address_counts_apart(
    users: None, joined_session_factory: sessionmaker[Session]
) -> None:
    client = _app(
        joined_session_factory, login_limit_per_address="4/minute", trusted_proxies=1
    ).test_client()
    proxy = "10.0.0.2"
    for number in range(4):
        status = _attempt(client, f"nobody{number}@uni.edu", WRONG, proxy, "203.0.113.1")[0]
        assert status == 401

    assert _attempt(client, EMAIL, PASSWORD, proxy, "203.0.113.1")[0] == 429
    assert _attempt(client, EMAIL, PASSWORD, proxy, "203.0.113.2")[0] == 302


def test_signing_in_successfully_is_never_throttled(
    users: None, joined_session_factory: sessionmaker[Session]
) -> None:
    client = _app(joined_session_factory).test_client()

    statuses = [_attempt(client, EMAIL, PASSWORD)[0] for _ in range(12)]

    assert statuses == [302] * 12


def test_each_app_counts_apart_with_memory_storage(
    users: None, joined_session_factory: sessionmaker[Session]
) -> None:
    first = _app(joined_session_factory, login_limit_per_account="2/minute").test_client()
    second = _app(joined_session_factory, login_limit_per_account="2/minute").test_client()
    for _ in range(2):
        assert _attempt(first, EMAIL, WRONG)[0] == 401

    assert _attempt(first, EMAIL, PASSWORD)[0] == 429
    assert _attempt(second, EMAIL, PASSWORD)[0] == 302


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = required_service_url("CREDITS_TEST_REDIS_URL", "Redis")
    try:
        redis.Redis.from_url(url).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis at CREDITS_TEST_REDIS_URL is unreachable: {error}")
    yield url


@pytest.mark.redis
def test_web_processes_share_the_counts_in_redis(
    users: None, joined_session_factory: sessionmaker[Session], redis_url: str
) -> None:
    instance = f"throttle-test-{uuid.uuid4().hex[:12]}"
    settings = {
        "instance_name": instance,
        "ratelimit_storage_url": redis_url,
        "login_limit_per_account": "3/minute",
    }
    one = _app(joined_session_factory, **settings).test_client()
    two = _app(joined_session_factory, **settings).test_client()
    store = redis.Redis.from_url(redis_url)
    try:
        for client in (one, two, one):
            assert _attempt(client, EMAIL, WRONG)[0] == 401

        assert _attempt(two, EMAIL, PASSWORD)[0] == 429
        keys = store.keys(f"*{instance}*")
        assert keys, "the counts are kept in Redis"
        assert all(EMAIL.encode() not in key for key in keys)
    finally:
        for key in store.scan_iter(f"*{instance}*"):
            store.delete(key)


def test_an_unreachable_redis_neither_fails_sign_in_nor_stops_the_counting(
    users: None, joined_session_factory: sessionmaker[Session]
) -> None:
    client = _app(
        joined_session_factory,
        ratelimit_storage_url="redis://127.0.0.1:9/0",
        login_limit_per_account="2/minute",
    ).test_client()

    assert _attempt(client, "grace@uni.edu", PASSWORD)[0] == 302
    statuses = [_attempt(client, EMAIL, WRONG)[0] for _ in range(3)]

    assert statuses == [401, 401, 429]
