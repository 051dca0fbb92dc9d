"""POST /api/v1/usage/records: one verdict per record, batches applied whole or not at all."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from jobs_world import FLAVOUR, RATE, SYSTEM, JobsWorld, build_jobs_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.db import utcnow
from credits.grants import projects
from credits.identity.models import Role
from credits.identity.service import create_user
from credits.identity.tokens import create_token
from credits.metering.models import UsageRecord
from credits.metering.service import settle_all_pending
from credits.settings import load_settings

URL = "/api/v1/usage/records"


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def _client(world: JobsWorld, factory: sessionmaker[Session], *scopes: str) -> FlaskClient:
    app = create_app(load_settings(), session_factory=factory, executor=world.executor)
    with world.session() as session:
        secret = create_token(
            session, email="pi@example.org", actor=SYSTEM, scopes=scopes or ("meter",)
        ).secret
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client


@pytest.fixture
def client(world: JobsWorld, joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    return _client(world, joined_session_factory)


def _record(world: JobsWorld, record_id: str = "r1", **overrides: Any) -> dict[str, Any]:
    end = utcnow() - timedelta(minutes=5)
    record: dict[str, Any] = {
        "source": "cluster-b.uni.edu",
        "record_id": record_id,
        "project_id": world.project_id,
        "currency": "gpu",
        "quantity": "3600",
        "unit": "gpu_second",
        "start": (end - timedelta(hours=1)).isoformat(),
        "end": end.isoformat(),
        "resource": FLAVOUR,
        "evidence": {"slurm_job": 4242},
    }
    return record | overrides


def _stored(world: JobsWorld) -> int:
    with world.session() as session:
        return int(session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


def test_accepted_records_are_priced_and_settled_from_the_allocations(
    client: FlaskClient, world: JobsWorld
) -> None:
    response = client.post(URL, json={"records": [_record(world)]})
    assert response.status_code == 200, response.json
    [result] = response.json["results"]
    assert result["outcome"] == "accepted"
    assert result["amount_micro"] == RATE  # one GPU-hour
    before = world.available()
    settle_all_pending(world.factory, batch_size=100)
    assert world.available() == before - RATE


def test_the_same_batch_twice_gives_duplicates_and_charges_once(
    client: FlaskClient, world: JobsWorld
) -> None:
    batch = {"records": [_record(world, "a"), _record(world, "b", quantity="1")]}
    client.post(URL, json=batch)
    again = client.post(URL, json={"records": list(reversed(batch["records"]))}).json
    assert [r["outcome"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert _stored(world) == 2


def test_a_used_record_id_with_another_payload_is_rejected(
    client: FlaskClient, world: JobsWorld
) -> None:
    client.post(URL, json={"records": [_record(world)]})
    changed = client.post(URL, json={"records": [_record(world, quantity="7200")]}).json
    assert changed["results"][0]["outcome"] == "rejected"
    assert "different payload" in changed["results"][0]["reason"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"currency": "label"}, "no label allocation"),
        ({"project_id": 999_999}, "no project has the id"),
        ({"quantity": "-1"}, "quantity"),
        ({"unit": "parsec"}, "unit"),
        ({"resource": "nope"}, "no GPU flavour"),
        ({"resource": None}, "names its flavour"),
    ],
)
def test_each_bad_record_is_rejected_with_a_reason_and_the_rest_accepted(
    client: FlaskClient, world: JobsWorld, overrides: dict[str, Any], reason: str
) -> None:
    batch = {"records": [_record(world, "good"), _record(world, "bad", **overrides)]}
    results = client.post(URL, json=batch).json["results"]
    assert results[0]["outcome"] == "accepted"
    assert results[1]["outcome"] == "rejected"
    assert reason in results[1]["reason"]
    assert _stored(world) == 1


def test_end_before_start_and_too_late_are_rejected(client: FlaskClient, world: JobsWorld) -> None:
    now = utcnow()
    backwards = _record(
        world, "x", start=now.isoformat(), end=(now - timedelta(hours=1)).isoformat()
    )
    old_end = now - timedelta(days=10)
    late = _record(
        world,
        "y",
        start=(old_end - timedelta(hours=1)).isoformat(),
        end=old_end.isoformat(),
    )
    results = client.post(URL, json={"records": [backwards, late]}).json["results"]
    assert [r["reason"] for r in results] == [
        "end is before start",
        "too late: usage must be reported within 72 hours of its end",
    ]


def test_a_batch_over_the_limit_is_refused_whole(client: FlaskClient, world: JobsWorld) -> None:
    records = [_record(world, f"r{i}") for i in range(1001)]
    response = client.post(URL, json={"records": records})
    assert response.status_code == 422
    assert _stored(world) == 0


def test_a_token_without_the_meter_scope_is_refused(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    client = _client(world, joined_session_factory, "read", "write")
    response = client.post(URL, json={"records": [_record(world)]})
    assert response.status_code == 403
    assert _stored(world) == 0


def test_credit_units_charge_the_quantity_in_credits(client: FlaskClient, world: JobsWorld) -> None:
    record = _record(world, unit="credit", quantity="1.25", resource=None)
    [result] = client.post(URL, json={"records": [record]}).json["results"]
    assert result["amount_micro"] == 1_250_000


def test_usage_beyond_what_the_project_has_is_overage_never_an_overdraft(
    client: FlaskClient, world: JobsWorld
) -> None:
    record = _record(world, unit="credit", quantity="150", resource=None)
    client.post(URL, json={"records": [record]})
    report = settle_all_pending(world.factory, batch_size=10)
    assert report.captured_micro == 100_000_000
    assert report.overage_micro == 50_000_000
    assert world.available() == 0


def test_a_login_or_unscoped_token_cannot_report_usage(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    app = create_app(
        load_settings(), session_factory=joined_session_factory, executor=world.executor
    )
    with world.session() as session:
        secret = create_token(session, email="pi@example.org", actor=SYSTEM).secret
    client = app.test_client()
    response = client.post(
        URL, json={"records": [_record(world)]}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 403
    assert _stored(world) == 0


def test_a_project_the_caller_is_not_on_is_rejected_like_an_unknown_one(
    client: FlaskClient, world: JobsWorld
) -> None:
    with world.session() as session:
        someone = create_user(
            session,
            email="other@example.org",
            name="Other",
            roles=(Role.RESEARCHER,),
            institution="Elsewhere",
            actor=SYSTEM,
        )
        other = projects.create_project(
            session,
            title="Someone else's",
            field_of_science="Physics",
            actor=world.ops,
            pi_user_id=someone.id,
        )
    results = client.post(URL, json={"records": [_record(world, project_id=other.id)]}).json
    assert results["results"][0]["reason"] == f"no project has the id {other.id}"


def test_the_platforms_own_sources_and_amounts_over_the_ledger_limit_are_rejected(
    client: FlaskClient, world: JobsWorld
) -> None:
    batch = {
        "records": [
            _record(world, "job:1:1:0", source="credits.jobs"),
            _record(world, "huge", unit="credit", quantity="9000000000000", resource=None),
        ]
    }
    reasons = [r["reason"] for r in client.post(URL, json=batch).json["results"]]
    assert "platform's" in reasons[0]
    assert "over the ledger's limit" in reasons[1]
    assert _stored(world) == 0
