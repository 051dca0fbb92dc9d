"""Shared by the observability tests: an app with the jobs world's researcher signed
in, a job submitted over the API, a job's audit data, a log captured as JSON lines,
and parsed Prometheus text."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jobs_world import FLAVOUR, SYSTEM, JobsWorld
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from credits.app import create_app
from credits.audit.service import list_events
from credits.identity.tokens import create_token
from credits.observability.logs import make_handler
from credits.settings import LogFormat, load_settings


def world_app(world: JobsWorld, factory: sessionmaker[Session], **settings: str) -> Flask:
    return create_app(load_settings(**settings), session_factory=factory, executor=world.executor)


def researcher_client(world: JobsWorld, factory: sessionmaker[Session]) -> FlaskClient:
    """A client of the app that sends the world's researcher's API token."""
    client = world_app(world, factory).test_client()
    with world.session() as session:
        secret = create_token(session, email="pi@example.org", actor=SYSTEM).secret
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client


def submit_job(
    client: FlaskClient, world: JobsWorld, *, gpus: int = 1, seconds: int = 600, **headers: str
) -> TestResponse:
    return client.post(
        f"/api/v1/projects/{world.project_id}/jobs",
        json={
            "name": "train",
            "image": "python:3.12",
            "command": ["python", "train.py"],
            "flavour": FLAVOUR,
            "gpus": gpus,
            "max_runtime_seconds": seconds,
        },
        headers={"Idempotency-Key": uuid.uuid4().hex} | headers,
    )


def job_event_data(session: Session, job_id: int, event_type: str) -> dict[str, Any]:
    (event,) = [
        e
        for e in list_events(session, subject_type="job", subject_id=str(job_id))
        if e.event_type == event_type
    ]
    data: dict[str, Any] = json.loads(event.canonical_json)["data"]
    return data


@contextmanager
def json_log_lines() -> Iterator[list[dict[str, Any]]]:
    """The root logger's INFO lines as parsed JSON objects while the block runs."""
    stream = io.StringIO()
    handler = make_handler(LogFormat.JSON, stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)
