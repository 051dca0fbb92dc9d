"""Who may do what: the checks every route makes, and the only way to load a scoped object.

Each helper tests one condition per line so that a test can name the line it
proves. A route calls these before any service; a refused read of a scoped
object looks exactly like a missing one, so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from credits.grants import queries as grants_queries
from credits.grants.errors import (
    ProgramNotFound,
    ProjectNotFound,
)
from credits.grants.models import (
    Allocation,
    MemberRole,
    Program,
    ProgramOwner,
    ProgramStatus,
    Project,
    ProjectMember,
    ProjectStatus,
)
from credits.grants.schemas import (
    ProgramOut,
    ProgramPage,
    ProjectDetail,
    ProjectPage,
)
from credits.identity.actor import Actor
from credits.identity.errors import AuthenticationRequired, MissingRole, MissingScope
from credits.identity.models import Role, Scope
from credits.ledger import queries as ledger_queries
from credits.ledger.errors import AccountNotFound
from credits.ledger.models import Account, Currency
from credits.ledger.schemas import AccountOut


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


def can_read_ledger_account(
    actor: Actor,
    *,
    account_project_id: int | None,
    is_project_member: bool = False,
    funds_account: bool = False,
) -> bool:
    """True when the actor may see this ledger account's balance and transfers.

    Ops read every account. A funder reads the accounts their programs fund:
    the programs' pools and the allocations they awarded (``funds_account``,
    see :func:`funded_account_ids`). A project's accounts are readable by its
    members, whatever their role on it (``is_project_member``). System
    accounts (the mint, sinks, adjustments) are for ops alone.
    """
    if actor.has_role(Role.OPS):
        return True
    if actor.has_role(Role.FUNDER) and funds_account:
        return True
    if account_project_id is None:
        return False
    return is_project_member


def funded_account_ids(session: Session, actor: Actor) -> set[int]:
    """The ledger accounts of the programs the actor owns: pools and awarded allocations."""
    if actor.user_id is None or not actor.has_role(Role.FUNDER):
        return set()
    owned = list(
        session.scalars(
            select(ProgramOwner.program_id).where(ProgramOwner.user_id == actor.user_id)
        )
    )
    if not owned:
        return set()
    pool_codes = [
        grants_queries.pool_code(program, currency) for program in owned for currency in Currency
    ]
    pools = session.scalars(select(Account.id).where(Account.code.in_(pool_codes)))
    allocations = session.scalars(
        select(Allocation.account_id).where(Allocation.program_id.in_(owned))
    )
    return {*pools, *allocations}


def list_ledger_accounts_for_actor(
    session: Session,
    actor: Actor,
    *,
    project_id: int | None = None,
    currency: str | None = None,
    kind: str | None = None,
) -> list[AccountOut]:
    """Accounts matching the filters that the actor may read: ops all, a funder
    their programs' accounts; others must go through their projects."""
    require_scope(actor, Scope.READ)
    require_any_role(actor, Role.OPS, Role.FUNDER)
    accounts = ledger_queries.list_accounts(
        session, project_id=project_id, currency=currency, kind=kind
    )
    if actor.has_role(Role.OPS):
        return accounts
    funded = funded_account_ids(session, actor)
    return [account for account in accounts if account.id in funded]


def is_project_member(session: Session, actor: Actor, project_id: int | None) -> bool:
    """True when the actor is a researcher on the project ``project_id``, in any role."""
    if actor.user_id is None:
        return False
    if not actor.has_role(Role.RESEARCHER):
        return False
    if project_id is None:
        return False
    found = session.scalar(
        select(ProjectMember.user_id).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == actor.user_id
        )
    )
    return found is not None


def get_ledger_account_for_actor(session: Session, actor: Actor, account_id: int) -> AccountOut:
    """The ledger account ``account_id``, when the actor may read it.

    Raises MissingScope without the ``read`` scope, and AccountNotFound both
    when the account does not exist and when the actor may not read it, with
    the same message, so that a refusal does not confirm that an id exists.
    """
    require_scope(actor, Scope.READ)
    account = session.get(Account, account_id)
    if account is None:
        raise AccountNotFound(f"no ledger account has the id {account_id}")
    member = is_project_member(session, actor, account.project_id)
    funds = account.id in funded_account_ids(session, actor)
    if not can_read_ledger_account(
        actor, account_project_id=account.project_id, is_project_member=member, funds_account=funds
    ):
        raise AccountNotFound(f"no ledger account has the id {account_id}")
    return AccountOut.model_validate(account)


