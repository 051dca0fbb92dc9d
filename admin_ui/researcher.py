"""The researcher's pages: open programs and proposals, and a project's page.

Every page loads what it shows through the access helpers, so a project,
program or proposal out of the researcher's reach is a 404, exactly as if it
did not exist. A form that a service refuses is shown again with the error
inline, and its transaction rolled back: nothing is saved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from admin_ui import charts
from admin_ui.datasets_pages import project_datasets
from admin_ui.proposal_actions import allocation_lookup, proposal_context
from admin_ui.researcher_forms import (
    PROJECT_FIELDS,
    ProposalForm,
    parse_ledger_filters,
    parse_project,
    parse_proposal,
    proposal_errors,
    proposal_values,
)
from admin_ui.web import actor, login_required, render, require_role, transaction
from credits.api.auth import credits_extension
from credits.db import utcnow
from credits.errors import CreditsError, NotFound
from credits.grants import projects as project_service
from credits.grants import proposals
from credits.grants.models import ProgramStatus, ProposalStatus
from credits.grants.queries import MAX_PAGE
from credits.grants.schemas import ProgramOut, ProjectOut, ProposalOut
from credits.identity.access import (
    get_program_for_actor,
    get_project_for_actor,
    list_programs_for_actor,
    list_projects_for_actor,
)
from credits.identity.access_proposals import get_proposal_for_actor, list_proposals_for_actor
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope
from credits.ledger import queries as ledger_queries
from credits.ledger.availability import project_availability
from credits.ledger.models import TransferKind
from credits.ledger.schemas import AccountOut, TransferOut
from credits.reports.access import require_project_report
from credits.reports.csv_export import to_csv
from credits.reports.energy import policy_from_settings
from credits.reports.service import project_report

blueprint = Blueprint("ui_researcher", __name__)
T = TypeVar("T")

LEDGER_ROWS = 200


def _or_404(load: Callable[[], T]) -> T:
    try:
        return load()
    except NotFound:
        abort(404)


# Programs and proposals.


@blueprint.get("/programs/open")
@login_required
def open_programs() -> ResponseReturnValue:
    me = require_role(Role.RESEARCHER)
    now = utcnow()
    with transaction() as db:
        page = list_programs_for_actor(db, me, status=ProgramStatus.OPEN, limit=MAX_PAGE)
        mine = list_proposals_for_actor(db, me, limit=MAX_PAGE).items
        names = {
            program.id: program.name
            for program in list_programs_for_actor(db, me, limit=MAX_PAGE).items
        }
    programs = [p for p in page.items if p.opens_at <= now < p.closes_at]
    return render(
        "researcher/programs.html",
        programs=programs,
        proposals=sorted(mine, key=lambda p: p.id, reverse=True),
        names=names,
    )


def _editable_projects(db: Session, me: Actor) -> list[ProjectOut]:
    """The active projects on which the researcher may draft proposals (PI or manager)."""
    projects = list_projects_for_actor(db, me, limit=MAX_PAGE).items
    return [
        project
        for project in projects
        if project.status.value == "active"
        and any(
            m.user_id == me.user_id and m.role.value in {"pi", "manager"} for m in project.members
        )
    ]


def _proposal_page(
    program: ProgramOut,
    projects: list[ProjectOut],
    form: ProposalForm | dict[str, str],
    *,
    proposal: ProposalOut | None = None,
    error: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    if isinstance(form, ProposalForm):
        values, errors = form.values, form.errors
    else:
        values, errors = form, {}
    page = render(
        "researcher/proposal_form.html",
        program=program,
        projects=projects,
        values=values,
        errors=errors,
        error=error,
        proposal=proposal,
        **proposal_context(program, proposal, values),
    )
    return page, status


@blueprint.get("/programs/<int:program_id>/apply")
@login_required
def new_proposal(program_id: int) -> ResponseReturnValue:
    me = require_role(Role.RESEARCHER)
    with transaction() as db:
        program = _or_404(lambda: get_program_for_actor(db, me, program_id))
        projects = _editable_projects(db, me)
    return _proposal_page(program, projects, {})


@blueprint.post("/programs/<int:program_id>/apply")
@login_required
def create_proposal(program_id: int) -> ResponseReturnValue:
    me = require_role(Role.RESEARCHER)
    form = parse_proposal(request.form, need_project=True, allocation=allocation_lookup(me))
    with transaction() as db:
        program = _or_404(lambda: get_program_for_actor(db, me, program_id))
        projects = _editable_projects(db, me)
    if form.errors:
        return _proposal_page(program, projects, form, error=_FIX, status=422)
    submit = request.form.get("action") == "submit"
    try:
        with transaction() as db:
            project_id = form.project_id or 0
            get_project_for_actor(db, me, project_id, scope=Scope.WRITE)
            created = proposals.create_proposal(
                db,
                program_id=program_id,
                project_id=project_id,
                kind=form.kind,
                allocation_id=form.allocation_id,
                actor=me,
                **form.content(),
            )
            if submit:
                proposals.submit_proposal(db, proposal_id=created.id, actor=me)
    except CreditsError as refusal:
        form.errors, message = proposal_errors(refusal)
        return _proposal_page(program, projects, form, error=message, status=422)
    flash("Proposal submitted." if submit else "Draft saved.")
    return redirect(url_for(".proposal", proposal_id=created.id))


@blueprint.get("/applications/<int:proposal_id>")
@login_required
def proposal(proposal_id: int) -> ResponseReturnValue:
    me = require_role(Role.RESEARCHER)
    with transaction() as db:
        found = _or_404(lambda: get_proposal_for_actor(db, me, proposal_id))
        program = get_program_for_actor(db, me, found.program_id)
        projects = _editable_projects(db, me)
    return _proposal_page(program, projects, proposal_values(found), proposal=found)


@blueprint.post("/applications/<int:proposal_id>")
@login_required
def update_proposal(proposal_id: int) -> ResponseReturnValue:
    me = require_role(Role.RESEARCHER)
    form = parse_proposal(request.form, need_project=False, allocation=allocation_lookup(me))
    with transaction() as db:
        found = _or_404(lambda: get_proposal_for_actor(db, me, proposal_id))
        program = get_program_for_actor(db, me, found.program_id)
        projects = _editable_projects(db, me)
    form.values["project_id"] = str(found.project_id)
    if form.errors:
        return _proposal_page(program, projects, form, proposal=found, error=_FIX, status=422)
    submit = request.form.get("action") == "submit"
    try:
        with transaction() as db:
            proposals.update_proposal(
                db,
                proposal_id=proposal_id,
                actor=me,
                **form.content(),
            )
            if submit:
                proposals.submit_proposal(db, proposal_id=proposal_id, actor=me)
    except CreditsError as refusal:
        form.errors, message = proposal_errors(refusal)
        return _proposal_page(program, projects, form, proposal=found, error=message, status=422)
    flash("Proposal submitted." if submit else "Draft saved.")
    return redirect(url_for(".proposal", proposal_id=proposal_id))


_FIX = "Nothing was saved: correct the marked fields."


# A new project.


def _project_form(
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    page = render("researcher/project_form.html", values=values, errors=errors or {}, error=error)
    return page, status


@blueprint.get("/projects/new")
@login_required
def new_project() -> ResponseReturnValue:
    require_role(Role.RESEARCHER, Role.OPS)
    return _project_form({})


@blueprint.post("/projects/new")
@login_required
def create_project() -> ResponseReturnValue:
    """Creates a project with the signed-in researcher as its PI."""
    me = require_role(Role.RESEARCHER, Role.OPS)
    values, errors = parse_project(request.form)
    if errors:
        return _project_form(values, errors, _FIX, 400)
    try:
        with transaction() as db:
            created = project_service.create_project(
                db,
                title=values["title"],
                field_of_science=values["field_of_science"],
                institution=values["institution"].strip() or None,
                actor=me,
            )
    except CreditsError as refusal:
        named = refusal.extra.get("field")
        if isinstance(named, str) and named in PROJECT_FIELDS:
            return _project_form(values, {named: str(refusal)}, _FIX, refusal.status)
        return _project_form(values, error=f"{refusal} Nothing was saved.", status=refusal.status)
    flash(f"Project {created.title!r} created. You are its PI.")
    return redirect(url_for(".project", project_id=created.id))


# A project's page.


def _ledger(
    db: Session, accounts: list[AccountOut], args: Any
) -> tuple[list[TransferOut], dict[int, str], Any]:
    ids = {account.id for account in accounts}
    filters = parse_ledger_filters(args, ids)
    names = {account.id: account.code for account in accounts}
    if filters.errors:
        return [], names, filters
    seen: dict[int, TransferOut] = {}
    for account in accounts:
        if filters.account is not None and account.id != filters.account:
            continue
        for transfer in ledger_queries.list_transfers(
            db, account_id=account.id, limit=LEDGER_ROWS
        ).items:
            if filters.keeps(transfer, ids):
                seen[transfer.id] = transfer
    rows = sorted(seen.values(), key=lambda t: t.id, reverse=True)[:LEDGER_ROWS]
    for transfer in rows:
        for other in (transfer.debit_account_id, transfer.credit_account_id):
            if other not in names:
                names[other] = ledger_queries.get_account(db, account_id=other).kind.value
    return rows, names, filters


@blueprint.get("/projects/<int:project_id>")
@login_required
def project(project_id: int) -> ResponseReturnValue:
    me = actor()
    energy = policy_from_settings(credits_extension().settings)
    with transaction() as db:
        detail = _or_404(lambda: get_project_for_actor(db, me, project_id))
        report = project_report(db, project_id, utcnow(), energy=energy)
        available = project_availability(db, project_id)
        transfers, names, filters = _ledger(db, detail.accounts, request.args)
        project_proposals = list_proposals_for_actor(
            db, me, project_id=project_id, limit=MAX_PAGE
        ).items
        datasets = project_datasets(db, me, project_id)
    currencies = sorted({line.currency.value for line in report.usage})
    usage_charts = [charts.usage_by_month_chart(report.usage, c) for c in currencies]
    if report.usage:
        usage_charts.append(charts.gpu_hours_by_flavour_chart(report.usage))
    allocation_accounts = [a for a in detail.accounts if a.kind.value == "allocation"]
    return render(
        "researcher/project.html",
        project=detail,
        report=report,
        availability=available,
        transfers=transfers,
        names=names,
        filters=filters,
        kinds=[kind.value for kind in TransferKind],
        filter_accounts=detail.accounts,
        allocation_accounts=allocation_accounts,
        usage_charts=usage_charts,
        proposals=project_proposals,
        draft=ProposalStatus.DRAFT,
        datasets=datasets,
    )


@blueprint.get("/projects/<int:project_id>/report.csv")
@login_required
def project_report_csv(project_id: int) -> ResponseReturnValue:
    me = actor()
    energy = policy_from_settings(credits_extension().settings)
    with transaction() as db:
        visible = _or_404(lambda: require_project_report(db, me, project_id))
        report = project_report(db, project_id, utcnow(), energy=energy, visible=visible)
    return Response(
        to_csv(report),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="project-{project_id}-report.csv"'},
    )
