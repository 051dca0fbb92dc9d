"""Request ids: kept when safe, replaced when not, returned as X-Request-Id, in every
log line of the request, and in the job events the request records."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from jobs_world import JobsWorld, build_jobs_world
from observability_helpers import job_event_data, json_log_lines, researcher_client, submit_job
from sqlalchemy.orm import Session, sessionmaker

from credits.observability.request_ids import (
    accepted_request_id,
    current_request_id,
    public_request_id,
    request_id_bound,
)

GOOD_ID = "req-4f2c9a7e-0b1d"


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


@pytest.fixture
def client(world: JobsWorld, joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    return researcher_client(world, joined_session_factory)


def _submit(client: FlaskClient, world: JobsWorld, request_id: str) -> int:
    response = submit_job(client, world, **{"X-Request-Id": request_id})
    assert response.status_code == 201, response.json
    assert response.headers["X-Request-Id"] == request_id
    return int(response.json["id"])  # type: ignore[index]


@pytest.mark.parametrize(
    "incoming",
    [
        GOOD_ID,
        "3f2b8c1e-9d4a-4e6f-8b7c-2a1d0e9f8c7b",
        "01HZX3Q4V9ZK8M2N5P7R9T1W3Y",
        "trace.span:42_a",
    ],
)
def test_a_short_safe_request_id_is_kept(incoming: str) -> None:
    assert accepted_request_id(incoming) == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        None,
        "",
        "short",
        "x" * 65,
        "has space-1234",
        "line\r\nX-Evil: 1",
        '"><script>alert(1)</script>',
        "caf\u00e9-1234567",
        "ada@uni.example",
    ],
)
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(incoming: str | None) -> None:
    made = accepted_request_id(incoming)
    assert made != incoming
    assert accepted_request_id(made) == made
    assert accepted_request_id(incoming) != made  # each one new


def test_the_request_id_comes_back_as_x_request_id(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": GOOD_ID})
    assert response.headers["X-Request-Id"] == GOOD_ID


def test_a_bad_request_id_is_replaced_not_echoed(client: FlaskClient) -> None:
    bad = "bad id <script>"
    response = client.get("/healthz", headers={"X-Request-Id": bad})
    returned = response.headers["X-Request-Id"]
    assert returned != bad
    assert accepted_request_id(returned) == returned


def test_a_request_without_an_id_gets_a_new_one_each_time(client: FlaskClient) -> None:
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]
    assert first != second
    assert accepted_request_id(first) == first


def test_a_refused_request_carries_its_id_too(client: FlaskClient) -> None:
    response = client.get("/api/v1/jobs/999999", headers={"X-Request-Id": GOOD_ID})
    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == GOOD_ID


def test_the_request_id_is_in_the_requests_json_log_line(client: FlaskClient) -> None:
    with json_log_lines() as lines:
        client.get("/healthz", headers={"X-Request-Id": GOOD_ID})
    (line,) = [line for line in lines if line["logger"] == "credits.request"]
    assert line["request_id"] == GOOD_ID
    assert line["level"] == "INFO"
    assert line["message"].startswith("GET /healthz 200 ")


def test_the_request_id_is_unbound_after_the_request(client: FlaskClient) -> None:
    client.get("/healthz", headers={"X-Request-Id": GOOD_ID})
    assert current_request_id() is None


def test_a_job_submitted_over_the_api_records_the_request_id_in_its_event(
    client: FlaskClient, world: JobsWorld
) -> None:
    job_id = _submit(client, world, GOOD_ID)

    with world.session() as session:
        recorded = job_event_data(session, job_id, "job.submitted")["request_id"]
        assert recorded == public_request_id(GOOD_ID)


def test_a_cancel_records_its_own_request_id(client: FlaskClient, world: JobsWorld) -> None:
    job_id = _submit(client, world, GOOD_ID)
    response = client.post(f"/api/v1/jobs/{job_id}/cancel", headers={"X-Request-Id": "cancel-0001"})
    assert response.status_code == 200, response.json

    with world.session() as session:
        assert job_event_data(session, job_id, "job.cancel_requested")["request_id"] == (
            public_request_id("cancel-0001")
        )


def test_a_job_event_outside_any_request_has_no_request_id(world: JobsWorld) -> None:
    job = world.submit()

    with world.session() as session:
        assert "request_id" not in job_event_data(session, job.id, "job.submitted")


def test_a_bound_request_id_reaches_a_service_call_outside_flask(world: JobsWorld) -> None:
    with request_id_bound("cli-run-000042"):
        job = world.submit()

    with world.session() as session:
        assert job_event_data(session, job.id, "job.submitted")["request_id"] == (
            public_request_id("cli-run-000042")
        )


@pytest.mark.parametrize(
    ("incoming", "recorded"),
    [
        ("3f2b8c1e-9d4a-4e6f-8b7c-2a1d0e9f8c7b", "3f2b8c1e-9d4a-4e6f-8b7c-2a1d0e9f8c7b"),
        ("0af7651916cd43dd8448eb211c80319c", "0af7651916cd43dd8448eb211c80319c"),
        ("jane.doe-from-lab", "sha256:"),
        ("3F2B8C1E-9D4A-4E6F-8B7C-2A1D0E9F8C7B", "sha256:"),
    ],
)
def test_an_audit_event_keeps_an_opaque_id_and_only_a_digest_of_any_other(
    incoming: str, recorded: str
) -> None:
    public = public_request_id(incoming)
    assert public.startswith(recorded)
    assert incoming == public or incoming not in public
    assert public_request_id(incoming) == public
