"""Who may read a report; in step with :mod:`credits.identity.access`.

A program's report is for its funder owners and ops; a researcher who can see
the call (open or closed) is refused with 403, anyone else gets 404. A
project's report is for its members (researchers), ops, and the funders who
own a program that awarded the project an allocation; anyone else gets 404,
as for a project that does not exist.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.grants import queries as grants_queries
from credits.grants.errors import ProgramNotFound, ProjectNotFound
from credits.grants.models import Allocation, Program, ProgramOwner, ProgramStatus, Project
from credits.identity.access import (
    can_administer_program,
    can_read_program,
    can_read_project,
    require_scope,
)
from credits.identity.actor import Actor
from credits.identity.errors import MissingRole
from credits.identity.models import Role, Scope


def funds_project(session: Session, actor: Actor, project_id: int) -> bool:
    """True when the actor is a funder owning a program that awarded the project."""
    if actor.user_id is None:
        return False
    if not actor.has_role(Role.FUNDER):
        return False
    owned = select(ProgramOwner.program_id).where(ProgramOwner.user_id == actor.user_id)
    found = session.scalar(
        select(Allocation.id)
        .where(Allocation.project_id == project_id, Allocation.program_id.in_(owned))
        .limit(1)
    )
    return found is not None


def require_project_report(session: Session, actor: Actor, project_id: int) -> None:
    """Raises MissingScope, or ProjectNotFound for a project out of the actor's reach."""
    require_scope(actor, Scope.READ)
    project = session.get(Project, project_id)
    if project is None:
        raise ProjectNotFound(f"no project has the id {project_id}")
    if can_read_project(actor, member_ids=grants_queries.member_ids(project)):
        return
    if funds_project(session, actor, project_id):
        return
    raise ProjectNotFound(f"no project has the id {project_id}")


def require_program_report(session: Session, actor: Actor, program_id: int) -> None:
    """Raises MissingScope, ProgramNotFound (out of reach) or MissingRole (a
    researcher who sees the call but not its report)."""
    require_scope(actor, Scope.READ)
    program = session.get(Program, program_id)
    if program is None:
        raise ProgramNotFound(f"no program has the id {program_id}")
    owners = grants_queries.owner_ids(program)
    if can_administer_program(actor, owner_ids=owners):
        return
    if can_read_program(actor, status=ProgramStatus(program.status), owner_ids=owners):
        raise MissingRole(
            "a program's report is for its owners and ops",
            roles=[Role.FUNDER.value, Role.OPS.value],
        )
    raise ProgramNotFound(f"no program has the id {program_id}")
