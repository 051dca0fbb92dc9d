"""The jobs API: submit, list, read, logs, cancel, pool status, and their problems."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from jobs_world import FLAVOUR, RATE, SYSTEM, JobsWorld, build_jobs_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from credits.app import create_app
from credits.identity.models import Role
from credits.identity.service import create_user
from credits.identity.tokens import create_token
from credits.jobs.executors.base import ExecutorError
from credits.jobs.models import Job
from credits.settings import load_settings


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


@pytest.fixture
def client(world: JobsWorld, joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    app = create_app(
        load_settings(), session_factory=joined_session_factory, executor=world.executor
    )
    with world.session() as session:
        secret = create_token(session, email="pi@example.org", actor=SYSTEM).secret
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client


def _body(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "train",
        "image": "python:3.12",
        "command": ["python", "train.py"],
        "flavour": FLAVOUR,
        "gpus": 2,
        "max_runtime_seconds": 3600,
        "labels": {"credits.dev/simulated-duration-s": "60"},
    }
    return document | overrides


def _submit(
    client: FlaskClient, world: JobsWorld, body: dict[str, Any], **kwargs: Any
) -> TestResponse:
    """POSTs a job with a fresh Idempotency-Key, which a submission needs."""
    headers = {"Idempotency-Key": uuid.uuid4().hex} | kwargs.pop("headers", {})
    url = f"/api/v1/projects/{world.project_id}/jobs"
    return client.post(url, json=body, headers=headers, **kwargs)


def _jobs(world: JobsWorld) -> int:
    with world.session() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def test_submit_answers_201_with_the_queued_job_and_its_hold(
    client: FlaskClient, world: JobsWorld
) -> None:
    response = _submit(client, world, _body())
    assert response.status_code == 201, response.json
    job = response.json
    assert job["state"] == "queued"
    assert job["hold_micro"] == 2 * RATE
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{job['id']}")


def test_submit_without_enough_credits_is_a_402_naming_both_amounts(
    client: FlaskClient, world: JobsWorld
) -> None:
    response = _submit(
        client,
        world,
        _body(gpus=8, max_runtime_seconds=6 * 86400),
    )
    assert response.status_code == 402
    problem = response.json
    assert problem["type"].endswith("/insufficient-credits")
    assert problem["required"] == 8 * 6 * 24 * RATE
    assert problem["available"] == 100_000_000
    assert _jobs(world) == 0


@pytest.mark.parametrize(
    ("overrides", "slug"),
    [
        ({"gpus": 0}, "invalid-input"),
        ({"name": "Has Spaces"}, "invalid-input"),
        ({"env": {"CUDA_VISIBLE_DEVICES": "0"}}, "invalid-input"),
        ({"env": {"1BAD": "x"}}, "invalid-input"),
        ({"env": {"BIG": "x" * 40_000}}, "invalid-input"),
        ({"command": []}, "invalid-input"),
        ({"surprise": True}, "invalid-input"),
        ({"flavour": "nope-nope"}, "unknown-flavour"),
        ({"gpus": 12}, "job-never-fits"),
        ({"gpus": 64}, "job-never-fits"),
        ({"max_runtime_seconds": 400 * 86400}, "runtime-over-cap"),
    ],
)
def test_bad_submission_is_a_422_problem_and_nothing_is_held(
    client: FlaskClient, world: JobsWorld, overrides: dict[str, Any], slug: str
) -> None:
    before = world.available()
    response = _submit(client, world, _body(**overrides))
    assert response.status_code == 422, response.json
    assert response.json["type"].endswith(f"/{slug}")
    assert world.available() == before
    assert _jobs(world) == 0


def test_field_errors_name_the_field(client: FlaskClient, world: JobsWorld) -> None:
    response = _submit(client, world, _body(gpus="two", image=""))
    fields = {tuple(error["loc"]) for error in response.json["errors"]}
    assert ("gpus",) in fields
    assert ("image",) in fields


@pytest.mark.parametrize(
    "key",
    [
        "batch.kubernetes.io/job-name",
        "kubernetes.io/hostname",
        "app.kubernetes.io/name",
        "k8s.io/anything",
        "node.k8s.io/pool",
        "cluster.x-k8s.io/cluster-name",
        "x-k8s.io/owner",
        "istio.io/rev",
        "sidecar.istio.io/inject",
        "credits.dev/job-uid",
        "credits.dev/instance",
        "team.credits.dev/x",
    ],
)
def test_a_label_under_a_reserved_domain_is_a_422_naming_it(
    client: FlaskClient, world: JobsWorld, key: str
) -> None:
    labels = {"team": "vision", key: "x"}
    response = _submit(client, world, _body(labels=labels))
    assert response.status_code == 422, response.json
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["type"].endswith("/invalid-input")
    [error] = response.json["errors"]
    assert error["loc"] == ["labels", key]
    assert error["type"] == "reserved_label"
    assert _jobs(world) == 0


@pytest.mark.parametrize("key", ["team..x/owner", "team.-x/owner", "a-.b/owner"])
def test_a_label_key_whose_prefix_is_not_a_dns_subdomain_is_a_422_naming_it(
    client: FlaskClient, world: JobsWorld, key: str
) -> None:
    response = _submit(client, world, _body(labels={"team": "vision", key: "x"}))
    assert response.status_code == 422, response.json
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["type"].endswith("/invalid-input")
    [error] = response.json["errors"]
    assert (error["loc"], error["type"]) == (["labels", key], "label_key")
    assert _jobs(world) == 0


@pytest.mark.parametrize(
    "key", ["team", "example.com/team", "mykubernetes.io/x", "k8s.io.example.com/x"]
)
def test_labels_outside_the_reserved_domains_are_accepted(
    client: FlaskClient, world: JobsWorld, key: str
) -> None:
    response = _submit(client, world, _body(labels={key: "x"}))
    assert response.status_code == 201, response.json


@pytest.fixture
def kube_client(world: JobsWorld, joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    """The API of an installation running jobs on Kubernetes, with an image allow-list
    (the jobs themselves still go to the world's simulated executor)."""
    settings = load_settings(
        executor="kubernetes", job_image_registries="ghcr.io,registry.example.org/team"
    )
    app = create_app(settings, session_factory=joined_session_factory, executor=world.executor)
    with world.session() as session:
        secret = create_token(session, email="pi@example.org", actor=SYSTEM).secret
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/lab/train:1.0",
        "GHCR.io/lab/train",
        "ghcr.io/lab/train@sha256:" + "a" * 64,
        "registry.example.org/team/train:2",
        "registry.example.org/team/sub/train",
    ],
)
def test_an_image_from_an_allowed_registry_is_accepted(
    kube_client: FlaskClient, world: JobsWorld, image: str
) -> None:
    response = _submit(kube_client, world, _body(image=image))
    assert response.status_code == 201, response.json


