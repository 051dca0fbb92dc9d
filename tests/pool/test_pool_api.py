"""GPU pool routes: who may read and change flavours and rates, and every error family."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from credits.api.problems import PROBLEM_MEDIA_TYPE, problem_type
from credits.app import create_app
from credits.db import utcnow
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import create_user
from credits.identity.tokens import create_token
from credits.pool import service
from credits.settings import load_settings

SYSTEM = Actor.system("tests")
FLAVOURS = "/api/v1/pool/flavours"
A100 = {
    "name": "a100-80gb",
    "node_label_value": "NVIDIA-A100-SXM4-80GB",
    "gpu_memory_gb": 80,
    "gpus_per_node": 8,
}
Headers = dict[str, str]


@pytest.fixture
def client(joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    """The app whose requests commit into the test's savepoint."""
    return create_app(load_settings(), session_factory=joined_session_factory).test_client()


@pytest.fixture
def headers_for(session: Session) -> Callable[..., Headers]:
    def make(email: str, *roles: Role, scopes: tuple[str, ...] = ()) -> Headers:
        create_user(session, email=email, name=email.partition("@")[0], roles=roles, actor=SYSTEM)
        created = create_token(session, email=email, actor=SYSTEM, scopes=scopes)
        session.flush()
        return {"Authorization": f"Bearer {created.secret}"}

    return make


@pytest.fixture
def ops(headers_for: Callable[..., Headers]) -> Headers:
    return headers_for("ops@funder.example", Role.OPS)


@pytest.fixture
def researcher(headers_for: Callable[..., Headers]) -> Headers:
    return headers_for("pi@uni.example", Role.RESEARCHER)


@pytest.fixture
def a100(client: FlaskClient, ops: Headers) -> dict[str, Any]:
    response = client.post(FLAVOURS, json=A100, headers=ops)
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def _assert_problem(response: Any, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status
    if slug is not None:
        assert body["type"] == problem_type(slug)
    return body


# Flavours.


def test_ops_add_a_flavour_and_get_201_with_its_location(client: FlaskClient, ops: Headers) -> None:
    response = client.post(FLAVOURS, json=A100 | {"description": "training"}, headers=ops)

    assert response.status_code == 201
    assert response.headers["Location"].endswith("/api/v1/pool/flavours/a100-80gb")
    assert response.get_json() | A100 == response.get_json()
    assert response.get_json()["description"] == "training"


def test_any_reader_lists_and_gets_flavours(
    client: FlaskClient, a100: dict[str, Any], researcher: Headers
) -> None:
    listed = client.get(FLAVOURS, headers=researcher)
    one = client.get(f"{FLAVOURS}/a100-80gb", headers=researcher)

    assert listed.status_code == 200
    assert [item["name"] for item in listed.get_json()["items"]] == ["a100-80gb"]
    assert one.get_json() == a100


def test_an_unknown_flavour_is_a_404_problem(client: FlaskClient, researcher: Headers) -> None:
    for path in (f"{FLAVOURS}/v100", f"{FLAVOURS}/v100/rates"):
        body = _assert_problem(client.get(path, headers=researcher), 404, "flavour-not-found")
        assert "v100" in body["detail"]
    response = client.post(f"{FLAVOURS}/v100/rates", json={"micro_credits_per_gpu_hour": 1})
    _assert_problem(response, 401)


def test_anonymous_callers_get_401(client: FlaskClient) -> None:
    _assert_problem(client.get(FLAVOURS), 401, "authentication-required")
    response = client.post(FLAVOURS, json=A100)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    _assert_problem(response, 401)


def test_only_ops_with_a_write_token_change_the_pool(
    client: FlaskClient, session: Session, researcher: Headers, headers_for: Callable[..., Headers]
) -> None:
    read_only_ops = headers_for("ops2@funder.example", Role.OPS, scopes=("read",))

    _assert_problem(client.post(FLAVOURS, json=A100, headers=researcher), 403, "missing-role")
    _assert_problem(client.post(FLAVOURS, json=A100, headers=read_only_ops), 403, "missing-scope")
    assert service.list_flavours(session) == []


def test_a_duplicate_flavour_is_a_409(
    client: FlaskClient, a100: dict[str, Any], ops: Headers
) -> None:
    _assert_problem(client.post(FLAVOURS, json=A100, headers=ops), 409, "flavour-exists")


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"name": "A100 80GB"}, ("name",)),
        ({"gpu_memory_gb": 80.0}, ("gpu_memory_gb",)),
        ({"gpus_per_node": 0}, ("gpus_per_node",)),
        ({"colour": "green"}, ("colour",)),
    ],
)
def test_invalid_flavour_bodies_are_422_with_field_errors(
    client: FlaskClient, session: Session, ops: Headers, change: dict[str, Any], location: tuple
) -> None:
    body = _assert_problem(
        client.post(FLAVOURS, json=A100 | change, headers=ops), 422, "invalid-input"
    )

    assert {tuple(error["loc"]) for error in body["errors"]} == {location}
    assert service.list_flavours(session) == []


