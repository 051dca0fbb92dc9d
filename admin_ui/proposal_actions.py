"""The researcher's proposal page beyond the form: the kinds of proposal, withdrawing,
and the outcome of a decided proposal.

:mod:`admin_ui.researcher` renders the proposal form; this module gives it what
each kind needs (the current allocations a supplement or extension may name)
and, once a decision is taken, the award, the decision's reason and the reviews
as applicants may read them (:mod:`credits.grants.feedback`: no reviewer is
named). Withdrawing asks for a confirmation first: a withdrawn proposal cannot
be submitted again. The PI (or a manager) writes the progress report a pending
tranche waits for (:mod:`credits.grants.progress`); a refused report is shown
on the proposal page at its field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from admin_ui.confirm import confirmation, confirmed, rehearse
from admin_ui.grants_forms import hundredths
from admin_ui.researcher_forms import KIND_NOTES, AllocationChoice
from admin_ui.web import actor, login_required, render, require_role, transaction
from credits.db import utcnow
from credits.errors import CreditsError, NotFound
from credits.grants import proposals
from credits.grants.errors import ProposalForbidden
from credits.grants.feedback import ApplicantFeedback, applicant_feedback
from credits.grants.models import AllocationStatus, Award, MemberRole, ProposalKind, Tranche
from credits.grants.progress import submit_progress_report
from credits.grants.proposals import WITHDRAWABLE
from credits.grants.queries import MAX_PAGE
from credits.grants.schemas import AllocationOut, ProgramOut, ProposalOut
from credits.identity.access import get_project_for_actor, list_projects_for_actor
from credits.identity.access_proposals import (
    get_allocation_for_actor,
    get_award_of_proposal,
    get_proposal_for_actor,
    list_allocations_for_actor,
)
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope

blueprint = Blueprint("ui_proposal_actions", __name__)
PROPOSAL_PAGE = "ui_researcher.proposal"
KINDS = [(kind.value, KIND_NOTES[kind]) for kind in ProposalKind]


def _current(allocation: AllocationOut) -> bool:
    return allocation.status is AllocationStatus.ACTIVE and allocation.expires_at > utcnow()


def allocation_lookup(me: Actor) -> Callable[[int], AllocationChoice | None]:
    """Finds a current allocation the researcher can see, for the proposal form's parser."""

    def find(allocation_id: int) -> AllocationChoice | None:
        with transaction() as db:
            try:
                found = get_allocation_for_actor(db, me, allocation_id)
            except NotFound:
                return None
        if not _current(found):
            return None
        return AllocationChoice(id=found.id, project_id=found.project_id, currency=found.currency)

    return find


def _allocation_choices(db: Session, me: Actor, program_id: int) -> list[dict[str, Any]]:
    """The program's current allocations on projects the researcher can see, with titles."""
    titles = {p.id: p.title for p in list_projects_for_actor(db, me, limit=MAX_PAGE).items}
    page = list_allocations_for_actor(db, me, program_id=program_id, limit=MAX_PAGE)
    return [
        {"allocation": a, "project": titles[a.project_id]}
        for a in page.items
        if _current(a) and a.project_id in titles
    ]


def proposal_context(
    program: ProgramOut, proposal: ProposalOut | None, values: dict[str, str]
) -> dict[str, Any]:
    """What the proposal page shows besides the form: kinds, allocations, the outcome."""
    me = actor()
    kind = values.get("kind") or request.args.get("kind", "")
    if kind not in {value for value, _ in KINDS}:
        kind = ProposalKind.NEW.value
    context: dict[str, Any] = {
        "kinds": KINDS,
        "kind": kind,
        "withdrawable": False,
        "hundredths": hundredths,
        "report_form": g.get("tranche_report", {}),
        "can_report": False,
    }
    with transaction() as db:
        context["allocations"] = _allocation_choices(db, me, program.id)
        if proposal is not None:
            editor = _edits(db, me, proposal.project_id)
            context["withdrawable"] = editor and proposal.status in WITHDRAWABLE
            context["can_report"] = editor
            context["award"] = get_award_of_proposal(db, me, proposal.id)
            context["feedback"] = _feedback(db, me, proposal.id)
    return context


