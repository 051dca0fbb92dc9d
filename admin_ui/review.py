"""Reviewer pages: the proposals assigned to me, scoring them, declaring a conflict.

A proposal is in a reviewer's reach while they are assigned to it and have not
declared a conflict of interest; otherwise its page answers 404, exactly as
for a proposal that does not exist.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from admin_ui.confirm import confirmation, confirmed, rehearse
from admin_ui.grants_forms import SCORES, FieldError, hundredths, parse_score, service_errors
from admin_ui.web import login_required, render, require_role, transaction
from credits.errors import CreditsError, NotFound
from credits.grants import reviews
from credits.grants.models import ProposalStatus, Review
from credits.grants.queries import get_program, load_project
from credits.identity.access_proposals import (
    Queue,
    get_queued_proposal,
    list_queued_proposals,
    list_reviews_for_actor,
)
from credits.identity.actor import Actor
from credits.identity.models import Role

blueprint = Blueprint("ui_review", __name__, url_prefix="/reviews")


def _reviewer() -> Actor:
    return require_role(Role.REVIEWER)


@blueprint.get("")
@login_required
def assigned() -> ResponseReturnValue:
    me = _reviewer()
    with transaction() as db:
        page = list_queued_proposals(db, me, queue=Queue.REVIEW)
        reviewed = {review.proposal_id: review for review in _my_reviews(db, me)}
        programs = {p: get_program(db, program_id=p) for p in {x.program_id for x in page.items}}
        rows = [
            {
                "proposal": proposal,
                "program": programs[proposal.program_id],
                "review": reviewed.get(proposal.id),
                "open": proposal.status is ProposalStatus.IN_REVIEW,
            }
            for proposal in page.items
        ]
    return render("review/assigned.html", rows=rows, hundredths=hundredths)


def _my_reviews(db: Session, me: Actor) -> list[Review]:
    return list_reviews_for_actor(db, me, reviewer_user_id=me.user_id)


def _page(db: Session, me: Actor, proposal_id: int) -> dict[str, Any]:
    """What the review page shows; a 404 unless the reviewer holds an unconflicted assignment."""
    try:
        proposal = get_queued_proposal(db, me, proposal_id, queue=Queue.REVIEW)
    except NotFound:
        abort(404)
    review = next((r for r in _my_reviews(db, me) if r.proposal_id == proposal_id), None)
    project = load_project(db, proposal.project_id)
    return {
        "proposal": proposal,
        "program": get_program(db, program_id=proposal.program_id),
        "project": {"title": project.title, "institution": project.institution},
        "review": review,
        "scores": dict(review.scores) if review else {},
        "comment": review.comment if review else "",
        "open": proposal.status is ProposalStatus.IN_REVIEW,
        "choices": SCORES,
        "hundredths": hundredths,
    }


@blueprint.get("/<int:proposal_id>")
@login_required
def proposal(proposal_id: int) -> ResponseReturnValue:
    me = _reviewer()
    with transaction() as db:
        context = _page(db, me, proposal_id)
    return render("review/proposal.html", **context)


def _again(proposal_id: int, status: int, **overrides: Any) -> ResponseReturnValue:
    me = _reviewer()
    with transaction() as db:
        context = _page(db, me, proposal_id)
    return render("review/proposal.html", **(context | overrides)), status


@blueprint.post("/<int:proposal_id>/score")
@login_required
def score(proposal_id: int) -> ResponseReturnValue:
    me = _reviewer()
    with transaction() as db:
        criteria = _page(db, me, proposal_id)["program"].criteria
    sent = {c.key: request.form.get(f"score_{c.key}", "") for c in criteria}
    comment = request.form.get("comment", "")
    errors: dict[str, str] = {}
    scores: dict[str, int] = {}
    for criterion in criteria:
        try:
            scores[criterion.key] = parse_score(sent[criterion.key], f"score_{criterion.key}")
        except FieldError as error:
            errors[error.field] = error.message
    if not comment.strip():
        errors["comment"] = "write a comment for the applicants' record"
    if errors:
        return _again(proposal_id, 400, errors=errors, scores=sent, comment=comment)
    try:
        with transaction() as db:
            reviews.submit_review(
                db, proposal_id=proposal_id, actor=me, scores=scores, comment=comment
            )
    except NotFound:
        abort(404)
    except CreditsError as error:
        fields, message = service_errors(error, {"comment": "comment"})
        return _again(
            proposal_id, error.status, errors=fields, error=message, scores=sent, comment=comment
        )
    flash("Your review is saved. You can change it until the funder decides.")
    return redirect(url_for("ui_review.proposal", proposal_id=proposal_id))


@blueprint.post("/<int:proposal_id>/conflict")
@login_required
def conflict(proposal_id: int) -> ResponseReturnValue:
    me = _reviewer()
    reason = request.form.get("reason", "")
    with transaction() as db:
        title = _page(db, me, proposal_id)["proposal"].title or "Untitled proposal"
    if not reason.strip():
        return _again(proposal_id, 400, conflict_error="say briefly why, e.g. a co-author")

    def declare(db: Session) -> object:
        return reviews.declare_conflict(db, proposal_id=proposal_id, actor=me, reason=reason)

    try:
        if not confirmed():
            rehearse(declare)
            return confirmation(
                title=f"Declare a conflict with proposal {proposal_id}?",
                effect=(
                    f"declare a conflict of interest with proposal {proposal_id}, {title}. It"
                    " leaves your list, you cannot open it again, and any review you gave"
                    " stops counting."
                ),
                details=[("Reason", reason.strip())],
                confirm_label="Declare the conflict",
                back=url_for("ui_review.proposal", proposal_id=proposal_id),
            )
        with transaction() as db:
            declare(db)
    except NotFound:
        abort(404)
    except CreditsError as error:
        return _again(proposal_id, error.status, conflict_error=str(error), conflict_reason=reason)
    flash(
        f"You declared a conflict of interest with proposal {proposal_id}. "
        "It is no longer yours to review and any review you gave no longer counts."
    )
    return redirect(url_for("ui_review.assigned"))