def test_a_body_that_is_not_json_is_refused(client: FlaskClient, ops: Headers) -> None:
    _assert_problem(client.post(FLAVOURS, data="name=a100", headers=ops), 415)
    malformed = client.post(FLAVOURS, data="{", headers=ops | {"Content-Type": "application/json"})
    _assert_problem(malformed, 400, "malformed-json")


# Rates.


def test_ops_set_a_rate_from_now_and_readers_see_it_in_force(
    client: FlaskClient, a100: dict[str, Any], ops: Headers, researcher: Headers
) -> None:
    response = client.post(
        f"{FLAVOURS}/a100-80gb/rates",
        json={"micro_credits_per_gpu_hour": 2_500_000, "reason": "launch"},
        headers=ops,
    )

    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert (created["micro_credits_per_gpu_hour"], created["in_force"]) == (2_500_000, True)
    history = client.get(f"{FLAVOURS}/a100-80gb/rates", headers=researcher).get_json()["items"]
    assert [(r["id"], r["in_force"], r["reason"]) for r in history] == [
        (created["id"], True, "launch")
    ]


def test_rate_history_is_newest_first(
    client: FlaskClient, a100: dict[str, Any], ops: Headers
) -> None:
    path = f"{FLAVOURS}/a100-80gb/rates"
    later = (utcnow() + timedelta(days=30)).isoformat()
    client.post(path, json={"micro_credits_per_gpu_hour": 1_000_000}, headers=ops)
    client.post(path, json={"micro_credits_per_gpu_hour": 2, "effective_from": later}, headers=ops)

    items = client.get(path, headers=ops).get_json()["items"]

    assert [(r["micro_credits_per_gpu_hour"], r["in_force"]) for r in items] == [
        (2, False),
        (1_000_000, True),
    ]


def test_a_rate_in_the_past_is_a_422_naming_both_times(
    client: FlaskClient, session: Session, a100: dict[str, Any], ops: Headers
) -> None:
    past = "2020-01-01T00:00:00+00:00"
    response = client.post(
        f"{FLAVOURS}/a100-80gb/rates",
        json={"micro_credits_per_gpu_hour": 1, "effective_from": past},
        headers=ops,
    )

    body = _assert_problem(response, 422, "rate-in-past")
    assert past in body["detail"] and "is before now" in body["detail"]
    assert (body["effective_from"], "now" in body) == (past, True)
    assert service.list_rates(session) == []


def test_a_rate_from_now_is_201_ahead_of_a_version_set_for_later(
    client: FlaskClient, a100: dict[str, Any], ops: Headers
) -> None:
    path = f"{FLAVOURS}/a100-80gb/rates"
    later = (utcnow() + timedelta(days=365)).isoformat()
    scheduled = client.post(
        path, json={"micro_credits_per_gpu_hour": 3, "effective_from": later}, headers=ops
    )
    assert scheduled.status_code == 201, scheduled.get_json()

    response = client.post(path, json={"micro_credits_per_gpu_hour": 2}, headers=ops)

    assert response.status_code == 201, response.get_json()
    items = client.get(path, headers=ops).get_json()["items"]
    assert [(r["micro_credits_per_gpu_hour"], r["in_force"]) for r in items] == [
        (3, False),
        (2, True),
    ]


def test_a_start_just_past_that_would_jump_a_started_version_is_a_422_naming_it(
    client: FlaskClient, session: Session, a100: dict[str, Any], ops: Headers
) -> None:
    path = f"{FLAVOURS}/a100-80gb/rates"
    first = client.post(path, json={"micro_credits_per_gpu_hour": 1}, headers=ops).get_json()
    started = datetime.fromisoformat(first["effective_from"])
    asked = (started - timedelta(seconds=1)).isoformat()

    response = client.post(
        path, json={"micro_credits_per_gpu_hour": 2, "effective_from": asked}, headers=ops
    )

    body = _assert_problem(response, 422, "rate-in-past")
    assert datetime.fromisoformat(body["effective_from"]) == started - timedelta(seconds=1)
    assert datetime.fromisoformat(body["version_from"]) == started
    assert datetime.fromisoformat(body["now"]) >= started
    assert [r.id for r in service.list_rates(session)] == [first["id"]]


