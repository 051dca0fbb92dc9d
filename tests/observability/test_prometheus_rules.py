"""The alerts in k8s/base/prometheus-rules.yaml parse, are complete, and name only
metrics the platform really exposes (promtool is not available here: the names are
checked against what /metrics and the transparency log's metrics serve)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobs_world import build_jobs_world
from observability_helpers import researcher_client, submit_job
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from credits.db import utcnow
from credits.jobs.passes import RECONCILER, record_pass

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


@pytest.fixture
def served(joined_session_factory: sessionmaker[Session]) -> set[str]:
    """Every sample name the platform serves once it has a job, a refusal (402), a
    reconcile pass and audit rows waiting for the public log."""
    world = build_jobs_world(joined_session_factory)
    record_pass(world.factory, RECONCILER, finished_at=utcnow(), duration_seconds=0.5)
    client = researcher_client(world, joined_session_factory)
    assert submit_job(client, world).status_code == 201
    assert submit_job(client, world, gpus=8, seconds=604_800).status_code == 402
    metrics = client.get("/metrics")
    transparency = client.get("/api/v1/transparency/metrics")
    assert metrics.status_code == transparency.status_code == 200
    return _sample_names(metrics.get_data(as_text=True)) | _sample_names(
        transparency.get_data(as_text=True)
    )


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
