"""A project's members page: who is on the project, and (for the PI, managers and ops)
adding a researcher by e-mail and taking people off.

The page is for whoever may read the project; anyone else gets a 404, as for a
project that does not exist. What a person may change follows the service's
rules (credits/identity/access.py): the PI and managers add, the PI removes
anyone but the PI, a manager removes plain members, anyone may leave. Removing
asks for a confirmation first, because the person loses the project's jobs,
data and credits at once.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from admin_ui.confirm import confirmation, confirmed, rehearse
from admin_ui.web import actor, login_required, render, transaction
from credits.errors import CreditsError, NotFound
from credits.grants import members as member_service
from credits.grants import projects as project_service
from credits.grants.models import MemberRole
from credits.grants.schemas import ProjectOut
from credits.identity.access import can_add_member, can_remove_member, get_project_for_actor
from credits.identity.actor import Actor
from credits.identity.models import Scope

blueprint = Blueprint("ui_members", __name__)
ROLES = (MemberRole.MEMBER.value, MemberRole.MANAGER.value)
ROLE_HINT = "A manager may also add members and draft proposals; a member runs jobs."
_FIX = "Nothing was changed: correct the marked field."


def _project(me: Actor, project_id: int, *, scope: Scope = Scope.READ) -> ProjectOut:
    with transaction() as db:
        try:
            return get_project_for_actor(db, me, project_id, scope=scope)
        except NotFound:
            abort(404)


def _my_role(project: ProjectOut, me: Actor) -> MemberRole | None:
    return next((m.role for m in project.members if m.user_id == me.user_id), None)


def _page(
    project: ProjectOut,
    me: Actor,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    mine = _my_role(project, me)
    removable = {
        m.user_id
        for m in project.members
        if can_remove_member(me, actor_role=mine, target_user_id=m.user_id, target_role=m.role)
    }
    page = render(
        "researcher/members.html",
        project=project,
        may_add=can_add_member(me, actor_role=mine) and project.status.value != "archived",
        removable=removable if project.status.value != "archived" else set(),
        roles=ROLES,
        role_hint=ROLE_HINT,
        values=values or {"role": MemberRole.MEMBER.value},
        errors=errors or {},
        error=error,
    )
    return page, status


@blueprint.get("/projects/<int:project_id>/members")
@login_required
def members(project_id: int) -> ResponseReturnValue:
    me = actor()
    return _page(_project(me, project_id), me)


@blueprint.post("/projects/<int:project_id>/members")
@login_required
def add_member(project_id: int) -> ResponseReturnValue:
    me = actor()
    project = _project(me, project_id)
    values = {name: request.form.get(name, "").strip() for name in ("email", "role")}
    errors = {}
    if not values["email"]:
        errors["email"] = "enter the e-mail address of a researcher on this platform"
    if values["role"] not in ROLES:
        errors["role"] = "choose member or manager"
    if errors:
        return _page(project, me, values=values, errors=errors, error=_FIX, status=400)
    try:
        with transaction() as db:
            get_project_for_actor(db, me, project_id, scope=Scope.WRITE)
            changed = member_service.add_member_by_email(
                db, project_id=project_id, email=values["email"], role=values["role"], actor=me
            )
    except CreditsError as refusal:
        return _refused(project, me, refusal, values)
    added = next((m for m in changed.members if m.email == values["email"].lower()), None)
    who = f"{added.name} ({added.email})" if added else values["email"]
    flash(f"{who} is now a {values['role']} of {changed.title}.")
    return redirect(url_for(".members", project_id=project_id))


def _refused(
    project: ProjectOut, me: Actor, refusal: CreditsError, values: dict[str, str]
) -> ResponseReturnValue:
    """The service's refusal at the e-mail field when it is about the person, else on top."""
    about_person = refusal.slug in {
        "invalid-email",
        "not-a-researcher",
        "already-project-member",
        "assesses-project-proposal",
    }
    if about_person:
        errors = {"email": str(refusal)}
        return _page(project, me, values=values, errors=errors, error=_FIX, status=refusal.status)
    message = f"{refusal} Nothing was changed."
    return _page(project, me, values=values, error=message, status=refusal.status)


@blueprint.post("/projects/<int:project_id>/members/<int:user_id>/remove")
@login_required
def remove_member(project_id: int, user_id: int) -> ResponseReturnValue:
    me = actor()
    project = _project(me, project_id)
    target = next((m for m in project.members if m.user_id == user_id), None)
    if target is None:
        abort(404)
    leaving = target.user_id == me.user_id

    def change(db: Session) -> ProjectOut:
        get_project_for_actor(db, me, project_id, scope=Scope.WRITE)
        return project_service.remove_member(db, project_id=project_id, user_id=user_id, actor=me)

    try:
        if not confirmed():
            rehearse(change)
            who = "yourself" if leaving else f"{target.name} ({target.email})"
            return confirmation(
                title=f"Remove {who} from {project.title}?",
                effect=(
                    f"take {who} off the project {project.title}. From now on "
                    f"{'you' if leaving else 'they'} cannot see its jobs, data or credits, nor"
                    " submit jobs on it."
                ),
                warning="Only the PI or a manager can add them back.",
                confirm_label="Remove" if not leaving else "Leave the project",
                back=url_for(".members", project_id=project_id),
            )
        with transaction() as db:
            change(db)
    except CreditsError as refusal:
        return _page(project, me, error=f"{refusal} Nothing was changed.", status=refusal.status)
    if leaving:
        flash(f"You left {project.title}.")
        return redirect(url_for("ui_home.dashboard"))
    flash(f"{target.name} is no longer on {project.title}.")
    return redirect(url_for(".members", project_id=project_id))
