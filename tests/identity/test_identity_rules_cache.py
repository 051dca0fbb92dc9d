"""Access rules are built once per (user id, roles): the same expression for the same
holder, and a new one as soon as the roles differ."""

from __future__ import annotations

from sqlalchemy import true

from credits.identity import rules
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope


def _actor(user_id: int, *roles: Role, token_id: int | None = None) -> Actor:
    return Actor.for_user(
        user_id=user_id,
        email=f"user{user_id}@example.org",
        roles=frozenset(roles),
        scopes=frozenset({Scope.READ}) if token_id else None,
        token_id=token_id,
    )


def test_one_holder_gets_one_rule_whatever_the_token() -> None:
    portal = _actor(7, Role.RESEARCHER)
    api = _actor(7, Role.RESEARCHER, token_id=3)

    assert rules.visible_accounts(portal) is rules.visible_accounts(api)


def test_other_roles_or_another_user_get_their_own_rule() -> None:
    researcher = rules.visible_jobs(_actor(7, Role.RESEARCHER))

    as_ops = rules.visible_jobs(_actor(7, Role.RESEARCHER, Role.OPS))
    someone_else = rules.visible_jobs(_actor(8, Role.RESEARCHER))

    assert as_ops is not researcher and as_ops.compare(true())
    assert someone_else is not researcher
    assert not someone_else.compare(researcher)


def test_each_rule_keeps_its_own_entries() -> None:
    actor = _actor(9, Role.RESEARCHER)

    assert rules.visible_projects(actor) is not rules.visible_jobs(actor)
