"""Program and project reports under /api/v1, as JSON or as one CSV table.

``?format=csv`` (or ``Accept: text/csv`` without a ``format``) answers the
flat table of :mod:`credits.reports.csv_export`; anything else answers the
JSON report. Access: :mod:`credits.reports.access`.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from credits.api.auth import credits_extension, current_actor, session_factory
from credits.api.openapi import operation
from credits.db import session_scope, utcnow
from credits.errors import InvalidInput
from credits.identity.access import require_actor
from credits.reports.access import require_program_report, require_project_report
from credits.reports.csv_export import to_csv
from credits.reports.energy import policy_from_settings
from credits.reports.schemas import ProgramReport, ProjectReport
from credits.reports.service import program_report, project_report

blueprint = Blueprint("reports", __name__, url_prefix="/api/v1")
CSV_TYPE = "text/csv"
FORMATS = ("json", "csv")


def _wants_csv() -> bool:
    # Read by hand, not through the documented query model: the document has one
    # media type per answer, and CSV is the alternative a person asks for.
    chosen = request.args.get("format")
    extra = set(request.args) - {"format"}
    if extra:
        raise InvalidInput(f"unknown query parameters: {', '.join(sorted(extra))}")
    if chosen is None:
        return request.accept_mimetypes.best_match(["application/json", CSV_TYPE]) == CSV_TYPE
    if chosen not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, got {chosen!r}")
    return chosen == "csv"


def _render(report: ProgramReport | ProjectReport, name: str, csv: bool) -> ResponseReturnValue:
    if not csv:
        return report.model_dump(mode="json")
    return Response(
        to_csv(report),
        mimetype=CSV_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@blueprint.get("/programs/<int:program_id>/report")
@operation("Report on a program", response=ProgramReport, problems=(403, 404, 422))
def get_program_report(program_id: int) -> ResponseReturnValue:
    """Balances, usage, burn-down, efficiency and energy of the program's allocations;
    ``?format=csv`` for one flat table. For the program's owners and ops."""
    actor = require_actor(current_actor())
    csv = _wants_csv()
    energy = policy_from_settings(credits_extension().settings)
    with session_scope(session_factory()) as session:
        require_program_report(session, actor, program_id)
        report = program_report(session, program_id, utcnow(), energy=energy)
    return _render(report, f"program-{program_id}-report", csv)


@blueprint.get("/projects/<int:project_id>/report")
@operation("Report on a project", response=ProjectReport, problems=(403, 404, 422))
def get_project_report(project_id: int) -> ResponseReturnValue:
    """Balances, usage, burn-down, efficiency and energy of the project; ``?format=csv``
    for one flat table. For its members, ops and the funders who awarded it; such a
    funder sees their own programs' allocations alone."""
    actor = require_actor(current_actor())
    csv = _wants_csv()
    energy = policy_from_settings(credits_extension().settings)
    with session_scope(session_factory()) as session:
        visible = require_project_report(session, actor, project_id)
        report = project_report(session, project_id, utcnow(), energy=energy, visible=visible)
    return _render(report, f"project-{project_id}-report", csv)
