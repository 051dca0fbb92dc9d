"""Every branch of the access helpers, one test per condition."""

from __future__ import annotations

import pytest
from api_world import program_body
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.grants.programs import create_program
from credits.grants.projects import create_project
from credits.identity.access import (
    get_ledger_account_for_actor,
    list_ledger_accounts_for_actor,
    require_actor,
    require_any_role,
    require_scope,
)
from credits.identity.actor import Actor
from credits.identity.errors import AuthenticationRequired, MissingRole, MissingScope
from credits.identity.models import Role, Scope
from credits.identity.rules import readable, visible_accounts
from credits.identity.service import actor_for_email, create_user, revoke_role
from credits.ledger.errors import AccountNotFound
from credits.ledger.models import Account, AccountKind, Currency

PROJECT_ID = 7
SYSTEM = Actor.system("tests")


def _person(*roles: Role, scopes: frozenset[Scope] | None = None) -> Actor:
    return Actor.for_user(
        user_id=1, email="ada@example.org", roles=frozenset(roles), scopes=scopes, token_id=None
    )


def _account(session: Session, *, project_id: int | None) -> Account:
    # No ledger service opens project accounts yet; a row is all these tests need.
    account = Account(
        code=f"test:project:{project_id}:gpu",
        currency=Currency.GPU.value,
        kind=AccountKind.ALLOCATION.value,
        no_overdraft=True,
        project_id=project_id,
        credits_posted=5_000_000,
    )
    session.add(account)
    session.flush()
    return account


# require_actor


def test_require_actor_refuses_an_anonymous_request() -> None:
    with pytest.raises(AuthenticationRequired) as raised:
        require_actor(None)

    assert raised.value.status == 401


def test_require_actor_returns_the_actor() -> None:
    actor = _person(Role.RESEARCHER)

    assert require_actor(actor) is actor


# require_scope


def test_require_scope_allows_an_unscoped_credential() -> None:
    require_scope(_person(scopes=None), Scope.WRITE)


def test_require_scope_allows_a_token_with_that_scope() -> None:
    require_scope(_person(scopes=frozenset({Scope.READ})), Scope.READ)


def test_require_scope_allows_an_admin_token_every_scope() -> None:
    require_scope(_person(scopes=frozenset({Scope.ADMIN})), Scope.METER)


def test_require_scope_refuses_a_token_without_that_scope() -> None:
    with pytest.raises(MissingScope) as raised:
        require_scope(_person(Role.OPS, scopes=frozenset({Scope.READ})), Scope.WRITE)

    assert raised.value.status == 403
    assert raised.value.extra == {"scope": "write"}
    assert "'write'" in raised.value.detail


def test_require_scope_refuses_a_token_with_no_scope_left() -> None:
    with pytest.raises(MissingScope):
        require_scope(_person(scopes=frozenset()), Scope.READ)


# require_any_role


def test_require_any_role_allows_a_holder_of_one_of_the_roles() -> None:
    require_any_role(_person(Role.FUNDER), Role.OPS, Role.FUNDER)


def test_require_any_role_refuses_an_actor_without_any_of_them() -> None:
    with pytest.raises(MissingRole) as raised:
        require_any_role(_person(Role.RESEARCHER, Role.REVIEWER), Role.OPS, Role.FUNDER)

    assert raised.value.status == 403
    assert raised.value.detail == "this needs one of the roles: ops, funder"
    assert raised.value.extra == {"roles": ["ops", "funder"]}


def test_require_any_role_refuses_the_system_actor_which_holds_no_roles() -> None:
    with pytest.raises(MissingRole):
        require_any_role(Actor.system("scheduler"), Role.OPS)


def test_require_any_role_without_roles_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one role"):
        require_any_role(_person(Role.OPS))


# rules.visible_accounts: the one rule behind listing and loading ledger accounts


def _reads(session: Session, actor: Actor, account_id: int) -> bool:
    return readable(session, Account, account_id, visible_accounts(actor))


def _funder_with_program(session: Session, email: str) -> tuple[Actor, list[int]]:
    """A funder owning a new program, and the ids of the program's pool accounts."""
    create_user(session, email=email, name="Fay", roles=[Role.FUNDER], actor=SYSTEM)
    funder = actor_for_email(session, email)
    program = create_program(session, actor=funder, **program_body())
    pools = session.scalars(
        select(Account.id).where(Account.code.like(f"program:{program.id}:pool:%"))
    )
    return funder, list(pools)


@pytest.mark.parametrize("project_id", [None, PROJECT_ID])
def test_ops_read_every_account(session: Session, project_id: int | None) -> None:
    account = _account(session, project_id=project_id)

    assert _reads(session, _person(Role.OPS), account.id)