# Programs: ops see all; a funder sees the programs they own; a researcher sees
# published calls (open or closed), so that they can apply.


def can_create_program(actor: Actor) -> bool:
    """Ops and funders create programs; a creating funder becomes an owner."""
    if actor.has_role(Role.OPS):
        return True
    return actor.has_role(Role.FUNDER)


def can_read_program(actor: Actor, *, status: ProgramStatus, owner_ids: Collection[int]) -> bool:
    """True when the actor may see the program; keep in step with :func:`visible_programs`.

    Whoever administers a program sees it; a researcher sees published calls.
    """
    if can_administer_program(actor, owner_ids=owner_ids):
        return True
    if not actor.has_role(Role.RESEARCHER):
        return False
    return status is not ProgramStatus.DRAFT


def can_administer_program(actor: Actor, *, owner_ids: Collection[int]) -> bool:
    """Update, open, close, fund and add owners: ops, or a funder who owns the program."""
    if actor.has_role(Role.OPS):
        return True
    if not actor.has_role(Role.FUNDER):
        return False
    return actor.user_id in owner_ids


def visible_programs(actor: Actor) -> ColumnElement[bool]:
    """The SQL form of :func:`can_read_program`, for listing."""
    if actor.has_role(Role.OPS):
        return true()
    clauses: list[ColumnElement[bool]] = []
    if actor.has_role(Role.FUNDER):
        owned = select(ProgramOwner.program_id).where(ProgramOwner.user_id == actor.user_id)
        clauses.append(Program.id.in_(owned))
    if actor.has_role(Role.RESEARCHER):
        clauses.append(Program.status != ProgramStatus.DRAFT.value)
    return or_(false(), *clauses)


def get_program_for_actor(
    session: Session, actor: Actor, program_id: int, *, scope: Scope = Scope.READ
) -> ProgramOut:
    """The program ``program_id`` with its budget, when the actor may see it.

    ``scope`` is what the caller's use needs: ``read`` to show the program,
    ``write`` before changing it. Raises MissingScope without it, and
    ProgramNotFound both when the program does not exist and when the actor
    may not see it, with the same message, so ids cannot be probed.
    """
    require_scope(actor, scope)
    program = session.get(Program, program_id, populate_existing=True)
    if program is None:
        raise ProgramNotFound(f"no program has the id {program_id}")
    owners = grants_queries.owner_ids(program)
    if not can_read_program(actor, status=ProgramStatus(program.status), owner_ids=owners):
        raise ProgramNotFound(f"no program has the id {program_id}")
    return grants_queries.render_program(session, program)


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
        visible=visible_programs(actor),
    )


# Projects: ops see all; everyone else sees the projects they are a member of.


def can_create_project(actor: Actor, *, pi_user_id: int) -> bool:
    """Ops name any PI; a researcher creates a project with themselves as PI."""
    if actor.has_role(Role.OPS):
        return True
    if not actor.has_role(Role.RESEARCHER):
        return False
    return actor.user_id == pi_user_id


def can_read_project(actor: Actor, *, member_ids: Collection[int]) -> bool:
    """True when the actor may see the project; keep in step with :func:`visible_projects`.

    Membership counts only while the member holds the researcher role, so that
    revoking the role takes a person's project powers with it.
    """
    if actor.has_role(Role.OPS):
        return True
    if actor.user_id is None:
        return False
    if not actor.has_role(Role.RESEARCHER):
        return False
    return actor.user_id in member_ids


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


def visible_projects(actor: Actor) -> ColumnElement[bool]:
    """The SQL form of :func:`can_read_project`, for listing."""
    if actor.has_role(Role.OPS):
        return true()
    if actor.user_id is None:
        return false()
    if not actor.has_role(Role.RESEARCHER):
        return false()
    joined = select(ProjectMember.project_id).where(ProjectMember.user_id == actor.user_id)
    return Project.id.in_(joined)


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
    project = session.get(Project, project_id, populate_existing=True)
    if project is None:
        raise ProjectNotFound(f"no project has the id {project_id}")
    if not can_read_project(actor, member_ids=grants_queries.member_ids(project)):
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
        session, status=status, cursor=cursor, limit=limit, visible=visible_projects(actor)
    )
