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
from credits.ledger import service as ledger
from credits.ledger.models import Currency
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
        "quantity": 3600,
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
    batch = {"records": [_record(world, "a"), _record(world, "b", quantity=1)]}
    client.post(URL, json=batch)
    again = client.post(URL, json={"records": list(reversed(batch["records"]))}).json
    assert [r["outcome"] for r in again["results"]] == ["duplicate", "duplicate"]
    assert _stored(world) == 2


def test_a_used_record_id_with_another_payload_is_rejected(
    client: FlaskClient, world: JobsWorld
) -> None:
    client.post(URL, json={"records": [_record(world)]})
    changed = client.post(URL, json={"records": [_record(world, quantity=7200)]}).json
    assert changed["results"][0]["outcome"] == "rejected"
    assert "different payload" in changed["results"][0]["reason"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"currency": "label"}, "no label allocation"),
        ({"project_id": 999_999}, "no project has the id"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": "1e9"}, "quantity: Value error, quantity is a JSON number, not text"),
        ({"quantity": "3600"}, "not text"),
        ({"quantity": True}, "not text"),
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
    record = _record(world, unit="credit", quantity=1.25, resource=None)
    [result] = client.post(URL, json={"records": [record]}).json["results"]
    assert result["amount_micro"] == 1_250_000


def test_usage_beyond_what_the_project_has_is_overage_never_an_overdraft(
    client: FlaskClient, world: JobsWorld
) -> None:
    record = _record(world, unit="credit", quantity=150, resource=None, gpus=60)
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
    # Labelling credits buy no GPU time, so only the ledger's limit bounds them.
    with world.session() as session:
        ledger.open_account(
            session,
            code=f"label-allocation-{world.project_id}",
            currency=Currency.LABEL,
            project_id=world.project_id,
            actor=SYSTEM,
        )
    batch = {
        "records": [
            _record(world, "job:1:1:0", source="credits.jobs"),
            _record(world, "huge", currency="label", unit="credit", quantity=9e12, resource=None),
        ]
    }
    reasons = [r["reason"] for r in client.post(URL, json=batch).json["results"]]
    assert "platform's" in reasons[0]
    assert "over the ledger's limit" in reasons[1]
    assert _stored(world) == 0


# Plausibility (issue 12, finding 4): GPU time fits in the window times the GPUs.


def _minute(world: JobsWorld, record_id: str, **overrides: Any) -> dict[str, Any]:
    end = utcnow() - timedelta(minutes=5)
    window = {"start": (end - timedelta(seconds=60)).isoformat(), "end": end.isoformat()}
    return _record(world, record_id, **window | overrides)


def test_a_billion_gpu_seconds_in_one_minute_refuse_the_whole_batch(
    client: FlaskClient, world: JobsWorld
) -> None:
    before = world.available()
    batch = {"records": [_minute(world, "fine", quantity=60), _minute(world, "x", quantity=1e9)]}
    response = client.post(URL, json=batch)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem["type"].endswith("/implausible-usage")
    [error] = problem["errors"]
    assert error["loc"] == ["records", 1, "quantity"]
    assert error["type"] == "implausible_usage"
    assert "do not fit in a window of 60 seconds on 1 GPU(s)" in error["msg"]
    assert _stored(world) == 0
    settle_all_pending(world.factory, batch_size=100)
    assert world.available() == before


def test_a_record_may_cover_as_many_gpus_as_it_names_up_to_the_limit(
    client: FlaskClient, world: JobsWorld
) -> None:
    eight = _minute(world, "eight", quantity=480, gpus=8)
    response = client.post(URL, json={"records": [eight]})
    assert response.status_code == 200, response.json
    assert response.json["accepted"] == 1
    for record_id, overrides in (
        ("one-gpu", {"quantity": 61}),
        ("nine", {"quantity": 481, "gpus": 8}),
        ("hours", {"unit": "gpu_hour", "quantity": 0.02}),
        ("too-many-gpus", {"quantity": 60, "gpus": 65}),
    ):
        refused = client.post(URL, json={"records": [_minute(world, record_id, **overrides)]})
        assert refused.status_code == 422, (record_id, refused.json)
    assert _stored(world) == 1


def test_gpu_credits_are_bounded_by_what_the_gpu_time_costs(
    client: FlaskClient, world: JobsWorld
) -> None:
    # One GPU for a minute at 2.5 credits per GPU-hour costs at most 0.041667 credits.
    fits = _minute(world, "fits", unit="credit", quantity=0.041667, resource=None)
    over = _minute(world, "over", unit="credit", quantity=0.041668, resource=None)
    assert client.post(URL, json={"records": [fits]}).status_code == 200
    refused = client.post(URL, json={"records": [over]})
    assert refused.status_code == 422
    assert "more than 1 GPU(s) cost" in refused.json["errors"][0]["msg"]
