"""Asking for a checkpointable job: the spec, the flavour's cap on its grace, the refusals
(API problem, portal form error) that change nothing, and what the executor is told."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from jobs_world import FLAVOUR, SYSTEM, JobsWorld, build_jobs_world
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from admin_ui.job_form import parse_job_form
from credits.app import create_app
from credits.identity.tokens import create_token
from credits.jobs.errors import CheckpointGraceOverCap, CheckpointingUnavailable
from credits.jobs.executors.kubernetes import KubernetesExecutor
from credits.jobs.launching import launch_requests
from credits.jobs.manifests import ManifestOptions
from credits.jobs.models import Job
from credits.pool import service as pool
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


def _cap(world: JobsWorld, seconds: int) -> None:
    with world.session() as session:
        pool.set_checkpoint_grace_cap(
            session, name=FLAVOUR, max_checkpoint_grace_seconds=seconds, actor=SYSTEM
        )


def _jobs(world: JobsWorld) -> int:
    with world.session() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"checkpoint_grace_seconds": 30}, "checkpoint_grace_seconds"),
        ({"checkpointable": False, "checkpoint_grace_seconds": 30}, "checkpoint_grace_seconds"),
        ({"checkpointable": "yes"}, "checkpointable"),
        ({"checkpointable": 1}, "checkpointable"),
        ({"checkpointable": True, "checkpoint_grace_seconds": -1}, "checkpoint_grace_seconds"),
        ({"checkpointable": True, "checkpoint_grace_seconds": 86401}, "checkpoint_grace_seconds"),
        ({"checkpointable": True, "checkpoint_grace_seconds": "60"}, "checkpoint_grace_seconds"),
    ],
)
def test_a_bad_checkpoint_request_names_its_field(
    world: JobsWorld, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        world.spec(**overrides)
    assert [error["loc"] for error in raised.value.errors()] == [(field,)]


def test_a_checkpointable_job_gets_its_grace_or_the_default_under_the_flavours_cap(
    world: JobsWorld,
) -> None:
    asked = world.submit(name="asked", checkpointable=True, checkpoint_grace_seconds=200)
    default = world.submit(name="default", checkpointable=True)
    plain = world.submit(name="plain")
    _cap(world, 30)
    lowered = world.submit(name="lowered", checkpointable=True)
    got = [
        (job.checkpointable, job.checkpoint_grace_seconds)
        for job in (asked, default, plain, lowered)
    ]
    assert got == [(True, 200), (True, 60), (False, 0), (True, 30)]


def test_a_grace_over_the_flavours_cap_is_refused_and_nothing_is_held(world: JobsWorld) -> None:
    _cap(world, 120)
    before = world.available()
    with pytest.raises(CheckpointGraceOverCap) as raised:
        world.submit(checkpointable=True, checkpoint_grace_seconds=121)
    assert raised.value.extra == {"field": "checkpoint_grace_seconds", "cap": 120}
    assert world.available() == before
    assert _jobs(world) == 0


def _submit(client: FlaskClient, world: JobsWorld, **overrides: Any) -> Any:
    body = {
        "name": "train",
        "image": "python:3.12",
        "command": ["python", "train.py"],
        "flavour": FLAVOUR,
        "gpus": 2,
        "max_runtime_seconds": 3600,
    } | overrides
    return client.post(
        f"/api/v1/projects/{world.project_id}/jobs",
        json=body,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )


def test_the_api_refuses_a_bad_checkpoint_request_with_a_problem_naming_the_field(
    client: FlaskClient, world: JobsWorld
) -> None:
    _cap(world, 120)
    before = world.available()
    over = _submit(client, world, checkpointable=True, checkpoint_grace_seconds=500)
    assert over.status_code == 422, over.json
    assert over.json["type"].endswith("/checkpoint-grace-over-cap")
    assert over.json["cap"] == 120
    alone = _submit(client, world, checkpoint_grace_seconds=30)
    assert alone.status_code == 422, alone.json
    assert [tuple(error["loc"]) for error in alone.json["errors"]] == [
        ("checkpoint_grace_seconds",)
    ]
    assert world.available() == before
    assert _jobs(world) == 0


def test_the_api_shows_a_jobs_checkpointing(client: FlaskClient, world: JobsWorld) -> None:
    created = _submit(client, world, checkpointable=True, checkpoint_grace_seconds=45)
    assert created.status_code == 201, created.json
    detail = client.get(f"/api/v1/jobs/{created.json['id']}").json
    assert (detail["checkpointable"], detail["checkpoint_grace_seconds"]) == (True, 45)
    assert (detail["move_count"], detail["moves"]) == (0, [])
    assert detail["spec"]["checkpointable"] is True


def _form(**values: str) -> dict[str, str]:
    return {
        "name": "train",
        "image": "python:3.12",
        "command": "python train.py",
        "flavour": FLAVOUR,
        "gpus": "1",
        "max_runtime_minutes": "60",
    } | values


def test_the_portal_form_asks_for_checkpointing_and_marks_a_bad_grace() -> None:
    good = parse_job_form(_form(checkpointable="on", checkpoint_grace_seconds="45"))
    assert good.spec is not None
    assert (good.spec.checkpointable, good.spec.checkpoint_grace_seconds) == (True, 45)
    alone = parse_job_form(_form(checkpoint_grace_seconds="45"))
    assert alone.spec is None
    assert "only to a job with checkpointable" in alone.errors["checkpoint_grace_seconds"]
    typed = parse_job_form(_form(checkpointable="on", checkpoint_grace_seconds="soon"))
    assert typed.errors == {"checkpoint_grace_seconds": "Checkpoint grace must be a whole number"}


def test_the_executor_is_told_the_grace_and_a_later_attempt_only_the_runtime_left(
    world: JobsWorld,
) -> None:
    job = world.submit(
        gpus=1,
        duration=600,
        max_runtime_seconds=1000,
        checkpointable=True,
        checkpoint_grace_seconds=45,
    )
    world.cycle()
    world.clock.advance(250)
    world.executor.preempt(job.id)
    world.reconcile()
    world.schedule()
    with world.session() as session:
        (request,) = launch_requests(session)
    assert (request.checkpointable, request.checkpoint_grace_seconds) == (True, 45)
    assert request.attempt == 2
    assert request.max_runtime_seconds == 750


def _cannot_checkpoint(world: JobsWorld) -> None:
    """The executor keeps no checkpoints, as Kubernetes without a checkpoint claim."""
    world.executor.can_checkpoint = False  # type: ignore[attr-defined]


def test_a_checkpointable_job_is_refused_where_checkpoints_cannot_be_kept(
    world: JobsWorld,
) -> None:
    _cannot_checkpoint(world)
    before = world.available()
    with pytest.raises(CheckpointingUnavailable) as raised:
        world.submit(checkpointable=True)
    assert raised.value.extra == {"field": "checkpointable"}
    assert world.available() == before
    assert _jobs(world) == 0
    assert world.submit(name="plain").checkpointable is False


def test_the_api_refuses_a_checkpointable_job_where_checkpoints_cannot_be_kept(
    client: FlaskClient, world: JobsWorld
) -> None:
    _cannot_checkpoint(world)
    before = world.available()
    refused = _submit(client, world, checkpointable=True)
    assert refused.status_code == 422, refused.json
    assert refused.json["type"].endswith("/checkpointing-unavailable")
    assert refused.json["field"] == "checkpointable"
    assert world.available() == before
    assert _jobs(world) == 0


def test_kubernetes_keeps_checkpoints_only_with_a_checkpoint_claim() -> None:
    options = ManifestOptions(namespace="jobs", instance="test")
    without = KubernetesExecutor(None, options)
    with_claim = KubernetesExecutor(
        None, ManifestOptions(namespace="jobs", instance="test", checkpoint_claim="checkpoints")
    )
    assert (without.can_checkpoint, with_claim.can_checkpoint) == (False, True)
