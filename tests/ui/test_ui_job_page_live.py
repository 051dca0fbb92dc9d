"""The job page while the job lives: state.json carries its real timeline and start as
they happen (the page's live.js swaps them in), a failed job's log area says why it
failed, and the command is shown with its quoting."""

from __future__ import annotations

import html
import json
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits import formatting as fmt
from credits.app import create_app
from credits.db import utcnow
from credits.demo import DOMAIN, seed_demo
from credits.grants.models import Project
from credits.identity.models import User
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import DURATION_LABEL, EXIT_CODE_LABEL, SimulatedExecutor
from credits.jobs.runtime import run_cycle
from credits.settings import Settings, load_settings

FLAVOUR = "demo-gpu"
CSRF = "job-live"


@pytest.fixture
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def executor() -> SimulatedExecutor:
    return SimulatedExecutor([NodeCapacity(name="n0", flavour=FLAVOUR, gpus=4)], clock=utcnow)


@pytest.fixture
def app(
    joined_session_factory: sessionmaker[Session],
    session: Session,
    executor: SimulatedExecutor,
    settings: Settings,
) -> Flask:
    seed_demo(session, flavour=FLAVOUR, gpus_per_node=4)
    return create_app(settings, session_factory=joined_session_factory, executor=executor)


@pytest.fixture
def client(app: Flask, session: Session) -> FlaskClient:
    client = app.test_client()
    user = session.scalars(select(User).where(User.email == f"demo-researcher@{DOMAIN}")).one()
    sign_in_as(client, user.id, csrf_token=CSRF)
    return client


def _submit(client: FlaskClient, session: Session, command: str, labels: str) -> int:
    project_id = session.scalars(select(Project.id).order_by(Project.id)).first()
    answer = client.post(
        f"/projects/{project_id}/jobs/new",
        data={
            "csrf_token": CSRF,
            "action": "submit",
            "name": "live",
            "image": "python:3.12",
            "command": command,
            "flavour": FLAVOUR,
            "gpus": "1",
            "max_runtime_minutes": "10",
            "labels": labels,
        },
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[-400:]
    return int(answer.headers["Location"].rsplit("/", 1)[1])


def _state(client: FlaskClient, job_id: int) -> dict[str, object]:
    answer = client.get(f"/jobs/{job_id}/state.json", headers={"Accept": "application/json"})
    assert answer.status_code == 200
    body: dict[str, object] = json.loads(answer.get_data(as_text=True))
    return body


def _badges(timeline: object) -> list[str]:
    return re.findall(r'class="badge badge-(\w+)"', str(timeline))


def test_the_timeline_and_start_follow_the_job_while_it_runs(
    client: FlaskClient,
    session: Session,
    joined_session_factory: sessionmaker[Session],
    executor: SimulatedExecutor,
    settings: Settings,
) -> None:
    job_id = _submit(client, session, "python train.py", f"{DURATION_LABEL}=600")
    queued = _state(client, job_id)
    assert (queued["state"], queued["final"], queued["started"]) == ("queued", False, fmt.NOTHING)
    assert _badges(queued["timeline"]) == ["queued"]

    run_cycle(joined_session_factory, executor, settings)
    run_cycle(joined_session_factory, executor, settings)
    running = _state(client, job_id)
    assert running["state"] == "running" and running["final"] is False
    assert _badges(running["timeline"]) == ["queued", "starting", "running"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", str(running["started"]))
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'data-live-field="timeline" data-live-html' in page
    assert str(running["started"]) in page


def test_a_failed_job_says_why_where_its_log_would_be(
    client: FlaskClient,
    session: Session,
    joined_session_factory: sessionmaker[Session],
    executor: SimulatedExecutor,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels = f"{DURATION_LABEL}=0\n{EXIT_CODE_LABEL}=3"
    job_id = _submit(client, session, "python train.py", labels)
    for _ in range(3):
        run_cycle(joined_session_factory, executor, settings)
    assert _state(client, job_id)["state"] == "failed"
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    failure = re.search(r'data-testid="job-failure">([^<]*)<', page)
    assert failure is not None and failure.group(1).startswith("The job failed with exit code 3")

    # A job that wrote nothing (the executor kept no output): the log area says why.
    monkeypatch.setattr(executor, "logs", lambda *_, **__: "")
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    log = re.search(r'data-testid="job-log"[^>]*>([^<]*)</pre>', page)
    assert log is not None
    assert log.group(1) == f"No output. {failure.group(1)}"
    logs = client.get(f"/jobs/{job_id}/logs.json", headers={"Accept": "application/json"})
    assert json.loads(logs.get_data(as_text=True))["text"] == html.unescape(log.group(1))


def test_the_command_keeps_its_quoting(client: FlaskClient, session: Session) -> None:
    job_id = _submit(client, session, "python -c 'print(1 + 1)' --tag \"a b\" ''", "")
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    shown = re.search(r'data-testid="job-command">([^<]*)</code>', page)
    assert shown is not None
    assert shown.group(1) == "python -c &#39;print(1 + 1)&#39; --tag &#39;a b&#39; &#39;&#39;"