def _edits(db: Session, me: Actor, project_id: int) -> bool:
    """Whether the researcher withdraws the project's proposals and writes its progress
    reports: its PI or a manager, or ops."""
    if me.has_role(Role.OPS):
        return True
    try:
        project = get_project_for_actor(db, me, project_id)
    except NotFound:
        return False
    role = next((m.role for m in project.members if m.user_id == me.user_id), None)
    return role in {MemberRole.PI, MemberRole.MANAGER}


def _feedback(db: Session, me: Actor, proposal_id: int) -> ApplicantFeedback | None:
    """The reviews as applicants read them; nothing for a reader who is not an applicant
    (a researcher who also reviews the proposal reads it on the review pages)."""
    try:
        return applicant_feedback(db, proposal_id=proposal_id, actor=me)
    except ProposalForbidden:
        return None


def _page(me: Actor, proposal_id: int) -> ProposalOut:
    with transaction() as db:
        try:
            return get_proposal_for_actor(db, me, proposal_id)
        except NotFound:
            abort(404)


@blueprint.post("/applications/<int:proposal_id>/withdraw")
@login_required
def withdraw(proposal_id: int) -> ResponseReturnValue:
    me = require_role(Role.RESEARCHER, Role.OPS)
    found = _page(me, proposal_id)
    reason = request.form.get("reason", "").strip()
    back = url_for(PROPOSAL_PAGE, proposal_id=proposal_id)

    def change(db: Session) -> ProposalOut:
        get_proposal_for_actor(db, me, proposal_id, scope=Scope.WRITE)
        return proposals.withdraw_proposal(
            db, proposal_id=proposal_id, actor=me, reason=reason or None
        )

    title = found.title or "Untitled proposal"
    try:
        if not confirmed():
            rehearse(change)
            return confirmation(
                title=f"Withdraw {title}?",
                effect=(
                    f"withdraw the proposal {title}. It will not be reviewed or decided, and it"
                    " cannot be submitted again; apply anew if you change your mind."
                ),
                details=[("Reason", reason)] if reason else [],
                confirm_label="Withdraw the proposal",
                back=back,
            )
        with transaction() as db:
            change(db)
    except CreditsError as refusal:
        page = render(
            "error.html",
            title="Not withdrawn",
            message=f"{refusal} Nothing was changed.",
            back=("Back to the proposal", back),
        )
        return page, refusal.status
    flash("The proposal is withdrawn.")
    return redirect(back)


def _tranche_proposal(me: Actor, tranche_id: int) -> int:
    """The proposal whose award holds the tranche, when the researcher sees its allocation;
    a 404 otherwise."""
    with transaction() as db:
        tranche = db.get(Tranche, tranche_id)
        if tranche is None:
            abort(404)
        try:
            get_allocation_for_actor(db, me, tranche.allocation_id)
        except NotFound:
            abort(404)
        return db.get_one(Award, tranche.award_id).proposal_id


@blueprint.post("/tranches/<int:tranche_id>/report")
@login_required
def report(tranche_id: int) -> ResponseReturnValue:
    me = require_role(Role.RESEARCHER, Role.OPS)
    proposal_id = _tranche_proposal(me, tranche_id)
    text = request.form.get("progress_report", "")
    try:
        with transaction() as db:
            submit_progress_report(db, tranche_id=tranche_id, actor=me, report=text)
    except CreditsError as refusal:
        # The proposal page again (admin_ui.researcher draws it), the refusal at the field.
        g.tranche_report = {"tranche_id": tranche_id, "text": text, "error": str(refusal)}
        page = make_response(current_app.view_functions[PROPOSAL_PAGE](proposal_id=proposal_id))
        page.status_code = refusal.status
        return page
    flash("Your progress report is sent. The funder releases the tranche on it.")
    return redirect(url_for(PROPOSAL_PAGE, proposal_id=proposal_id))
