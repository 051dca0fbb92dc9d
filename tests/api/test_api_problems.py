"""Every error the app answers is an RFC 9457 problem document."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from api_helpers import joined_app, token_headers
from flask import Flask, request
from flask.testing import FlaskClient
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from credits.api.problems import PROBLEM_MEDIA_TYPE, Problem
from credits.errors import Conflict
from credits.identity.models import Role

SECRET_INPUT = "hunter2-do-not-echo"


class _Signup(BaseModel):
    password: str = Field(min_length=64)
    seats: int


class _ClashError(Conflict):
    slug = "test-clash"
    title = "Test clash"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return joined_app(joined_session_factory)


@pytest.fixture
def client(joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    return joined_app(joined_session_factory).test_client()


@pytest.fixture
def test_routes(app: Flask) -> FlaskClient:
    """The app with a few routes that fail on purpose."""

    def clash() -> str:
        raise _ClashError("it clashed", holder="someone", status=999, type="nope")

    def signup() -> str:
        _Signup.model_validate(request.get_json())
        return "ok"

    def crash() -> str:
        raise RuntimeError("database password is s3cret")

    app.add_url_rule("/test/clash", view_func=clash)
    app.add_url_rule("/test/signup", view_func=signup, methods=["POST"])
    app.add_url_rule("/test/crash", view_func=crash)
    return app.test_client()


def _assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.get_json()
    Problem.model_validate(body)
    assert body["status"] == status
    return body


def test_unknown_route_is_a_problem_document(client: FlaskClient) -> None:
    body = _assert_problem(client.get("/api/v1/nowhere"), 404)

    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"
    assert body["instance"] == "/api/v1/nowhere"


def test_wrong_method_is_405_problem_that_keeps_the_allow_header(client: FlaskClient) -> None:
    response = client.delete("/healthz")

    body = _assert_problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    assert "GET" in response.headers["Allow"]


def test_domain_error_has_its_slug_type_and_extra_members(test_routes: FlaskClient) -> None:
    body = _assert_problem(test_routes.get("/test/clash"), 409)

    assert body["type"] == "https://credits.dev/problems/test-clash"
    assert body["title"] == "Test clash"
    assert body["detail"] == "it clashed"
    assert body["instance"] == "/test/clash"
    assert body["holder"] == "someone"


def test_extra_members_never_override_standard_members(test_routes: FlaskClient) -> None:
    body = _assert_problem(test_routes.get("/test/clash"), 409)

    assert body["status"] == 409
    assert body["type"] == "https://credits.dev/problems/test-clash"


def test_validation_error_is_422_with_field_errors(test_routes: FlaskClient) -> None:
    response = test_routes.post("/test/signup", json={"password": SECRET_INPUT, "seats": "x"})

    body = _assert_problem(response, 422)
    assert body["type"] == "https://credits.dev/problems/invalid-input"
    errors = {tuple(error["loc"]): error for error in body["errors"]}
    assert set(errors) == {("password",), ("seats",)}
    assert errors[("seats",)]["type"] == "int_parsing"
    assert set(errors[("password",)]) == {"loc", "msg", "type"}


def test_validation_error_never_echoes_the_input(test_routes: FlaskClient) -> None:
    response = test_routes.post("/test/signup", json={"password": SECRET_INPUT, "seats": "x"})

    assert SECRET_INPUT not in response.get_data(as_text=True)


def test_malformed_json_body_is_400_problem(test_routes: FlaskClient) -> None:
    response = test_routes.post("/test/signup", data="{not json", content_type="application/json")

    body = _assert_problem(response, 400)
    assert body["type"] == "https://credits.dev/problems/malformed-json"


def test_body_that_is_not_json_is_415_problem(test_routes: FlaskClient) -> None:
    response = test_routes.post("/test/signup", data="seats=1", content_type="text/plain")

    _assert_problem(response, 415)


def test_uncaught_exception_is_500_without_details_and_is_logged(
    test_routes: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="credits.api.problems"):
        response = test_routes.get("/test/crash")

    body = _assert_problem(response, 500)
    assert body["type"] == "about:blank"
    text = response.get_data(as_text=True)
    assert "s3cret" not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    assert any(record.exc_info for record in caplog.records)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/pool/flavours/a100%00", None),
        ("/api/v1/accounts?kind=allo%00cation", None),
        ("/api/v1/pool/flavours", {"name": "a100\u0000", "node_label_value": "x"}),
    ],
)
def test_a_nul_character_anywhere_is_a_422_problem(
    joined_session_factory: sessionmaker[Session], session: Session, path: str, body: object
) -> None:
    client = joined_app(joined_session_factory).test_client()
    ops = token_headers(session, "ops@example.org", Role.OPS)
    response = (
        client.post(path, json=body, headers=ops)
        if body is not None
        else client.get(path, headers=ops)
    )
    assert response.status_code == 422
    assert response.get_json()["type"].endswith("/nul-character")
