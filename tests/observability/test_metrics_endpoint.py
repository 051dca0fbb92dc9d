"""GET /metrics: who may read it, route templates as labels, and what the database
collector reads at scrape time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from jobs_world import JobsWorld, build_jobs_world
from observability_helpers import researcher_client, sample, samples, submit_job, world_app
from sqlalchemy.orm import Session, sessionmaker

from credits.db import make_engine, make_session_factory, utcnow
from credits.jobs.passes import RECONCILER, record_pass
from credits.notifications.service import enqueue_notification
from credits.observability.collector import DatabaseFigures, figures_metrics
from credits.observability.web import LEDGER_ENDPOINTS, ledger_result

TOKEN = "metrics-scrape-token-0123456789"
ELSEWHERE = {"REMOTE_ADDR": "10.1.2.3"}


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


@pytest.fixture
def client(world: JobsWorld, joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    return researcher_client(world, joined_session_factory)


def _metrics(client: FlaskClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return response.get_data(as_text=True)


def _submit(client: FlaskClient, world: JobsWorld, *, gpus: int = 1, seconds: int = 600) -> int:
    return submit_job(client, world, gpus=gpus, seconds=seconds).status_code


def test_metrics_answer_the_loopback_address_without_a_token(client: FlaskClient) -> None:
    assert "credits_metrics_database_up 1.0" in _metrics(client)


def test_metrics_are_hidden_from_other_addresses_without_a_token(client: FlaskClient) -> None:
    response = client.get("/metrics", environ_base=ELSEWHERE)
    assert response.status_code == 404
    assert response.json["type"].endswith("not-found")  # type: ignore[index]


def test_with_a_token_set_metrics_need_it_from_every_address(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    client = world_app(world, joined_session_factory, metrics_token=TOKEN).test_client()

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": TOKEN}).status_code == 404
    answered = client.get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=ELSEWHERE
    )
    assert answered.status_code == 200


def test_request_latency_is_labelled_by_route_template_and_status(client: FlaskClient) -> None:
    before = _metrics(client)
    client.get("/api/v1/jobs/424242")
    client.get("/api/v1/jobs/434343")
    client.get("/no/such/page/515151")
    text = _metrics(client)

    route = "/api/v1/jobs/<int:job_id>"
    count = "credits_http_request_duration_seconds_count"
    job_404 = {"route": route, "method": "GET", "status": "404"}
    assert sample(text, count, **job_404) - sample(before, count, **job_404) == 2
    unmatched = {"route": "<unmatched>", "method": "GET", "status": "404"}
    assert sample(text, count, **unmatched) - sample(before, count, **unmatched) == 1
    labels = {value for _, pairs in samples(text) for _, value in pairs}
    assert not {value for value in labels if "424242" in value or "515151" in value}


def test_an_unknown_method_is_counted_as_other(client: FlaskClient) -> None:
    client.open("/healthz", method="BREW")
    text = _metrics(client)

    labels = {value for _, pairs in samples(text) for _, value in pairs}
    assert "BREW" not in labels
    assert (
        sample(
            text,
            "credits_http_request_duration_seconds_count",
            route="<unmatched>",
            method="other",
            status="405",
        )
        >= 1
    )


def test_ledger_operations_count_holds_by_result(client: FlaskClient, world: JobsWorld) -> None:
    ok = {"kind": "hold", "result": "ok"}
    refused = {"kind": "hold", "result": "refused"}
    before = _metrics(client)

    assert _submit(client, world) == 201
    assert (
        _submit(client, world, gpus=8, seconds=604_800) == 402
    )  # a week on 8 GPUs: more than is granted
    text = _metrics(client)

    name = "credits_ledger_operations_total"
    assert sample(text, name, **ok) - sample(before, name, **ok) == 1
    assert sample(text, name, **refused) - sample(before, name, **refused) == 1


def test_every_counted_ledger_endpoint_is_a_route_that_changes_something(
    client: FlaskClient,
) -> None:
    app = client.application
    methods = {rule.endpoint: rule.methods or set() for rule in app.url_map.iter_rules()}
    assert {
        endpoint for endpoint in LEDGER_ENDPOINTS if "POST" not in methods.get(endpoint, set())
    } == set()


@pytest.mark.parametrize(
    ("status", "result"),
    [(200, "ok"), (201, "ok"), (402, "refused"), (409, "refused"), (503, "error")],
)
def test_a_status_maps_to_a_ledger_result(status: int, result: str) -> None:
    assert ledger_result(status) == result


def test_the_database_collector_reads_jobs_outbox_and_reconciler(
    client: FlaskClient, world: JobsWorld
) -> None:
    assert _submit(client, world) == 201
    assert _submit(client, world) == 201
    with world.session() as session:
        enqueue_notification(
            session,
            recipient_email="pi@example.org",
            kind="test",
            subject="Hello",
            body="Hi.\n",
            dedupe_key="metrics-test:1",
            now=utcnow() - timedelta(minutes=10),
        )
    finished_at = utcnow() - timedelta(seconds=30)
    record_pass(world.factory, RECONCILER, finished_at=finished_at, errors=2, duration_seconds=1.5)

    text = _metrics(client)

    assert sample(text, "credits_jobs", state="queued") == 2
    assert sample(text, "credits_jobs", state="running") == 0
    assert sample(text, "credits_job_queue_length") == 2
    assert sample(text, "credits_job_queue_oldest_age_seconds") > 0
    assert sample(text, "credits_notification_outbox_backlog") == 1
    assert sample(text, "credits_notification_outbox_oldest_age_seconds") >= 600
    assert sample(text, "credits_reconcile_last_pass_errors") == 2
    assert sample(text, "credits_reconcile_last_pass_duration_seconds") == 1.5
    assert 30 <= sample(text, "credits_reconcile_last_pass_age_seconds") < 600


def test_nothing_waiting_reads_as_zero_ages_and_no_reconciler_as_absent() -> None:
    figures = DatabaseFigures(
        jobs_by_state={"queued": 0, "starting": 0, "running": 0},
        oldest_queued_at=None,
        unsettled_records=0,
        oldest_unsettled_at=None,
        outbox_backlog=0,
        oldest_unsent_at=None,
        reconcile_finished_at=None,
        reconcile_errors=None,
    )
    values = {m.name: m.samples for m in figures_metrics(figures, utcnow())}

    assert values["credits_settlement_lag_seconds"][0].value == 0
    assert values["credits_job_queue_oldest_age_seconds"][0].value == 0
    assert not any(name.startswith("credits_reconcile") for name in values)


def test_settlement_lag_is_the_age_of_the_oldest_unsettled_record() -> None:
    now = utcnow()
    figures = DatabaseFigures(
        jobs_by_state={},
        oldest_queued_at=None,
        unsettled_records=3,
        oldest_unsettled_at=now - timedelta(minutes=20),
        outbox_backlog=0,
        oldest_unsent_at=None,
        reconcile_finished_at=now,
        reconcile_errors=0,
    )
    values = {m.name: m.samples[0].value for m in figures_metrics(figures, now) if m.samples}

    assert values["credits_settlement_lag_seconds"] == 1200
    assert values["credits_usage_unsettled_records"] == 3


def test_a_database_that_does_not_answer_reads_as_down(
    world: JobsWorld, tmp_path_factory: pytest.TempPathFactory
) -> None:

    # An empty SQLite file: no tables, so every query fails as a lost database would.
    empty = make_engine(f"sqlite:///{tmp_path_factory.mktemp('empty') / 'none.db'}")
    client = world_app(world, make_session_factory(empty)).test_client()

    text = _metrics(client)

    assert sample(text, "credits_metrics_database_up") == 0
    assert "credits_jobs" not in {name for name, _ in samples(text)}
