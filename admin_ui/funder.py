"""Funder pages: programs, budgets, the proposal queue, decisions and the dashboard.

For funders (and ops, who may administer any program). A program is in a
funder's reach when they own it; a proposal when it was submitted to a program
they own. Anything else answers 404, as a missing one does. Forms that move
credits (funding, awards) carry an idempotency key made for each rendering, so
a double submit acts once.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from admin_ui import funder_views as views
from admin_ui.confirm import confirmation, confirmed, rehearse
from admin_ui.grants_forms import (
    FieldError,
    credits_field,
    hundredths,
    new_key,
    parse_date,
    parse_int,
    service_errors,
)
from admin_ui.transparency_pages import proof_url
from admin_ui.web import login_required, render, require_role, transaction
from credits import formatting as fmt
from credits.api.auth import credits_extension
from credits.db import utcnow
from credits.errors import CreditsError, NotFound
from credits.grants import awards, funding, reviews
from credits.grants import programs as program_service
from credits.grants.models import MAX_REVIEWERS
from credits.grants.queries import MAX_PAGE, load_project
from credits.grants.schemas import AwardOut, ProgramOut, ProposalOut
from credits.id_text import id_from_text
from credits.identity.access import get_administered_program, list_administered_programs
from credits.identity.access_proposals import (
    Queue,
    get_award_of_proposal,
    get_queued_proposal,
)
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger.availability import award_opens_message
from credits.ledger.models import Currency
from credits.reports.csv_export import to_csv
from credits.reports.energy import policy_from_settings
from credits.reports.service import program_report
from credits.transparency import published

blueprint = Blueprint("ui_funder", __name__, url_prefix="/funder")
CURRENCIES = [currency.value for currency in Currency]
PROGRAM_FIELDS = {
    name: name
    for name in (
        "name",
        "description",
        "opens_at",
        "closes_at",
        "criteria",
        "min_reviewers",
        "min_mean_score",
        "initial_share_percent",
    )
}


def _funder() -> Actor:
    return require_role(Role.FUNDER, Role.OPS)


def _program(db: Session, me: Actor, program_id: int) -> ProgramOut:
    """The program when the funder administers it; a 404 otherwise."""
    try:
        return get_administered_program(db, me, program_id)
    except NotFound:
        abort(404)


def _proposal(db: Session, me: Actor, proposal_id: int) -> tuple[ProposalOut, ProgramOut]:
    """A proposal submitted to a program the funder administers; a 404 otherwise."""
    try:
        proposal = get_queued_proposal(db, me, proposal_id, queue=Queue.DECIDE)
    except NotFound:
        abort(404)
    return proposal, _program(db, me, proposal.program_id)


# Programs.


def _programs_page(me: Actor, status: int = 200, **overrides: Any) -> ResponseReturnValue:
    today = utcnow().date()
    values = {
        "opens_at": today.isoformat(),
        "closes_at": (today + timedelta(days=60)).isoformat(),
        "criteria": "Scientific merit\nFeasibility",
        "min_reviewers": "2",
        "min_mean_score": "3.00",
    }
    with transaction() as db:
        page = list_administered_programs(db, me, limit=MAX_PAGE)
    context = {"programs": page.items, "values": values, "errors": {}} | overrides
    return render("funder/programs.html", **context), status


@blueprint.get("/programs")
@login_required
def programs() -> ResponseReturnValue:
    return _programs_page(_funder())


def _criteria(text: str) -> list[dict[str, str]]:
    found = []
    for line in text.splitlines():
        label = line.strip()
        if not label:
            continue
        key = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:40] or "criterion"
        found.append({"key": key if key[0].isalpha() else f"c_{key}"[:40], "label": label})
    if not found:
        raise FieldError("criteria", "name at least one criterion, one per line")
    return found


def _program_input(form: dict[str, str]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {"name": form["name"], "description": form["description"]}
    steps: list[tuple[str, Any]] = [
        ("opens_at", lambda: parse_date(form["opens_at"], "opens_at")),
        ("closes_at", lambda: parse_date(form["closes_at"], "closes_at", whole_day=True)),
        ("criteria", lambda: _criteria(form["criteria"])),
        (
            "min_reviewers",
            lambda: parse_int(form["min_reviewers"], "min_reviewers", low=1, high=MAX_REVIEWERS),
        ),
        ("min_mean_score", lambda: _mean_score(form["min_mean_score"])),
        ("initial_share_percent", lambda: _share(form["initial_share_percent"])),
    ]
    for name, step in steps:
        try:
            parsed[name] = step()
        except FieldError as error:
            errors[error.field] = error.message
    if errors:
        raise _FormErrors(errors)
    return parsed


class _FormErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("form errors")
        self.errors = errors


def _mean_score(text: str) -> int:
    try:
        value = round(float(text.strip()) * 100)
    except (ValueError, OverflowError):  # OverflowError: "inf", "1e309"
        raise FieldError("min_mean_score", "enter a score from 1.00 to 5.00") from None
    if not 100 <= value <= 500:
        raise FieldError("min_mean_score", "enter a score from 1.00 to 5.00")
    return value


def _share(text: str) -> int | None:
    if not text.strip():
        return None
    return parse_int(text, "initial_share_percent", low=1, high=100)


@blueprint.post("/programs")
@login_required
def create_program() -> ResponseReturnValue:
    me = _funder()
    form = {name: request.form.get(name, "") for name in PROGRAM_FIELDS}
    try:
        parsed = _program_input(form)
        with transaction() as db:
            created = program_service.create_program(db, actor=me, **parsed)
    except _FormErrors as invalid:
        return _programs_page(me, 400, values=form, errors=invalid.errors, show_form=True)
    except CreditsError as error:
        fields, message = service_errors(error, PROGRAM_FIELDS)
        return _programs_page(
            me, error.status, values=form, errors=fields, error=message, show_form=True
        )
    flash(f"Program {created.name!r} created as a draft. Fund it, then open it for proposals.")
    return redirect(url_for("ui_funder.program", program_id=created.id))


def _program_page(
    me: Actor, program_id: int, status: int = 200, **overrides: Any
) -> ResponseReturnValue:
    with transaction() as db:
        program = _program(db, me, program_id)
        rows = views.queue(db, program, me)
    context = {
        "program": program,
        "rows": rows,
        "fund_key": new_key(),
        "currencies": CURRENCIES,
        "values": {},
        "errors": {},
        "hundredths": hundredths,
        "tranche_note": views.tranche_note(program),
    } | overrides
    return render("funder/program.html", **context), status


@blueprint.get("/programs/<int:program_id>")
@login_required
def program(program_id: int) -> ResponseReturnValue:
    return _program_page(_funder(), program_id)


@blueprint.post("/programs/<int:program_id>/fund")
@login_required
def fund(program_id: int) -> ResponseReturnValue:
    me = _funder()
    form = {name: request.form.get(name, "") for name in ("currency", "amount", "reason", "key")}
    with transaction() as db:
        _program(db, me, program_id)
    errors: dict[str, str] = {}
    amount = 0
    try:
        amount = credits_field(form["amount"], "amount") or 0
    except FieldError as error:
        errors[error.field] = error.message
    if form["currency"] not in CURRENCIES:
        errors["currency"] = "choose a currency"
    if not form["reason"].strip():
        errors["reason"] = "say where the money comes from, e.g. the budget line"
    if errors:
        return _program_page(me, program_id, 400, values=form, errors=errors)
    try:
        with transaction() as db:
            done = funding.fund_program(
                db,
                program_id=program_id,
                currency=form["currency"],
                amount_micro=amount,
                key=form["key"] or new_key(),
                actor=me,
                reason=form["reason"],
            )
    except CreditsError as error:
        fields, message = service_errors(error, {"currency": "currency", "key": "amount"})
        return _program_page(
            me, program_id, error.status, values=form, errors=fields, fund_error=message
        )
    if done.replayed:
        flash("That funding was already recorded; nothing moved twice.")
    else:
        flash(f"Added {fmt.money(amount, form['currency'])} to the program's budget.")
    return redirect(url_for("ui_funder.program", program_id=program_id))


def _transition(program_id: int, action: str) -> ResponseReturnValue:
    me = _funder()
    with transaction() as db:
        name = _program(db, me, program_id).name
    change = program_service.open_program if action == "open" else program_service.close_program
    try:
        if action == "close" and not confirmed():
            rehearse(lambda db: change(db, program_id=program_id, actor=me))
            return confirmation(
                title=f"Close program {program_id}?",
                effect=views.CLOSE_EFFECT.format(id=program_id, name=name),
                confirm_label="Close the program",
                back=url_for("ui_funder.program", program_id=program_id),
            )
        with transaction() as db:
            change(db, program_id=program_id, actor=me)
    except CreditsError as error:
        return _program_page(me, program_id, error.status, status_error=str(error))
    flash("The program is open for proposals." if action == "open" else "The program is closed.")
    return redirect(url_for("ui_funder.program", program_id=program_id))


@blueprint.post("/programs/<int:program_id>/open")
@login_required
def open_program(program_id: int) -> ResponseReturnValue:
    return _transition(program_id, "open")


@blueprint.post("/programs/<int:program_id>/close")
@login_required
def close_program(program_id: int) -> ResponseReturnValue:
    return _transition(program_id, "close")


# The dashboard and its CSV.


def _report(db: Session, program_id: int) -> Any:
    energy = policy_from_settings(credits_extension().settings)
    return program_report(db, program_id, utcnow(), energy=energy)


@blueprint.get("/programs/<int:program_id>/dashboard")
@login_required
def dashboard(program_id: int) -> ResponseReturnValue:
    me = _funder()
    with transaction() as db:
        program = _program(db, me, program_id)
        report = _report(db, program_id)
    return render(
        "funder/dashboard.html",
        program=program,
        report=report,
        chart=views.chart(report.by_project, "Credits by project"),
        titles=views.project_titles(report.spend),
    )


@blueprint.get("/programs/<int:program_id>/report.csv")
@login_required
def report_csv(program_id: int) -> ResponseReturnValue:
    me = _funder()
    with transaction() as db:
        _program(db, me, program_id)
        report = _report(db, program_id)
    return Response(
        to_csv(report),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="program-{program_id}-report.csv"'},
    )


# Proposals: reviews, reviewers and the decision.


def _proposal_page(
    me: Actor, proposal_id: int, status: int = 200, **overrides: Any
) -> ResponseReturnValue:
    with transaction() as db:
        proposal, program = _proposal(db, me, proposal_id)
        # Withheld, not refused, for an owner on the applying project: the page stays.
        summary = reviews.review_summaries(
            db, program_id=proposal.program_id, proposal_ids=[proposal_id], actor=me
        )[proposal_id]
        project = load_project(db, proposal.project_id)
        award = get_award_of_proposal(db, me, proposal_id)
        award_log_index = published.log_index_of(
            db, event_type="proposal.awarded", subject_type="proposal", subject_id=str(proposal_id)
        )
        context = {
            "proposal": proposal,
            "program": program,
            "project": {"title": project.title, "institution": project.institution},
            "summary": summary,
            "means": views.criterion_means(summary, [c.key for c in program.criteria]),
            "choices": views.reviewer_choices(db, summary),
            "users": views.user_labels(db),
            "award": award,
            "award_log_index": award_log_index,
            "proof_url": proof_url,
            "release_keys": views.release_keys(award),
            "release_errors": {},
            "release_values": {},
            # An owner on the project may neither decide nor assign (require_impartial).
            "decidable": proposal.status in views.DECIDABLE and not summary.withheld,
            "values": views.decision_defaults(proposal),
            "errors": {},
            "award_key": new_key(),
            "decision": views.decision_for(db, me, proposal),
            "hundredths": hundredths,
            "tranche_note": views.tranche_note(program),
        } | overrides
    return render("funder/proposal.html", **context), status


@blueprint.get("/proposals/<int:proposal_id>")
@login_required
def proposal(proposal_id: int) -> ResponseReturnValue:
    return _proposal_page(_funder(), proposal_id)


@blueprint.post("/proposals/<int:proposal_id>/reviewers")
@login_required
def assign(proposal_id: int) -> ResponseReturnValue:
    me = _funder()
    with transaction() as db:
        _proposal(db, me, proposal_id)
    reviewer = id_from_text(request.form.get("reviewer", ""))
    if reviewer is None:
        return _proposal_page(me, proposal_id, 400, assign_error="choose a reviewer")
    try:
        with transaction() as db:
            reviews.assign_reviewer(
                db, proposal_id=proposal_id, reviewer_user_id=reviewer, actor=me
            )
    except CreditsError as error:
        return _proposal_page(me, proposal_id, error.status, assign_error=str(error))
    flash("Reviewer assigned.")
    return redirect(url_for("ui_funder.proposal", proposal_id=proposal_id))


def _optional(text: str) -> str | None:
    return text if text.strip() else None


@blueprint.post("/proposals/<int:proposal_id>/award")
@login_required
def award(proposal_id: int) -> ResponseReturnValue:
    """Awards the proposal with the fields of its kind (:class:`views.DecisionFields`)."""
    me = _funder()
    with transaction() as db:
        proposal = _proposal(db, me, proposal_id)[0]
        decision = views.decision_for(db, me, proposal)
    names = ["reason", "override_reason", "key", *decision.names]
    form = {name: request.form.get(name, "") for name in names}
    errors: dict[str, str] = {}
    amounts: dict[str, int] = {}
    parsed: dict[str, Any] = {}
    for currency in decision.currencies:
        try:
            amount = credits_field(form[f"amount_{currency}"], f"amount_{currency}", required=False)
        except FieldError as error:
            errors[error.field] = error.message
            continue
        if amount is not None:
            amounts[currency] = amount
    for name in decision.dates:
        try:
            # An end date keeps its whole day, as the applicant's form reads it.
            parsed[name] = parse_date(form[name], name, whole_day=name == "ends_at")
        except FieldError as error:
            errors[error.field] = error.message
    if decision.currencies and not amounts and not errors:
        errors[f"amount_{decision.currencies[0]}"] = "award an amount" + (
            " in at least one currency" if len(decision.currencies) > 1 else ""
        )
    if errors:
        return _proposal_page(me, proposal_id, 400, values=form, errors=errors)
    key = form["key"] or new_key()

    def decide(db: Session) -> AwardOut:
        return awards.award_proposal(
            db,
            proposal_id=proposal_id,
            actor=me,
            key=key,
            amounts=amounts,
            reason=_optional(form["reason"]),
            override_reason=_optional(form["override_reason"]),
            **parsed,
        )

    try:
        if not confirmed():
            return views.confirm_award(rehearse(decide), proposal.title, decision)
        with transaction() as db:
            award = decide(db)
    except CreditsError as error:
        fields, message = service_errors(error, decision.service_fields)
        return _proposal_page(
            me, proposal_id, error.status, values=form, errors=fields, decision_error=message
        )
    flash(award_opens_message(award.starts_at))
    return redirect(url_for("ui_funder.proposal", proposal_id=proposal_id))


@blueprint.post("/proposals/<int:proposal_id>/reject")
@login_required
def reject(proposal_id: int) -> ResponseReturnValue:
    me = _funder()
    form = {name: request.form.get(name, "") for name in ("reject_reason", "reject_override")}
    with transaction() as db:
        _proposal(db, me, proposal_id)
    try:
        with transaction() as db:
            awards.reject_proposal(
                db,
                proposal_id=proposal_id,
                actor=me,
                reason=_optional(form["reject_reason"]),
                override_reason=_optional(form["reject_override"]),
            )
    except CreditsError as error:
        return _proposal_page(
            me, proposal_id, error.status, reject_values=form, reject_error=str(error)
        )
    flash("Rejected.")
    return redirect(url_for("ui_funder.proposal", proposal_id=proposal_id))
