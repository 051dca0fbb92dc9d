"""Who may do what: the checks every route makes, and the only way to load a scoped object.

Each helper tests one condition per line so that a test can name the line it
proves. A route calls these before any service; a refused read of a scoped
object looks exactly like a missing one, so ids cannot be probed. Who may read
what is one rule per object kind, in :mod:`credits.identity.rules`: a list
filters by it and a single read loads through it.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import ColumnElement, Connection, select
from sqlalchemy.orm import Session, lazyload

from credits.grants import queries as grants_queries
from credits.grants.errors import (
    ProgramNotFound,
    ProjectNotFound,
)
from credits.grants.models import (
    MemberRole,
    Program,
    ProgramStatus,
    Project,
    ProjectStatus,
)
from credits.grants.schemas import (
    ProgramOut,
    ProgramPage,
    ProjectDetail,
    ProjectPage,
)
from credits.identity import rules
from credits.identity.actor import Actor
from credits.identity.errors import AuthenticationRequired, MissingRole, MissingScope
from credits.identity.models import Role, Scope
from credits.ledger import queries as ledger_queries
from credits.ledger.errors import AccountNotFound
from credits.ledger.models import Account
from credits.ledger.schemas import AccountOut

# Whoever runs the ``credits`` command can read the database, so its listings and
# shows read as ops do; they still load through the rules, like every other reader.
CLI_READER = Actor(label="cli:ops", roles=frozenset({Role.OPS}))


def require_actor(actor: Actor | None) -> Actor:
    """The actor, when the request carried a credential; raises AuthenticationRequired."""
    if actor is None:
        raise AuthenticationRequired("this needs an API token or a login")
    return actor


def require_scope(actor: Actor, scope: Scope) -> None:
    """Raises MissingScope unless the actor's credential allows ``scope``.

    A credential without scopes (a login, an unscoped token, the system) allows
    every scope; a token with ``admin`` allows every scope too.
    """
    if actor.allows_scope(scope):
        return
    raise MissingScope(f"this API token lacks the {scope.value!r} scope", scope=scope.value)


def require_any_role(actor: Actor, *roles: Role) -> None:
    """Raises MissingRole unless the actor holds at least one of ``roles``.

    Raises ValueError when no role is named: that is a bug in the caller, and
    refusing everyone silently would hide it.
    """
    if not roles:
        raise ValueError("require_any_role needs at least one role")
    if any(actor.has_role(role) for role in roles):
        return
    names = ", ".join(role.value for role in roles)
    raise MissingRole(f"this needs one of the roles: {names}", roles=[r.value for r in roles])


# Ledger accounts: the rule is :func:`credits.identity.rules.visible_accounts`.


def list_ledger_accounts_for_actor(
    session: Session,
    actor: Actor,
    *,
    project_id: int | None = None,
    currency: str | None = None,
    kind: str | None = None,
) -> list[AccountOut]:
    """Accounts matching the filters that the actor may read: ops all, a funder their
    programs' pools and allocations, members their projects' accounts. Raises
    MissingScope without ``read``."""
    require_scope(actor, Scope.READ)
    return ledger_queries.list_accounts(
        session,
        project_id=project_id,
        currency=currency,
        kind=kind,
        visible=rules.visible_accounts(actor),
    )


def get_ledger_account_for_actor(
    db: Session | Connection, actor: Actor, account_id: int
) -> AccountOut:
    """The ledger account ``account_id``, when the actor may read it.

    Raises MissingScope without the ``read`` scope, and AccountNotFound both
    when the account does not exist and when the actor may not read it, with
    the same message, so that a refusal does not confirm that an id exists.
    """
    require_scope(actor, Scope.READ)
    row = rules.read_visible_row(db, Account, account_id, rules.visible_accounts(actor))
    if row is None:
        raise AccountNotFound(f"no ledger account has the id {account_id}")
    return AccountOut.model_validate(row)


# Programs: ops see all; a funder sees the programs they own; a researcher sees
# published calls (open or closed), so that they can apply (rules.visible_programs).


def can_create_program(actor: Actor) -> bool:
    """Ops and funders create programs; a creating funder becomes an owner."""
    if actor.has_role(Role.OPS):
        return True
    return actor.has_role(Role.FUNDER)


def can_administer_program(actor: Actor, *, owner_ids: Collection[int]) -> bool:
    """Update, open, close, fund and add owners: ops, or a funder who owns the program."""
    if actor.has_role(Role.OPS):
        return True
    if not actor.has_role(Role.FUNDER):
        return False
    return actor.user_id in owner_ids


def _load_program(
    session: Session, actor: Actor, program_id: int, rule: ColumnElement[bool], scope: Scope
) -> Program:
    require_scope(actor, scope)
    program = rules.load_visible(session, Program, program_id, rule)
    if program is None:
        raise ProgramNotFound(f"no program has the id {program_id}")
    return program


def get_program_for_actor(
    session: Session, actor: Actor, program_id: int, *, scope: Scope = Scope.READ
) -> ProgramOut:
    """The program ``program_id`` with its budget, when the actor may see it.

    ``scope`` is what the caller's use needs: ``read`` to show the program,
    ``write`` before changing it. Raises MissingScope without it, and
    ProgramNotFound both when the program does not exist and when the actor
    may not see it, with the same message, so ids cannot be probed.
    """
    program = _load_program(session, actor, program_id, rules.visible_programs(actor), scope)
    return grants_queries.render_program(session, program)


def get_administered_program(
    session: Session, actor: Actor, program_id: int, *, scope: Scope = Scope.READ
) -> ProgramOut:
    """The program, when the actor administers it (ops, an owner who is a funder); else
    ProgramNotFound, as for a missing one. Raises MissingScope without ``scope``."""
    rule = rules.administered_programs(actor)
    program = _load_program(session, actor, program_id, rule, scope)
    return grants_queries.render_program(session, program)


def can_read_program(session: Session, actor: Actor, program_id: int) -> bool:
    """True when the program exists and the actor may see it."""
    return rules.readable(session, Program, program_id, rules.visible_programs(actor))


def administers_program(session: Session, actor: Actor, program_id: int) -> bool:
    """True when the program exists and the actor administers it."""
    return rules.readable(session, Program, program_id, rules.administered_programs(actor))


def list_programs_for_actor(
    session: Session,
    actor: Actor,
    *,
    status: ProgramStatus | None = None,
    owner_id: int | None = None,
    cursor: int | None = None,
    limit: int = grants_queries.DEFAULT_PAGE,
) -> ProgramPage:
    """A page of the programs the actor may see; raises MissingScope without ``read``."""
    require_scope(actor, Scope.READ)
    return grants_queries.list_programs(
        session,
        status=status,
        owner_id=owner_id,
        cursor=cursor,
        limit=limit,
        visible=rules.visible_programs(actor),
    )


def list_administered_programs(
    session: Session, actor: Actor, *, limit: int = grants_queries.DEFAULT_PAGE
) -> ProgramPage:
    """A page of the programs the actor administers; raises MissingScope without ``read``."""
    require_scope(actor, Scope.READ)
    return grants_queries.list_programs(
        session, limit=limit, visible=rules.administered_programs(actor)
    )


# Projects: ops see all; researchers see the projects they are on (rules.visible_projects).


def can_create_project(actor: Actor, *, pi_user_id: int) -> bool:
    """Ops name any PI; a researcher creates a project with themselves as PI."""
    if actor.has_role(Role.OPS):
        return True
    if not actor.has_role(Role.RESEARCHER):
        return False
    return actor.user_id == pi_user_id


def can_read_project(session: Session, actor: Actor, project_id: int) -> bool:
    """True when the project exists and the actor may see it.

    Membership counts only while the member holds the researcher role, so that
    revoking the role takes a person's project powers with it.
    """
    return rules.readable(session, Project, project_id, rules.visible_projects(actor))


def load_readable_project(session: Session, actor: Actor, project_id: int) -> Project | None:
    """The project row, members not loaded, when it exists and the actor may see it
    (as :func:`can_read_project`): one statement, for a job submission's checks."""
    query = (
        select(Project)
        .where(Project.id == project_id, rules.visible_projects(actor))
        .options(lazyload(Project.members))
        .execution_options(populate_existing=True)
    )
    return session.scalar(query)


