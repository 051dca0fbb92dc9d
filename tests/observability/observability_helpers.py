"""Shared by the observability tests: a job's audit data, a log captured as JSON
lines, and parsed Prometheus text."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from credits.audit.service import list_events
from credits.observability.logs import make_handler
from credits.settings import LogFormat


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
