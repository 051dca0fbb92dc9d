"""The platform's Prometheus metrics and their exposition.

Request metrics are counted in the process that served the request. Under
gunicorn each worker is its own process, so ``prometheus_client``'s
multiprocess mode keeps their values in files under ``PROMETHEUS_MULTIPROC_DIR``
(credits/gunicorn_conf.py sets and empties it) and a scrape that reaches any
worker sums them all. What the database knows (jobs, settlement, the outbox,
the reconciler) is read at scrape time by :mod:`credits.observability.collector`,
so every worker answers the same and nothing needs to be kept in step.

Labels carry route templates, methods, status codes and operation names: never
a user, a project or anything a request supplied.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PROMETHEUS_TEXT = CONTENT_TYPE_LATEST
UNMATCHED_ROUTE = "<unmatched>"

REQUEST_SECONDS = Histogram(
    "credits_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ("route", "method", "status"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REQUESTS_IN_PROGRESS = Gauge(
    "credits_http_requests_in_progress",
    "Requests being answered now, over every live web worker.",
    multiprocess_mode="livesum",
)
LEDGER_OPERATIONS = Counter(
    "credits_ledger_operations",
    "Ledger operations asked for over HTTP, by kind (hold, void, capture, grant, adjust)"
    " and result (ok, refused, error).",
    ("kind", "result"),
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def metrics_text(*scrape_time: Collector) -> bytes:
    """This process's metrics (every worker's, in multiprocess mode), then the
    collectors read at scrape time."""
    directory = multiprocess_dir()
    if directory is None:
        text = generate_latest(REGISTRY)
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    if scrape_time:
        fresh = CollectorRegistry(auto_describe=False)
        for collector in scrape_time:
            fresh.register(collector)
        text += generate_latest(fresh)
    return text


def mark_process_dead(pid: int) -> None:
    """Drops a stopped worker's live gauges (gunicorn's ``child_exit``); its counters stay."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
