"""A report as one flat CSV table: one row per figure (long format).

Columns (``COLUMNS``): ``section`` (balance, allocation, usage, month,
burndown, burndown_day, efficiency, footprint, outcome, job, spend,
labelling, labelling_vendor, by_project, by_institution), then the row's keys,
empty where they do not apply: ``currency``, ``flavour``, ``month``
(YYYY-MM), ``date`` (YYYY-MM-DD), ``project_id``, ``institution``,
``allocation_id``, ``account_id``, ``job_id``, ``state``; then ``metric`` (a
field name of the JSON report, such as ``used`` or ``kg_co2e``) and
``value``; then the keys added since, so earlier columns keep their places:
``program_id``, ``vendor_id``, ``vendor``. Money is in credits, as exact
decimal numbers, and its metric says so: ``used_credits`` (the ``currency``
column names which credits; the JSON report's ``used`` is in micro-credits).
Times are ISO 8601 without microseconds. A text
cell that starts like a spreadsheet formula (``=``, ``+``, ``-``, ``@``, tab,
carriage return) is written with a leading ``'``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from credits.csv_cells import write_csv
from credits.formatting import csv_credits, csv_time
from credits.reports.schemas import ProgramReport, ProjectReport

COLUMNS = (
    "section",
    "currency",
    "flavour",
    "month",
    "date",
    "project_id",
    "institution",
    "allocation_id",
    "account_id",
    "job_id",
    "state",
    "metric",
    "value",
    "program_id",
    "vendor_id",
    "vendor",
)
_KEYS = frozenset(COLUMNS) - {"section", "metric", "value"}
# The report's fields that are micro-credits (credits/reports/schemas.py).
MONEY_METRICS = frozenset(
    {
        "awarded",
        "released",
        "adjusted",
        "held",
        "used",
        "expired",
        "available",
        "overage",
        "forecast_unused",
        "lapsed",
        "cumulative_used",
        "rate_per_day",
        "spendable",
        "charged",
        "captured",
        "refunded",
        "spent",
        "gpu_used",
        "gpu_overage",
        "gpu_spent",
        "labelling_spent",
    }
)
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
Row = dict[str, Any]


def _figures(section: str, item: dict[str, Any], keys: Row) -> Iterator[Row]:
    for metric, value in item.items():
        if metric in _KEYS or isinstance(value, list):
            continue
        if isinstance(value, dict):
            yield from _figures(section, value, keys)
            continue
        yield {"section": section, **keys, **_cell(metric, value)}


def _cell(metric: str, value: Any) -> Row:
    """The metric and value as written: money in credits, times without microseconds."""
    if metric in MONEY_METRICS and isinstance(value, int) and not isinstance(value, bool):
        return {"metric": f"{metric}_credits", "value": csv_credits(value)}
    if isinstance(value, str) and _ISO_TIME.match(value):
        try:
            return {"metric": metric, "value": csv_time(value)}
        except ValueError:
            pass  # text that only starts like a time: a title, say
    return {"metric": metric, "value": value}


def _keys(item: dict[str, Any]) -> Row:
    return {key: item[key] for key in _KEYS if key in item and item[key] is not None}


def _section(section: str, items: list[Any]) -> Iterator[Row]:
    for model in items:
        item = model.model_dump(mode="json")
        yield from _figures(section, item, _keys(item))


def report_rows(report: ProgramReport | ProjectReport) -> Iterator[Row]:
    """Every figure of the report as a row of ``COLUMNS``."""
    sections: list[tuple[str, list[Any]]] = [
        ("balance", report.balances),
        ("allocation", report.allocations),
        ("usage", report.usage),
        ("month", report.months),
        ("burndown", report.burndown),
        ("efficiency", [report.efficiency]),
        ("footprint", [report.footprint]),
        ("outcome", report.outcomes),
        ("job", report.jobs),
        ("spend", report.spend),
        ("labelling", report.labelling),
        ("labelling_vendor", report.labelling_by_vendor),
    ]
    if isinstance(report, ProgramReport):
        sections += [("by_project", report.by_project), ("by_institution", report.by_institution)]
    for name, items in sections:
        yield from _section(name, items)
    for burn in report.burndown:
        for day in burn.daily:
            keys = {"currency": burn.currency.value, "date": day.date.isoformat()}
            yield from _figures("burndown_day", day.model_dump(mode="json"), keys)


def to_csv(report: ProgramReport | ProjectReport) -> str:
    """The report as CSV; text cells that start like a formula are made safe
    (:mod:`credits.csv_cells`)."""
    return write_csv(COLUMNS, report_rows(report))
