"""The landing page: sign-in for visitors, the dashboard of each role for users."""

from __future__ import annotations

from flask import Blueprint, redirect, url_for
from flask.typing import ResponseReturnValue

from admin_ui.web import current_actor, render

blueprint = Blueprint("ui_home", __name__)


@blueprint.get("/")
def dashboard() -> ResponseReturnValue:
    me = current_actor()
    if me is None:
        return redirect(url_for("ui_auth.login"))
    return render("home.html")