def test_a_funder_reads_their_programs_pools_and_no_others(any_session: Session) -> None:
    # On both databases: the rule matches a pool to its program by building its code.
    fay, pools = _funder_with_program(any_session, "fay@example.org")
    otto, others = _funder_with_program(any_session, "otto@example.org")
    system = _account(any_session, project_id=None)

    assert pools
    assert all(_reads(any_session, fay, pool) for pool in pools)
    assert not any(_reads(any_session, fay, pool) for pool in others)
    assert not _reads(any_session, fay, system.id)
    assert all(_reads(any_session, otto, pool) for pool in others)


def test_an_owner_whose_funder_role_was_revoked_reads_no_pool(session: Session) -> None:
    _, pools = _funder_with_program(session, "fay@example.org")
    revoke_role(session, email="fay@example.org", role=Role.FUNDER, actor=SYSTEM)
    former = actor_for_email(session, "fay@example.org")

    assert not any(_reads(session, former, pool) for pool in pools)


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.REVIEWER, Role.FUNDER])
def test_others_never_read_a_system_account(session: Session, role: Role) -> None:
    account = _account(session, project_id=None)

    assert not _reads(session, _person(role), account.id)


def test_an_actor_without_roles_reads_nothing(session: Session) -> None:
    project_id, _ = _project_with_member(session, "pia@example.org")
    account = _account(session, project_id=project_id)

    assert not _reads(session, Actor.system("cli"), account.id)
    assert not _reads(session, _person(), account.id)


# get_ledger_account_for_actor


def test_ops_loads_a_project_account(session: Session) -> None:
    account = _account(session, project_id=PROJECT_ID)

    loaded = get_ledger_account_for_actor(session, _person(Role.OPS), account.id)

    assert loaded.id == account.id
    assert loaded.project_id == PROJECT_ID
    assert loaded.available == 5_000_000


def test_a_funder_cannot_load_a_system_account(session: Session) -> None:
    account = _account(session, project_id=None)

    with pytest.raises(AccountNotFound):
        get_ledger_account_for_actor(session, _person(Role.FUNDER), account.id)


def test_a_read_scoped_token_loads_an_account(session: Session) -> None:
    account = _account(session, project_id=PROJECT_ID)
    actor = _person(Role.OPS, scopes=frozenset({Scope.READ}))

    assert get_ledger_account_for_actor(session, actor, account.id).id == account.id


def test_an_unreadable_account_looks_exactly_like_a_missing_one(session: Session) -> None:
    account = _account(session, project_id=PROJECT_ID)
    missing_id = account.id + 1000

    with pytest.raises(AccountNotFound) as refused:
        get_ledger_account_for_actor(session, _person(Role.RESEARCHER), account.id)
    with pytest.raises(AccountNotFound) as missing:
        get_ledger_account_for_actor(session, _person(Role.OPS), missing_id)

    assert refused.value.status == missing.value.status == 404
    assert refused.value.detail == f"no ledger account has the id {account.id}"
    assert missing.value.detail == f"no ledger account has the id {missing_id}"


def _project_with_member(session: Session, email: str) -> tuple[int, Actor]:
    pi = create_user(
        session, email=email, name="Pia", roles=[Role.RESEARCHER], institution="U", actor=SYSTEM
    )
    actor = actor_for_email(session, pi.email)
    project = create_project(session, title="Ice", field_of_science="Glaciology", actor=actor)
    return project.id, actor


def test_a_project_member_loads_their_projects_account(session: Session) -> None:
    project_id, member = _project_with_member(session, "pia@example.org")
    account = _account(session, project_id=project_id)

    assert get_ledger_account_for_actor(session, member, account.id).id == account.id
    assert [a.id for a in list_ledger_accounts_for_actor(session, member)] == [account.id]


def test_a_member_of_another_project_gets_not_found(session: Session) -> None:
    _, member = _project_with_member(session, "pia@example.org")
    other_id, _ = _project_with_member(session, "otto@example.org")
    account = _account(session, project_id=other_id)

    with pytest.raises(AccountNotFound):
        get_ledger_account_for_actor(session, member, account.id)
    assert list_ledger_accounts_for_actor(session, member) == []


def test_a_member_whose_researcher_role_was_revoked_reads_no_project_account(
    session: Session,
) -> None:
    project_id, _ = _project_with_member(session, "pia@example.org")
    account = _account(session, project_id=project_id)
    revoke_role(session, email="pia@example.org", role=Role.RESEARCHER, actor=SYSTEM)
    former = actor_for_email(session, "pia@example.org")

    with pytest.raises(AccountNotFound):
        get_ledger_account_for_actor(session, former, account.id)
    assert list_ledger_accounts_for_actor(session, former) == []


def test_a_token_without_read_scope_is_refused_before_the_lookup(session: Session) -> None:
    actor = _person(Role.OPS, scopes=frozenset({Scope.WRITE}))

    with pytest.raises(MissingScope):
        get_ledger_account_for_actor(session, actor, 999_999)