def can_add_member(actor: Actor, *, actor_role: MemberRole | None) -> bool:
    """Ops, the PI and managers (who still hold the researcher role) add members."""
    if actor.has_role(Role.OPS):
        return True
    if not actor.has_role(Role.RESEARCHER):
        return False
    if actor_role is MemberRole.PI:
        return True
    return actor_role is MemberRole.MANAGER


def can_remove_member(
    actor: Actor, *, actor_role: MemberRole | None, target_user_id: int, target_role: MemberRole
) -> bool:
    """Who may take ``target_user_id`` off a project (the PI never comes off).

    Ops and the PI remove anyone else; a manager removes plain members but not
    another manager; a member or manager may remove themselves (the target is
    always on the project, so being the target means being on it).
    """
    if target_role is MemberRole.PI:
        return False
    if actor.has_role(Role.OPS):
        return True
    if actor.user_id == target_user_id:
        return True
    if not actor.has_role(Role.RESEARCHER):
        return False
    return _role_may_remove(actor_role, target_role)


def _role_may_remove(actor_role: MemberRole | None, target_role: MemberRole) -> bool:
    """The PI removes anyone else; a manager removes plain members only."""
    if actor_role is MemberRole.PI:
        return True
    if actor_role is not MemberRole.MANAGER:
        return False
    return target_role is MemberRole.MEMBER


def can_suspend_project(actor: Actor) -> bool:
    """Suspending and unsuspending a project is for ops alone."""
    return actor.has_role(Role.OPS)


def can_archive_project(actor: Actor, *, actor_role: MemberRole | None) -> bool:
    """Ops and the project's PI (while a researcher) archive a project."""
    if actor.has_role(Role.OPS):
        return True
    if not actor.has_role(Role.RESEARCHER):
        return False
    return actor_role is MemberRole.PI


def get_project_for_actor(
    session: Session, actor: Actor, project_id: int, *, scope: Scope = Scope.READ
) -> ProjectDetail:
    """The project ``project_id`` with members and accounts, when the actor may see it.

    ``scope`` is what the caller's use needs: ``read`` to show the project,
    ``write`` before changing it. Raises MissingScope without it, and
    ProjectNotFound both when the project does not exist and when the actor
    may not see it, with the same message, so ids cannot be probed.
    """
    require_scope(actor, scope)
    if not can_read_project(session, actor, project_id):
        raise ProjectNotFound(f"no project has the id {project_id}")
    return grants_queries.get_project(session, project_id=project_id)


def list_projects_for_actor(
    session: Session,
    actor: Actor,
    *,
    status: ProjectStatus | None = None,
    cursor: int | None = None,
    limit: int = grants_queries.DEFAULT_PAGE,
) -> ProjectPage:
    """A page of the projects the actor may see; raises MissingScope without ``read``."""
    require_scope(actor, Scope.READ)
    return grants_queries.list_projects(
        session, status=status, cursor=cursor, limit=limit, visible=rules.visible_projects(actor)
    )