@pytest.mark.parametrize(
    "image",
    [
        "python:3.12",  # docker.io/library/python
        "docker.io/ghcr.io/x",
        "localhost:5000/ghcr.io",
        "registry.example.org/teamwork/train",
        "registry.example.org/train",
        "evil.example/ghcr.io/train",
    ],
)
def test_an_image_from_another_registry_is_a_422_naming_the_image(
    kube_client: FlaskClient, world: JobsWorld, image: str
) -> None:
    before = world.available()
    response = _submit(kube_client, world, _body(image=image))
    assert response.status_code == 422, response.json
    problem = response.json
    assert problem["type"].endswith("/image-not-allowed")
    assert problem["field"] == "image"
    assert problem["registries"] == ["ghcr.io", "registry.example.org/team"]
    assert world.available() == before
    assert _jobs(world) == 0


def test_without_kubernetes_the_allow_list_does_not_apply(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    settings = load_settings(executor="simulated", job_image_registries="ghcr.io")
    app = create_app(settings, session_factory=joined_session_factory, executor=world.executor)
    with world.session() as session:
        secret = create_token(session, email="pi@example.org", actor=SYSTEM).secret
    response = _submit(
        app.test_client(),
        world,
        _body(),
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 201, response.json


def test_submission_replayed_with_its_idempotency_key_answers_200_with_the_first_job(
    client: FlaskClient, world: JobsWorld
) -> None:
    url = f"/api/v1/projects/{world.project_id}/jobs"
    first = client.post(url, json=_body(), headers={"Idempotency-Key": "abc"})
    again = client.post(url, json=_body(), headers={"Idempotency-Key": "abc"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]
    reused = client.post(url, json=_body(gpus=1), headers={"Idempotency-Key": "abc"})
    assert reused.status_code == 422
    assert _jobs(world) == 1


@pytest.mark.parametrize(
    ("headers", "slug"),
    [
        ({}, "idempotency-key-required"),
        ({"Idempotency-Key": ""}, "idempotency-key-required"),
        ({"Idempotency-Key": "   "}, "idempotency-key-required"),
        ({"Idempotency-Key": "k" * 10_000}, "invalid-idempotency-key"),
        ({"Idempotency-Key": "k" * 151}, "invalid-idempotency-key"),
        ({"Idempotency-Key": "tab\there"}, "invalid-idempotency-key"),
        ({"Idempotency-Key": "caf\u00e9"}, "invalid-idempotency-key"),
    ],
)
def test_a_submission_without_a_fitting_idempotency_key_is_a_400_and_holds_nothing(
    client: FlaskClient, world: JobsWorld, headers: dict[str, str], slug: str
) -> None:
    before = world.available()
    url = f"/api/v1/projects/{world.project_id}/jobs"
    response = client.post(url, json=_body(), headers=headers)
    assert response.status_code == 400, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith(f"/{slug}")
    assert (_jobs(world), world.available()) == (0, before)


def test_a_key_of_150_printable_characters_is_accepted(
    client: FlaskClient, world: JobsWorld
) -> None:
    key = "k ~" * 50
    response = _submit(client, world, _body(), headers={"Idempotency-Key": key})
    assert response.status_code == 201, response.json


@pytest.mark.parametrize("field", ["cpu", "memory_gb"])
@pytest.mark.parametrize("value", ["1", True, "2.5", None])
def test_cpu_and_memory_are_json_numbers_as_the_schema_says(
    client: FlaskClient, world: JobsWorld, field: str, value: object
) -> None:
    response = _submit(client, world, _body(**{field: value}))
    if value is None:  # null: the default per GPU
        assert response.status_code == 201, response.json
        return
    assert response.status_code == 422, response.json
    assert [error["loc"] for error in response.json["errors"]] == [[field]]
    assert _jobs(world) == 0


def test_list_filters_by_state_and_flavour(client: FlaskClient, world: JobsWorld) -> None:
    first = _submit(client, world, _body()).json
    _submit(client, world, _body(name="second"))
    client.post(f"/api/v1/jobs/{first['id']}/cancel")
    cancelled = client.get("/api/v1/jobs", query_string={"state": "cancelled"}).json
    assert [job["id"] for job in cancelled["items"]] == [first["id"]]
    queued = client.get(
        "/api/v1/jobs", query_string={"state": "queued", "project": world.project_id}
    ).json
    assert [job["name"] for job in queued["items"]] == ["second"]
    other = client.get("/api/v1/jobs", query_string={"flavour": "h100"}).json
    assert other["items"] == []
    bad = client.get("/api/v1/jobs", query_string={"state": "sleeping"})
    assert bad.status_code == 422


def test_job_runs_and_its_detail_logs_and_charges_show_it(
    client: FlaskClient, world: JobsWorld
) -> None:
    job = _submit(client, world, _body()).json
    world.cycle()
    world.clock.advance(60)
    world.cycle()
    detail = client.get(f"/api/v1/jobs/{job['id']}").json
    assert detail["state"] == "succeeded"
    assert [event["to_state"] for event in detail["events"]] == [
        "queued",
        "starting",
        "running",
        "succeeded",
    ]
    assert detail["charged_micro"] == -(-2 * 60 * RATE // 3600)
    assert detail["runs"][0]["outcome"] == "succeeded"
    logs = client.get(f"/api/v1/jobs/{job['id']}/logs", query_string={"tail": 5}).json
    assert logs["text"]
    assert len(logs["text"].splitlines()) <= 5


def test_the_whole_log_downloads_as_a_streamed_text_file(
    client: FlaskClient, world: JobsWorld
) -> None:
    job = _submit(client, world, _body()).json
    world.cycle()
    world.executor.add_output(job["id"], *(f"step {n} " + "x" * 1000 for n in range(200)), "ü")
    world.clock.advance(60)
    world.cycle()
    response = client.get(f"/api/v1/jobs/{job['id']}/logs/download")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="job-{job["id"]}-output.log"'
    )
    assert response.is_streamed
    chunks = list(response.iter_encoded())
    assert len(chunks) == 4  # 202 kB in 64 KiB chunks
    assert b"".join(chunks) == b"".join(world.executor.log_stream(job["id"]))
    lines = b"".join(chunks).decode().splitlines()
    assert lines[2].startswith("step 0 ") and lines[-2:] == ["ü", "exit 0"]
    tail = client.get(f"/api/v1/jobs/{job['id']}/logs", query_string={"tail": 2}).json
    assert tail["text"] == "ü\nexit 0\n"


def test_a_download_of_a_job_out_of_reach_is_a_404(client: FlaskClient, world: JobsWorld) -> None:
    job = _submit(client, world, _body()).json
    with world.session() as session:
        create_user(
            session,
            email="other@example.org",
            name="other",
            roles=(Role.RESEARCHER,),
            institution="Uni",
            actor=SYSTEM,
        )
        secret = create_token(session, email="other@example.org", actor=SYSTEM).secret
    outsider = {"Authorization": f"Bearer {secret}"}
    for job_id in (job["id"], 999_999):
        response = client.get(f"/api/v1/jobs/{job_id}/logs/download", headers=outsider)
        assert response.status_code == 404
        assert response.json["type"].endswith("/job-not-found")
    assert client.get("/api/v1/jobs/999999/logs/download").status_code == 404


def test_a_log_the_executor_cannot_reach_is_a_503(
    client: FlaskClient, world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _submit(client, world, _body()).json

    def unreachable(job_id: int) -> Iterator[bytes]:
        raise ExecutorError(f"reading the log of job {job_id}: HTTP 503 (after 4 tries)")

    monkeypatch.setattr(world.executor, "log_stream", unreachable)
    response = client.get(f"/api/v1/jobs/{job['id']}/logs/download")
    assert response.status_code == 503
    assert response.json["type"].endswith("/log-unavailable")
    assert "HTTP 503" in response.json["detail"]


def test_a_log_tail_or_the_pool_status_the_executor_cannot_reach_is_a_503(
    client: FlaskClient, world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _submit(client, world, _body()).json

    def unreachable(*args: object, **kwargs: object) -> Any:
        raise ExecutorError("listing jobs: HTTP 503 (after 4 tries)")

    monkeypatch.setattr(world.executor, "logs", unreachable)
    monkeypatch.setattr(world.executor, "capacity", unreachable)
    tail = client.get(f"/api/v1/jobs/{job['id']}/logs")
    pool = client.get("/api/v1/pool/status")
    assert tail.status_code == 503 and tail.json["type"].endswith("/log-unavailable")
    assert pool.status_code == 503 and pool.json["type"].endswith("/pool-unavailable")
    assert "HTTP 503" in tail.json["detail"] and "HTTP 503" in pool.json["detail"]


def test_a_submission_while_the_pool_cannot_be_read_is_a_503_that_holds_nothing(
    client: FlaskClient, world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> Any:
        raise ExecutorError("listing nodes: HTTP 503 (after 4 tries)")

    monkeypatch.setattr(world.executor, "capacity", unreachable)
    response = _submit(client, world, _body())
    assert response.status_code == 503
    assert response.json["type"].endswith("/pool-unavailable")
    assert "HTTP 503" in response.json["detail"]
    assert client.get("/api/v1/jobs").json["items"] == []


def test_cancel_of_a_finished_job_is_a_409(client: FlaskClient, world: JobsWorld) -> None:
    job = _submit(client, world, _body()).json
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").json["state"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert again.json["type"].endswith("/job-state-conflict")


def test_unknown_job_is_a_404(client: FlaskClient) -> None:
    assert client.get("/api/v1/jobs/999999").status_code == 404
    assert client.post("/api/v1/jobs/999999/cancel").status_code == 404


def test_pool_status_shows_capacity_and_queue(client: FlaskClient, world: JobsWorld) -> None:
    _submit(client, world, _body(gpus=16))
    _submit(client, world, _body(name="b", gpus=4))
    world.cycle()
    [row] = client.get("/api/v1/pool/status").json["flavours"]
    assert row == {
        "flavour": FLAVOUR,
        "nodes": 2,
        "gpus": 16,
        "gpus_in_use": 16,
        "gpus_free": 0,
        "queued_jobs": 1,
        "queued_gpus": 4,
        "running_jobs": 1,
    }


@pytest.fixture
def any_client(any_session: Session) -> tuple[FlaskClient, JobsWorld]:
    """The API on SQLite and on PostgreSQL, where a listing reads on the driver's cursor."""
    factory = sessionmaker(
        bind=any_session.connection(),
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
    )
    world = build_jobs_world(factory)
    app = create_app(load_settings(), session_factory=factory, executor=world.executor)
    with world.session() as session:
        secret = create_token(session, email="pi@example.org", actor=SYSTEM).secret
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client, world


def test_every_listed_job_reads_as_its_own_page_does_through_every_page(
    any_client: tuple[FlaskClient, JobsWorld],
) -> None:
    client, world = any_client
    ids = [_submit(client, world, _body(name=f"job-{n}", gpus=1)).json["id"] for n in range(5)]
    client.post(f"/api/v1/jobs/{ids[1]}/cancel")
    world.cycle()  # the others start and are placed
    world.clock.advance(60)
    world.cycle()  # and end

    listed: list[dict[str, Any]] = []
    query: dict[str, Any] = {"project": world.project_id, "limit": 2}
    while True:
        page = client.get("/api/v1/jobs", query_string=query)
        assert page.status_code == 200, page.json
        listed += page.json["items"]
        if page.json["next_cursor"] is None:
            assert "Link" not in page.headers
            break
        assert f"cursor={page.json['next_cursor']}" in page.headers["Link"]
        query["cursor"] = page.json["next_cursor"]

    assert [job["id"] for job in listed] == ids
    for job in listed:
        detail = client.get(f"/api/v1/jobs/{job['id']}").json
        assert {field: detail[field] for field in job} == job
    assert {job["state"] for job in listed} == {"cancelled", "succeeded"}
    assert any(job["placement"] for job in listed)
    assert all(job["finished_at"].endswith("Z") for job in listed)
