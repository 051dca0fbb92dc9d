"""A report as one flat CSV table: one row per figure (long format).

Columns (``COLUMNS``): ``section`` (balance, allocation, usage, month,
burndown, burndown_day, efficiency, footprint, outcome, job, spend,
labelling, labelling_vendor, by_project, by_institution), then the row's keys,
empty where they do not apply: ``currency``, ``flavour``, ``month``
(YYYY-MM), ``date`` (YYYY-MM-DD), ``project_id``, ``institution``,
``allocation_id``, ``account_id``, ``job_id``, ``state``; then ``metric`` (a
field name of the JSON report, such as ``used`` or ``kg_co2e``) and
``value``; then the keys added since, so earlier columns keep their places:
``program_id``, ``vendor_id``, ``vendor``. Money is in micro-credits. A text
cell that starts like a spreadsheet formula (``=``, ``+``, ``-``, ``@``, tab,
carriage return) is written with a leading ``'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from credits.csv_cells import write_csv
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
Row = dict[str, Any]


def _figures(section: str, item: dict[str, Any], keys: Row) -> Iterator[Row]:
    for metric, value in item.items():
        if metric in _KEYS or isinstance(value, list):
            continue
        if isinstance(value, dict):
            yield from _figures(section, value, keys)
            continue
        yield {"section": section, **keys, "metric": metric, "value": value}


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
