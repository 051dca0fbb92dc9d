"""The public list of calls open for proposals: no sign-in needed.

Someone deciding whether to use the platform reads what each call funds, when
it closes and what reviewers score; applying needs an account with the
researcher role, so the page sends others to sign in first.
"""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from admin_ui.web import current_actor, render, transaction
from credits.db import utcnow
from credits.grants.open_calls import list_open_calls
from credits.identity.models import Role

blueprint = Blueprint("ui_open_calls", __name__)


@blueprint.get("/calls")
def open_calls() -> ResponseReturnValue:
    me = current_actor()
    with transaction() as db:
        calls = list_open_calls(db, now=utcnow())
    return render(
        "open_calls.html",
        calls=calls,
        researcher=me is not None and me.has_role(Role.RESEARCHER),
    )
