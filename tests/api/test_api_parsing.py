"""The one request-parsing layer (credits/api/parsing.py): size, media type, depth, numbers
and text of every JSON body, read only after the caller is known; malformed bodies are
never acted on; and the document says what is accepted."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from api_world import FUNDER_P, OPS, RESEARCHER_A, SYSTEM, World, build_world, world_executor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from credits.api.parsing import (
    MAX_DEPTH,
    JsonTooDeep,
    LoneSurrogate,
    MalformedJson,
    NulCharacter,
    NumberOutOfRange,
    parse_json,
)
from credits.app import create_app
from credits.grants.models import Project, Proposal
from credits.identity.tokens import create_token
from credits.settings import load_settings

PROBLEM = "application/problem+json"
MIB = 1024 * 1024


# The parser on its own.


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def test_json_nested_up_to_the_limit_is_read() -> None:
    assert parse_json(_nested(MAX_DEPTH)) is not None
    assert parse_json(b'{"a": ' * (MAX_DEPTH - 1) + b"1" + b"}" * (MAX_DEPTH - 1)) is not None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 200_000])
def test_json_nested_deeper_is_refused_before_it_is_parsed(depth: int) -> None:
    with pytest.raises(JsonTooDeep):
        parse_json(_nested(depth))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"a": "[" * 1000, "b": '\\"{' * 500, "c": [[["x"]]]})
    assert parse_json(text.encode())["c"] == [[["x"]]]


@pytest.mark.parametrize(
    "text",
    [
        '"' + '\\"' * 400_000,  # an unterminated string of escaped quotes
        '"\\' * 400_000,
        '["a' * 300_000,
        '"x",' * 250_000 + "[" * 100,
    ],
)
def test_adversarial_text_is_judged_in_linear_time(text: str) -> None:
    started = time.monotonic()
    with pytest.raises((MalformedJson, JsonTooDeep)):
        parse_json(text.encode())
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("number", [str(2**63 - 1), str(-(2**63)), "1.5e308", "-0.0", "1e-999"])
def test_numbers_that_fit_are_read(number: str) -> None:
    assert parse_json(f"[{number}]".encode())[0] == json.loads(number)


@pytest.mark.parametrize(
    "number", [str(2**63), str(-(2**63) - 1), "9" * 5000, "1e999999", "-1e400", "1" * 20]
)
def test_numbers_out_of_range_are_refused(number: str) -> None:
    with pytest.raises(NumberOutOfRange):
        parse_json(f'{{"n": {number}}}'.encode())


@pytest.mark.parametrize("text", ["[NaN]", "[Infinity]", "[-Infinity]", "{not json", ""])
def test_what_is_not_json_is_malformed(text: str) -> None:
    with pytest.raises(MalformedJson):
        parse_json(text.encode())


@pytest.mark.parametrize("raw", [b'["\xff"]', b'["\xed\xa0\x80"]', b'["\xc0\x80"]'])
def test_a_body_that_is_not_utf_8_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedJson):
        parse_json(raw)


@pytest.mark.parametrize(
    ("text", "error", "loc"),
    [
        ('{"a": "\\ud800"}', LoneSurrogate, ["a"]),
        ('{"a": ["x", "y\\udfffz"]}', LoneSurrogate, ["a", 1]),
        ('{"a": {"\\udc00": 1}}', LoneSurrogate, ["a"]),
        ('{"a": "\\ude00\\ud83d"}', LoneSurrogate, ["a"]),  # a pair in the wrong order
        ('{"a": {"b": "x\\u0000"}}', NulCharacter, ["a", "b"]),
        ('{"\\u0000": 1}', NulCharacter, []),
    ],
)
def test_text_holding_a_lone_surrogate_or_nul_is_refused_naming_where(
    text: str, error: type[Exception], loc: list[Any]
) -> None:
    with pytest.raises(error) as raised:
        parse_json(text.encode())
    assert raised.value.extra["errors"][0]["loc"] == loc  # type: ignore[attr-defined]


def test_a_surrogate_pair_is_text_like_any_other() -> None:
    assert parse_json(b'["\\ud83d\\ude00", "\\\\u0000"]') == ["\U0001f600", "\\u0000"]


# Through the app.


@pytest.fixture
def world(session: Session) -> World:
    return build_world(session)


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class _Unreadable(io.BytesIO):
    """A request body that fails the test if anything reads it."""

    def read(self, _size: int | None = -1) -> bytes:
        raise AssertionError("the body was read")

    def readline(self, _size: int | None = -1) -> bytes:
        raise AssertionError("the body was read")


def _unread_body(length: int) -> dict[str, Any]:
    """A body that claims ``length`` bytes and fails the test when anything reads it."""
    return {"CONTENT_LENGTH": str(length), "wsgi.input": _Unreadable()}


def test_an_anonymous_huge_body_is_refused_401_unread(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/programs",
        content_type="application/json",
        environ_overrides=_unread_body(60 * MIB),
    )
    assert (response.status_code, response.mimetype) == (401, PROBLEM)


def test_a_body_over_the_limit_is_refused_413_unread(client: FlaskClient, world: World) -> None:
    response = client.post(
        "/api/v1/programs",
        content_type="application/json",
        headers=world.headers[FUNDER_P],
        environ_overrides=_unread_body(MIB + 1),
    )
    assert (response.status_code, response.mimetype) == (413, PROBLEM), response.get_json()


def test_usage_ingestion_takes_a_body_over_the_general_limit_but_not_over_its_own(
    client: FlaskClient, world: World, session: Session
) -> None:

    meter = create_token(session, email=f"{OPS}@example.org", actor=SYSTEM, scopes=["meter"])
    headers = {"Authorization": f"Bearer {meter.secret}", "Content-Type": "application/json"}
    padded = b'{"records": []' + b" " * (2 * MIB) + b"}"
    over = b'{"records": []' + b" " * (16 * MIB) + b"}"

    within = client.post("/api/v1/usage/records", data=padded, headers=headers)
    too_big = client.post("/api/v1/usage/records", data=over, headers=headers)

    assert within.status_code == 422  # read and validated: no records
    assert [error["loc"] for error in within.get_json()["errors"]] == [["records"]]
    assert (too_big.status_code, too_big.mimetype) == (413, PROBLEM)


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ("[]", "application/json", 422),
        ("null", "application/json", 422),
        ('{"reason": "done"}', "text/plain", 415),
        ('{"reason": "done"}', None, 415),
        ("", "text/plain", 415),
        ('{"reason": "\\ud800"}', "application/json", 422),
        ('{"reason": "done", "extra": 1}', "application/json", 422),
    ],
)
@pytest.mark.parametrize(
    ("persona", "url", "unchanged"),
    [
        (RESEARCHER_A, "/api/v1/projects/{world.project_a}/archive", "project"),
        (RESEARCHER_A, "/api/v1/proposals/{world.proposal_draft}/withdraw", "draft"),
        (FUNDER_P, "/api/v1/proposals/{world.proposal_in_review}/reject", "in_review"),
    ],
)
def test_a_malformed_optional_body_is_refused_and_nothing_happens(
    client: FlaskClient,
    world: World,
    session: Session,
    persona: str,
    url: str,
    unchanged: str,
    data: str,
    content_type: str | None,
    status: int,
) -> None:
    headers = world.headers[persona] | ({"Content-Type": content_type} if content_type else {})
    response = client.post(url.format(world=world), data=data, headers=headers)

    assert (response.status_code, response.mimetype) == (status, PROBLEM), response.get_json()
    session.expire_all()
    assert _states(session, world)[unchanged] == _STATES_AS_BUILT[unchanged]


_STATES_AS_BUILT = {"project": "active", "draft": "draft", "in_review": "in_review"}


def _states(session: Session, world: World) -> dict[str, str]:
    return {
        "project": session.get_one(Project, world.project_a).status,
        "draft": session.get_one(Proposal, world.proposal_draft).status,
        "in_review": session.get_one(Proposal, world.proposal_in_review).status,
    }


def test_the_world_starts_in_the_states_the_test_above_expects(
    session: Session, world: World
) -> None:
    assert _states(session, world) == _STATES_AS_BUILT


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/json"}])
def test_an_absent_optional_body_is_the_defaults(
    client: FlaskClient, world: World, headers: dict[str, str]
) -> None:
    url = f"/api/v1/projects/{world.project_a}/archive"
    response = client.post(url, headers=world.headers[RESEARCHER_A] | headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "archived"


@pytest.mark.parametrize("field", ["abstract", "justification", "title"])
def test_a_lone_surrogate_in_free_text_is_a_422_not_a_500(
    client: FlaskClient, world: World, field: str
) -> None:
    url = f"/api/v1/proposals/{world.proposal_draft}"
    response = client.patch(
        url, json={field: "ice \ud800 sheets"}, headers=world.headers[RESEARCHER_A]
    )
    assert (response.status_code, response.mimetype) == (422, PROBLEM)
    assert response.get_json()["type"].endswith("/lone-surrogate")
    assert response.get_json()["errors"][0]["loc"] == [field]


def test_deep_nesting_is_a_400_not_a_500(client: FlaskClient, world: World) -> None:
    response = client.post(
        "/api/v1/programs",
        data=_nested(5000),
        content_type="application/json",
        headers=world.headers[FUNDER_P],
    )
    assert (response.status_code, response.mimetype) == (400, PROBLEM)
    assert response.get_json()["type"].endswith("/json-too-deep")


@pytest.mark.parametrize("field", ["opens_at", "closes_at"])
@pytest.mark.parametrize("value", [1_700_000_000, 1.7e9, True])
def test_a_number_is_not_a_time(
    client: FlaskClient, world: World, field: str, value: object
) -> None:
    url = f"/api/v1/programs/{world.program_p_draft}"
    response = client.patch(url, json={field: value}, headers=world.headers[FUNDER_P])
    assert response.status_code == 422, response.get_json()
    assert [error["loc"] for error in response.get_json()["errors"]] == [[field]]


# The document says what is accepted.


def _document(client: FlaskClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/api/v1/openapi.json").get_json()
    return document


def test_every_operation_with_a_json_body_documents_the_refusals_of_a_bad_one(
    client: FlaskClient,
) -> None:
    raw_bodies = []
    for methods in _document(client)["paths"].values():
        for operation in methods.values():
            if "requestBody" not in operation:
                continue
            if set(operation["requestBody"]["content"]) == {"application/octet-stream"}:
                # File bytes: any content type is data, so only the size can be refused.
                raw_bodies.append(operation["operationId"])
                assert "413" in operation["responses"], operation["operationId"]
                continue
            assert {"400", "413", "415", "422"} <= set(operation["responses"]), operation[
                "operationId"
            ]
            assert set(operation["requestBody"]["content"]) == {"application/json"}
    assert sorted(raw_bodies) == ["datasets.put_part", "datasets.upload_file"]


def test_a_job_submission_documents_its_key_and_the_200_of_a_replay(client: FlaskClient) -> None:
    operation = _document(client)["paths"]["/api/v1/projects/{project_id}/jobs"]["post"]
    (key,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["required"] is True
    assert key["schema"]["minLength"] == 1
    assert key["schema"]["maxLength"] == 150
    assert {"200", "201", "400"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"] == operation["responses"]["201"]["content"]
