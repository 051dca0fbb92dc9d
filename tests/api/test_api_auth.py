"""Bearer tokens: who /api/v1/me says you are, and a 401 challenge when it cannot tell."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from api_helpers import joined_app, token_headers
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from credits.api.problems import PROBLEM_MEDIA_TYPE
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.tokens import list_tokens, revoke_token

AuthHeaders = Callable[..., dict[str, str]]


@pytest.fixture
def client(joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    return joined_app(joined_session_factory).test_client()


@pytest.fixture
def auth_headers(session: Session) -> AuthHeaders:
    return functools.partial(token_headers, session)


def test_me_returns_the_user_roles_and_scopes(
    client: FlaskClient, auth_headers: AuthHeaders
) -> None:
    headers = auth_headers("ada@uni.example", Role.FUNDER, Role.REVIEWER, scopes=["read"])

    response = client.get("/api/v1/me", headers=headers)

    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == "ada@uni.example"
    assert body["roles"] == ["funder", "reviewer"]
    assert body["scopes"] == ["read"]
    assert body["label"] == f"user:{body['user_id']}"


def test_unscoped_token_shows_null_scopes(client: FlaskClient, auth_headers: AuthHeaders) -> None:
    headers = auth_headers("bo@uni.example", Role.RESEARCHER)

    assert client.get("/api/v1/me", headers=headers).get_json()["scopes"] is None


def test_missing_token_is_401_with_www_authenticate(client: FlaskClient) -> None:
    response = client.get("/api/v1/me")

    assert response.status_code == 401
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="credits"'
    assert response.get_json()["type"] == "https://credits.dev/problems/authentication-required"


def test_unknown_token_is_401_invalid_token(client: FlaskClient) -> None:
    response = client.get("/api/v1/me", headers={"Authorization": "Bearer crd_nosuchtoken"})

    assert response.status_code == 401
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.get_json()["type"] == "https://credits.dev/problems/invalid-token"


def test_malformed_authorization_header_is_401(client: FlaskClient) -> None:
    for header in ("Basic YWRhOnNlY3JldA==", "Bearer", "Bearer two words", "crd_x"):
        response = client.get("/api/v1/me", headers={"Authorization": header})

        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["type"].endswith("/malformed-authorization")


def test_bearer_scheme_is_case_insensitive(client: FlaskClient, auth_headers: AuthHeaders) -> None:
    secret = auth_headers("cy@uni.example", Role.OPS)["Authorization"].split(" ", 1)[1]

    response = client.get("/api/v1/me", headers={"Authorization": f"bearer {secret}"})

    assert response.status_code == 200


def test_revoked_token_is_401(
    client: FlaskClient, auth_headers: AuthHeaders, session: Session
) -> None:
    headers = auth_headers("di@uni.example", Role.OPS)
    (token,) = list_tokens(session, email="di@uni.example")
    revoke_token(session, token_id=token.id, actor=Actor.system("tests"))
    session.flush()

    response = client.get("/api/v1/me", headers=headers)

    assert response.status_code == 401
    assert response.get_json()["type"] == "https://credits.dev/problems/token-revoked"


def test_bad_token_does_not_block_routes_that_need_none(client: FlaskClient) -> None:
    """A token is only resolved when a route asks who is calling."""
    response = client.get("/healthz", headers={"Authorization": "Bearer crd_nosuchtoken"})

    assert response.status_code == 200
