"""Funder pages: releasing an award's pending tranche on a progress report.

For the owners of the tranche's program and ops; for anyone else the tranche
answers 404, as a missing one does. The form on the proposal page carries an
idempotency key made for each rendering, so a double submit releases once. A
missing report or a refusal shows the proposal page again with the error next
to the tranche, and nothing is released.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from admin_ui.funder import _funder, _proposal_page
from admin_ui.grants_forms import new_key
from admin_ui.web import login_required, transaction
from credits import formatting as fmt
from credits.errors import CreditsError, NotFound
from credits.grants import allocations
from credits.grants.models import Award
from credits.identity.access_proposals import load_administered_tranche
from credits.identity.actor import Actor

blueprint = Blueprint("ui_funder_tranches", __name__, url_prefix="/funder")
NO_REPORT = "write a progress report: the release approves it"


def _awarded_proposal(db: Session, me: Actor, tranche_id: int) -> int:
    """The id of the proposal whose award holds the tranche, when the funder
    administers its program; a 404 otherwise."""
    try:
        tranche = load_administered_tranche(db, me, tranche_id)
    except NotFound:
        abort(404)
    return db.get_one(Award, tranche.award_id).proposal_id


@blueprint.post("/tranches/<int:tranche_id>/release")
@login_required
def release(tranche_id: int) -> ResponseReturnValue:
    me = _funder()
    report = request.form.get("progress_report", "")
    key = request.form.get("key", "")
    with transaction() as db:
        proposal_id = _awarded_proposal(db, me, tranche_id)
    if not report.strip():
        return _proposal_page(
            me,
            proposal_id,
            400,
            release_errors={tranche_id: NO_REPORT},
            release_values={tranche_id: report},
        )
    try:
        with transaction() as db:
            released = allocations.release_tranche(
                db, tranche_id=tranche_id, actor=me, progress_report=report, key=key or new_key()
            )
    except CreditsError as error:
        return _proposal_page(
            me,
            proposal_id,
            error.status,
            release_errors={tranche_id: f"{error} Nothing was released."},
            release_values={tranche_id: report},
        )
    flash(f"Released {fmt.money(released.amount_micro)} to allocation #{released.allocation_id}.")
    return redirect(url_for("ui_funder.proposal", proposal_id=proposal_id))
