"""The alerts in k8s/base/prometheus-rules.yaml parse, are complete, and name only
metrics the platform really exposes (promtool is not available here: the names are
checked against what /metrics and the transparency log's metrics serve)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from jobs_world import FLAVOUR, SYSTEM, build_jobs_world
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.db import utcnow
from credits.identity.tokens import create_token
from credits.jobs.passes import RECONCILER, record_pass
from credits.settings import load_settings

RULES_FILE = Path(__file__).resolve().parents[2] / "k8s" / "base" / "prometheus-rules.yaml"
# PromQL's own words in our expressions: functions, aggregations, keywords.
PROMQL_WORDS = {"sum", "max", "rate", "by", "on", "and", "absent", "histogram_quantile", "le"}
SEVERITIES = {"warning", "critical"}


def _rules() -> list[dict[str, Any]]:
    config_map = yaml.safe_load(RULES_FILE.read_text())
    (text,) = config_map["data"].values()
    groups = yaml.safe_load(text)["groups"]
    return [rule for group in groups for rule in group["rules"]]


RULES = _rules()


def _names_in(expr: str) -> set[str]:
    """The identifiers of an expression outside label matchers, ranges and strings."""
    bare = re.sub(r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]', " ", expr)
    return set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare)) - PROMQL_WORDS


def _sample_names(text: str) -> set[str]:
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def _served_names(client: FlaskClient, project_id: int) -> set[str]:
    for gpus in (1, 8):
        client.post(
            f"/api/v1/projects/{project_id}/jobs",
            json={
                "name": "train",
                "image": "python:3.12",
                "command": ["python", "train.py"],
                "flavour": FLAVOUR,
                "gpus": gpus,
                "max_runtime_seconds": 600 if gpus == 1 else 604_800,
            },
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    metrics = client.get("/metrics")
    transparency = client.get("/api/v1/transparency/metrics")
    assert metrics.status_code == transparency.status_code == 200
    return _sample_names(metrics.get_data(as_text=True)) | _sample_names(
        transparency.get_data(as_text=True)
    )


@pytest.fixture
def served(joined_session_factory: sessionmaker[Session]) -> set[str]:
    world = build_jobs_world(joined_session_factory)
    record_pass(world.factory, RECONCILER, finished_at=utcnow())
    app = create_app(
        load_settings(), session_factory=joined_session_factory, executor=world.executor
    )
    with world.session() as session:
        secret = create_token(session, email="pi@example.org", actor=SYSTEM).secret
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return _served_names(client, world.project_id)


def test_the_rules_file_holds_alerts() -> None:
    assert len(RULES) >= 10


@pytest.mark.parametrize("rule", RULES, ids=[rule["alert"] for rule in RULES])
def test_every_alert_has_a_duration_a_severity_and_a_summary(rule: dict[str, Any]) -> None:
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in RULES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", RULES, ids=[rule["alert"] for rule in RULES])
def test_every_expression_names_only_metrics_the_platform_serves(
    rule: dict[str, Any], served: set[str]
) -> None:
    names = _names_in(rule["expr"])
    assert names, "an alert on no metric"
    assert names <= served, f"not served: {sorted(names - served)}"


def test_the_name_check_catches_a_metric_nobody_serves() -> None:
    assert _names_in('sum(rate(credits_nonexistent_total{kind="x"}[5m])) by (le)') == {
        "credits_nonexistent_total"
    }