def test_a_second_rate_at_the_same_time_is_a_409(
    client: FlaskClient, a100: dict[str, Any], ops: Headers
) -> None:
    body = {"micro_credits_per_gpu_hour": 1, "effective_from": "2099-01-01T00:00:00Z"}
    path = f"{FLAVOURS}/a100-80gb/rates"

    assert client.post(path, json=body, headers=ops).status_code == 201
    _assert_problem(client.post(path, json=body, headers=ops), 409, "rate-exists")


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"micro_credits_per_gpu_hour": 2.5}, ("micro_credits_per_gpu_hour",)),
        ({"micro_credits_per_gpu_hour": 2_000_000.0}, ("micro_credits_per_gpu_hour",)),
        ({"micro_credits_per_gpu_hour": "2500000"}, ("micro_credits_per_gpu_hour",)),
        ({"micro_credits_per_gpu_hour": 0}, ("micro_credits_per_gpu_hour",)),
        ({}, ("micro_credits_per_gpu_hour",)),
        (
            {"micro_credits_per_gpu_hour": 1, "effective_from": "2099-01-01T00:00:00"},
            ("effective_from",),
        ),
        ({"micro_credits_per_gpu_hour": 1, "credits": 1}, ("credits",)),
    ],
)
def test_invalid_rate_bodies_are_422_and_save_nothing(
    client: FlaskClient,
    session: Session,
    a100: dict[str, Any],
    ops: Headers,
    body: dict[str, Any],
    location: tuple,
) -> None:
    response = client.post(f"{FLAVOURS}/a100-80gb/rates", json=body, headers=ops)

    problem = _assert_problem(response, 422, "invalid-input")
    assert {tuple(error["loc"]) for error in problem["errors"]} == {location}
    assert service.list_rates(session) == []


def test_setting_a_rate_needs_ops(
    client: FlaskClient, session: Session, a100: dict[str, Any], researcher: Headers
) -> None:
    response = client.post(
        f"{FLAVOURS}/a100-80gb/rates", json={"micro_credits_per_gpu_hour": 1}, headers=researcher
    )

    _assert_problem(response, 403, "missing-role")
    assert service.list_rates(session) == []


def test_a_rate_for_an_unknown_flavour_is_a_404(client: FlaskClient, ops: Headers) -> None:
    response = client.post(
        f"{FLAVOURS}/v100/rates", json={"micro_credits_per_gpu_hour": 1}, headers=ops
    )

    _assert_problem(response, 404, "flavour-not-found")


def test_the_pool_routes_are_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]

    assert set(paths["/api/v1/pool/flavours"]) == {"get", "post"}
    assert set(paths["/api/v1/pool/flavours/{name}/rates"]) == {"get", "post"}
    created = paths["/api/v1/pool/flavours/{name}/rates"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RateOut"
    }


def test_ops_change_a_flavours_checkpoint_grace_cap(
    client: FlaskClient, ops: Headers, researcher: Headers, a100: dict[str, Any]
) -> None:
    assert a100["max_checkpoint_grace_seconds"] == 300
    url = f"{FLAVOURS}/a100-80gb"

    changed = client.patch(url, json={"max_checkpoint_grace_seconds": 120}, headers=ops)

    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["max_checkpoint_grace_seconds"] == 120
    assert client.get(url, headers=researcher).get_json()["max_checkpoint_grace_seconds"] == 120
    refused = client.patch(url, json={"max_checkpoint_grace_seconds": 60}, headers=researcher)
    _assert_problem(refused, 403)


@pytest.mark.parametrize(
    "body",
    [
        {"max_checkpoint_grace_seconds": -1},
        {"max_checkpoint_grace_seconds": "60"},
        {"max_checkpoint_grace_seconds": 86401},
        {},
    ],
)
def test_a_bad_checkpoint_grace_cap_is_a_422_and_changes_nothing(
    client: FlaskClient, ops: Headers, a100: dict[str, Any], body: dict[str, Any]
) -> None:
    url = f"{FLAVOURS}/a100-80gb"
    problem = _assert_problem(client.patch(url, json=body, headers=ops), 422)
    assert {tuple(error["loc"]) for error in problem["errors"]} == {
        ("max_checkpoint_grace_seconds",)
    }
    assert client.get(url, headers=ops).get_json()["max_checkpoint_grace_seconds"] == 300
