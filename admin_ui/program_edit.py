"""Editing a draft program: its name, description, window, criteria and review rules.

For the program's owners and ops, while the program is a draft (the service
refuses an open or closed one). The form is the new-program form, filled in
from the program and read by the same parser (:mod:`admin_ui.funder`); an error
is shown at its field and nothing is saved. The budget is not edited here: it
grows by funding, which the ledger records as a transfer.
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

from flask import Blueprint, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from admin_ui.funder import PROGRAM_FIELDS, _FormErrors, _funder, _program, _program_input
from admin_ui.grants_forms import hundredths, service_errors
from admin_ui.web import login_required, render, transaction
from credits.errors import CreditsError
from credits.grants import programs as program_service
from credits.grants.schemas import ProgramOut

blueprint = Blueprint("ui_program_edit", __name__, url_prefix="/funder")
_FIX = "Nothing was saved: correct the marked fields."


def program_values(program: ProgramOut) -> dict[str, str]:
    """The program as its form shows it: the closing day is the last day it is open."""
    closes = program.closes_at
    last_day = closes.date() - timedelta(days=1) if closes.time() == time.min else closes.date()
    return {
        "name": program.name,
        "description": program.description,
        "opens_at": program.opens_at.date().isoformat(),
        "closes_at": last_day.isoformat(),
        "criteria": "\n".join(criterion.label for criterion in program.criteria),
        "min_reviewers": str(program.min_reviewers),
        "min_mean_score": hundredths(program.min_mean_score),
        "initial_share_percent": str(program.initial_share_percent or ""),
    }


def _page(
    program: ProgramOut, values: dict[str, str], status: int = 200, **extra: Any
) -> ResponseReturnValue:
    context = {"program": program, "values": values, "errors": {}} | extra
    return render("funder/program_edit.html", **context), status


@blueprint.get("/programs/<int:program_id>/edit")
@login_required
def edit(program_id: int) -> ResponseReturnValue:
    me = _funder()
    with transaction() as db:
        program = _program(db, me, program_id)
    return _page(program, program_values(program))


@blueprint.post("/programs/<int:program_id>/edit")
@login_required
def update(program_id: int) -> ResponseReturnValue:
    me = _funder()
    with transaction() as db:
        program = _program(db, me, program_id)
    form = {name: request.form.get(name, "") for name in PROGRAM_FIELDS}
    try:
        parsed = _program_input(form)
        with transaction() as db:
            program_service.update_program(db, program_id=program_id, actor=me, **parsed)
    except _FormErrors as invalid:
        return _page(program, form, 400, errors=invalid.errors, error=_FIX)
    except CreditsError as refusal:
        fields, message = service_errors(refusal, PROGRAM_FIELDS)
        return _page(program, form, refusal.status, errors=fields, error=message or _FIX)
    flash("The program is saved.")
    return redirect(url_for("ui_funder.program", program_id=program_id))
