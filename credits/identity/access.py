"""Who may do what: the checks every route makes, and the only way to load a scoped object.

Each helper tests one condition per line so that a test can name the line it
proves. A route calls these before any service; a refused read of a scoped
object looks exactly like a missing one, so ids cannot be probed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.identity.errors import AuthenticationRequired, MissingRole, MissingScope
from credits.identity.models import Role, Scope
from credits.ledger.errors import AccountNotFound
from credits.ledger.models import Account
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


def can_read_ledger_account(actor: Actor, *, account_project_id: int | None) -> bool:
    """True when the actor may see this ledger account's balance and transfers.

    Ops and funders read every account. System accounts (program pools, sinks,
    adjustments: no project) are for them alone. Project accounts will be
    readable by the project's members once the grants domain records
    membership (issue #3); this function is the one place that rule goes, and
    until then members read nothing.
    """
    if actor.has_role(Role.OPS):
        return True
    if actor.has_role(Role.FUNDER):
        return True
    if account_project_id is None:
        return False
    # Project membership (issue #3) is checked here; no one is a member yet.
    return False


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
    if not can_read_ledger_account(actor, account_project_id=account.project_id):
        raise AccountNotFound(f"no ledger account has the id {account_id}")
    return AccountOut.model_validate(account)
