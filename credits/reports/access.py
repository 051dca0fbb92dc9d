"""Who may read a report, and how much of it; the rules are :mod:`credits.identity.rules`.

A program's report is for the people who administer it (its funder owners and
ops); a researcher who can see the call (open or closed) is refused with 403,
anyone else gets 404. A project's report is for its members (researchers),
ops, and the funders who own a program that awarded the project an
allocation; anyone else gets 404, as for a project that does not exist. Such
a funder sees the project's report over the accounts they may read alone:
their own programs' allocations and what was spent from them.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from credits.grants.errors import ProgramNotFound, ProjectNotFound
from credits.grants.models import Project
from credits.identity import rules
from credits.identity.access import administers_program, can_read_program, require_scope
from credits.identity.actor import Actor
from credits.identity.errors import MissingRole
from credits.identity.models import Role, Scope


def require_project_report(
    session: Session, actor: Actor, project_id: int
) -> ColumnElement[bool] | None:
    """The accounts of the project's report the actor may read: None for the whole
    project (its members and ops), or the condition on accounts that narrows it (a
    funder who awarded it). Raises MissingScope, or ProjectNotFound for a project out
    of the actor's reach."""
    require_scope(actor, Scope.READ)
    if rules.readable(session, Project, project_id, rules.visible_projects(actor)):
        return None
    if rules.readable(session, Project, project_id, rules.reported_projects(actor)):
        return rules.visible_accounts(actor)
    raise ProjectNotFound(f"no project has the id {project_id}")


def require_program_report(session: Session, actor: Actor, program_id: int) -> None:
    """Raises MissingScope, ProgramNotFound (out of reach) or MissingRole (a
    researcher who sees the call but not its report)."""
    require_scope(actor, Scope.READ)
    if administers_program(session, actor, program_id):
        return
    if can_read_program(session, actor, program_id):
        raise MissingRole(
            "a program's report is for its owners and ops",
            roles=[Role.FUNDER.value, Role.OPS.value],
        )
    raise ProgramNotFound(f"no program has the id {program_id}")
