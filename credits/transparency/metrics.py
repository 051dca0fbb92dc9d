"""The log's state as Prometheus metrics (text exposition format).

``credits transparency status --prometheus`` prints them for node_exporter's
textfile collector; ``GET /api/v1/transparency/metrics`` serves them to a scraper.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from credits.transparency.service import LogStatus

PROMETHEUS_TEXT = CONTENT_TYPE_LATEST


def prometheus_text(status: LogStatus) -> bytes:
    """Gauges of one status; an unknown delay (nothing integrated yet, nothing
    waiting) is left out rather than reported as zero."""
    registry = CollectorRegistry()
    values: dict[str, tuple[str, float | None]] = {
        "credits_transparency_tree_size": (
            "Entries in the latest signed checkpoint.",
            status.size,
        ),
        "credits_transparency_unintegrated_rows": (
            "Audit rows not yet given a log index.",
            status.unintegrated,
        ),
        "credits_transparency_integration_delay_seconds": (
            "Now minus occurred_at of the newest integrated audit row.",
            status.integration_delay_s,
        ),
        "credits_transparency_oldest_unintegrated_age_seconds": (
            "Age of the oldest audit row not yet integrated.",
            status.oldest_unintegrated_age_s,
        ),
    }
    for name, (description, value) in values.items():
        if value is not None:
            Gauge(name, description, registry=registry).set(value)
    return generate_latest(registry)
