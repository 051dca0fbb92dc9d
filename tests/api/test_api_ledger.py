"""Ledger routes: who may read which account, balances, and paged transfers."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from api_helpers import SYSTEM, joined_app, token_headers
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from credits.api.problems import PROBLEM_MEDIA_TYPE
from credits.identity.models import Role
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import system_account_id
from credits.ledger.service import grant, open_account

AuthHeaders = Callable[..., dict[str, str]]
GRANTS = [1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000]


@pytest.fixture
def client(joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    return joined_app(joined_session_factory).test_client()


@pytest.fixture
def auth_headers(session: Session) -> AuthHeaders:
    return functools.partial(token_headers, session)


@pytest.fixture
def account_id(session: Session) -> int:
    """Project 7's GPU allocation, granted five times from the mint."""
    account = open_account(
        session, code="alloc:7:gpu", currency=Currency.GPU, project_id=7, actor=SYSTEM
    )
    mint = system_account_id(session, AccountKind.SOURCE, Currency.GPU)
    for number, amount in enumerate(GRANTS):
        grant(
            session,
            key=f"api-test-grant-{number}",
            from_account_id=mint,
            to_account_id=account.id,
            amount=amount,
            actor=SYSTEM,
        )
    session.flush()
    return account.id


@pytest.fixture
def ops(auth_headers: AuthHeaders) -> dict[str, str]:
    return auth_headers("ops@funder.example", Role.OPS)


@pytest.fixture
def researcher(auth_headers: AuthHeaders) -> dict[str, str]:
    return auth_headers("pi@uni.example", Role.RESEARCHER)


def test_ops_lists_accounts_filtered_by_project(
    client: FlaskClient, ops: dict[str, str], account_id: int
) -> None:
    response = client.get("/api/v1/accounts?project_id=7&kind=allocation", headers=ops)

    assert response.status_code == 200
    assert [item["id"] for item in response.get_json()["items"]] == [account_id]


def test_account_list_filters_are_validated(client: FlaskClient, ops: dict[str, str]) -> None:
    response = client.get("/api/v1/accounts?currency=dollars&colour=red", headers=ops)

    assert response.status_code == 422
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    locations = {tuple(error["loc"]) for error in response.get_json()["errors"]}
    assert locations == {("currency",), ("colour",)}


def test_a_researcher_lists_only_the_accounts_they_may_read(
    client: FlaskClient, researcher: dict[str, str], account_id: int
) -> None:
    response = client.get("/api/v1/accounts", headers=researcher)

    # Project 7's account reads 404 by id for them, so no list shows it either.
    assert response.status_code == 200
    assert response.get_json() == {"items": []}
    assert client.get(f"/api/v1/accounts/{account_id}", headers=researcher).status_code == 404


def test_token_without_read_scope_gets_403(
    client: FlaskClient, auth_headers: AuthHeaders, account_id: int
) -> None:
    headers = auth_headers("meter@funder.example", Role.OPS, scopes=["meter"])

    response = client.get(f"/api/v1/accounts/{account_id}", headers=headers)

    assert response.status_code == 403
    assert response.get_json()["type"] == "https://credits.dev/problems/missing-scope"


def test_unauthenticated_account_read_is_401(client: FlaskClient, account_id: int) -> None:
    response = client.get(f"/api/v1/accounts/{account_id}")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_funder_cannot_read_an_account_no_program_of_theirs_funds(
    client: FlaskClient, auth_headers: AuthHeaders, account_id: int
) -> None:
    headers = auth_headers("po@funder.example", Role.FUNDER)

    response = client.get(f"/api/v1/accounts/{account_id}", headers=headers)
    listed = client.get("/api/v1/accounts", headers=headers)

    assert response.status_code == 404
    assert listed.status_code == 200
    assert account_id not in [account["id"] for account in listed.get_json()["items"]]


def test_researcher_cannot_read_someone_elses_account_and_gets_404(
    client: FlaskClient, researcher: dict[str, str], account_id: int
) -> None:
    response = client.get(f"/api/v1/accounts/{account_id}", headers=researcher)
    missing = client.get("/api/v1/accounts/999999", headers=researcher)

    assert response.status_code == 404
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    # A refusal reads exactly like a missing id, so ids cannot be probed.
    assert response.get_json()["detail"].replace(str(account_id), "N") == missing.get_json()[
        "detail"
    ].replace("999999", "N")


def test_missing_account_is_404_problem(client: FlaskClient, ops: dict[str, str]) -> None:
    for path in ("", "/balance", "/transfers"):
        response = client.get(f"/api/v1/accounts/999999{path}", headers=ops)

        assert response.status_code == 404, path
        assert response.get_json()["type"] == "https://credits.dev/problems/account-not-found"


def test_balance_reports_posted_held_and_available(
    client: FlaskClient, ops: dict[str, str], account_id: int
) -> None:
    response = client.get(f"/api/v1/accounts/{account_id}/balance", headers=ops)

    assert response.status_code == 200
    assert response.get_json() == {
        "account_id": account_id,
        "currency": "gpu",
        "posted": sum(GRANTS),
        "held": 0,
        "incoming": 0,
        "available": sum(GRANTS),
    }


def test_transfers_are_paginated_newest_first(
    client: FlaskClient, ops: dict[str, str], account_id: int
) -> None:
    seen: list[int] = []
    url: str | None = f"/api/v1/accounts/{account_id}/transfers?limit=2"
    pages = 0
    while url is not None:
        response = client.get(url, headers=ops)
        assert response.status_code == 200
        body = response.get_json()
        seen += [item["amount"] for item in body["items"]]
        link = response.headers.get("Link")
        if body["next_before"] is None:
            assert link is None
            url = None
        else:
            assert link is not None
            assert link.endswith('>; rel="next"')
            assert f"before={body['next_before']}" in link
            url = link[1 : link.index(">")]
        pages += 1

    assert pages == 3
    assert seen == list(reversed(GRANTS))


def test_transfers_default_to_one_page_of_fifty(
    client: FlaskClient, ops: dict[str, str], account_id: int
) -> None:
    response = client.get(f"/api/v1/accounts/{account_id}/transfers", headers=ops)

    body = response.get_json()
    assert len(body["items"]) == len(GRANTS)
    assert body["next_before"] is None
    assert "Link" not in response.headers


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=ten", "before=0"])
def test_transfer_paging_out_of_range_is_422(
    client: FlaskClient, ops: dict[str, str], account_id: int, query: str
) -> None:
    response = client.get(f"/api/v1/accounts/{account_id}/transfers?{query}", headers=ops)

    assert response.status_code == 422
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    assert response.get_json()["errors"][0]["loc"] == [query.split("=", 1)[0]]
