"""The grants access helpers: every condition, and lists that agree with single reads."""

from __future__ import annotations

import pytest
from grants_helpers import new_program, new_project, person, uid
from sqlalchemy.orm import Session

from credits.grants.errors import ProgramNotFound, ProjectNotFound
from credits.grants.models import MemberRole, ProgramStatus
from credits.grants.programs import close_program, list_programs, open_program
from credits.grants.projects import list_projects
from credits.identity import access
from credits.identity.access import (
    can_add_member,
    can_administer_program,
    can_archive_project,
    can_create_program,
    can_create_project,
    can_read_program,
    can_read_project,
    can_remove_member,
    can_suspend_project,
    get_program_for_actor,
    get_project_for_actor,
    list_programs_for_actor,
    list_projects_for_actor,
)
from credits.identity.actor import Actor
from credits.identity.errors import MissingScope
from credits.identity.models import Role, Scope
from credits.identity.service import actor_for_email, grant_role, revoke_role

SYSTEM = Actor.system("test")

ME = 1
SOMEONE = 2


def _as(*roles: Role, user_id: int = ME, scopes: frozenset[Scope] | None = None) -> Actor:
    return Actor.for_user(
        user_id=user_id, email="me@example.org", roles=frozenset(roles), scopes=scopes
    )


# Programs.


def test_ops_and_funders_create_programs_and_no_one_else() -> None:
    assert can_create_program(_as(Role.OPS))
    assert can_create_program(_as(Role.FUNDER))
    assert not can_create_program(_as(Role.RESEARCHER, Role.REVIEWER))
    assert not can_create_program(Actor.system("cli"))


def test_ops_administer_every_program() -> None:
    assert can_administer_program(_as(Role.OPS), owner_ids=[])


def test_a_funder_administers_only_the_programs_they_own() -> None:
    assert can_administer_program(_as(Role.FUNDER), owner_ids=[SOMEONE, ME])
    assert not can_administer_program(_as(Role.FUNDER), owner_ids=[SOMEONE])


def test_an_owner_who_is_no_longer_a_funder_administers_nothing() -> None:
    assert not can_administer_program(_as(Role.RESEARCHER), owner_ids=[ME])


# Projects.


def test_ops_create_projects_for_any_pi() -> None:
    assert can_create_project(_as(Role.OPS), pi_user_id=SOMEONE)


def test_a_researcher_creates_projects_they_lead() -> None:
    assert can_create_project(_as(Role.RESEARCHER), pi_user_id=ME)
    assert not can_create_project(_as(Role.RESEARCHER), pi_user_id=SOMEONE)


def test_a_funder_creates_no_project() -> None:
    assert not can_create_project(_as(Role.FUNDER), pi_user_id=ME)


@pytest.mark.parametrize(
    ("actor_role", "allowed"),
    [(MemberRole.PI, True), (MemberRole.MANAGER, True), (MemberRole.MEMBER, False), (None, False)],
)
def test_the_pi_and_managers_add_members(actor_role: MemberRole | None, allowed: bool) -> None:
    assert can_add_member(_as(Role.RESEARCHER), actor_role=actor_role) is allowed


def test_ops_add_members_to_any_project() -> None:
    assert can_add_member(_as(Role.OPS), actor_role=None)


@pytest.mark.parametrize(
    ("actor", "actor_role", "target", "target_role", "allowed"),
    [
        (_as(Role.OPS), None, SOMEONE, MemberRole.PI, False),
        (_as(Role.RESEARCHER), MemberRole.PI, ME, MemberRole.PI, False),
        (_as(Role.OPS), None, SOMEONE, MemberRole.MANAGER, True),
        (_as(Role.RESEARCHER), MemberRole.PI, SOMEONE, MemberRole.MANAGER, True),
        (_as(Role.RESEARCHER), MemberRole.MEMBER, ME, MemberRole.MEMBER, True),
        (_as(Role.RESEARCHER), MemberRole.MANAGER, ME, MemberRole.MANAGER, True),
        (_as(Role.RESEARCHER), MemberRole.MANAGER, SOMEONE, MemberRole.MEMBER, True),
        (_as(Role.RESEARCHER), MemberRole.MANAGER, SOMEONE, MemberRole.MANAGER, False),
        (_as(Role.RESEARCHER), MemberRole.MEMBER, SOMEONE, MemberRole.MEMBER, False),
        (_as(Role.RESEARCHER), None, SOMEONE, MemberRole.MEMBER, False),
    ],
)
def test_who_removes_whom(
    actor: Actor,
    actor_role: MemberRole | None,
    target: int,
    target_role: MemberRole,
    allowed: bool,
) -> None:
    decision = can_remove_member(
        actor, actor_role=actor_role, target_user_id=target, target_role=target_role
    )

    assert decision is allowed


def test_only_ops_suspend() -> None:
    assert can_suspend_project(_as(Role.OPS))
    assert not can_suspend_project(_as(Role.FUNDER, Role.RESEARCHER))


@pytest.mark.parametrize(
    ("actor", "actor_role", "allowed"),
    [
        (_as(Role.OPS), None, True),
        (_as(Role.RESEARCHER), MemberRole.PI, True),
        (_as(Role.RESEARCHER), MemberRole.MANAGER, False),
        (_as(Role.RESEARCHER), None, False),
    ],
)
def test_ops_and_the_pi_archive(actor: Actor, actor_role: MemberRole | None, allowed: bool) -> None:
    assert can_archive_project(actor, actor_role=actor_role) is allowed


# Loading for an actor, and listing what an actor may see.


@pytest.fixture
def world(session: Session) -> dict[str, Actor]:
    """Two funders with a draft, an open and a closed program between them; two projects."""
    cast = {
        "ops": person(session, "ops@example.org", Role.OPS),
        "fay": person(session, "fay@example.org", Role.FUNDER),
        "otto": person(session, "otto@example.org", Role.FUNDER),
        "pia": person(session, "pia@example.org", Role.RESEARCHER),
        "rex": person(session, "rex@example.org", Role.RESEARCHER, Role.FUNDER),
        "rev": person(session, "rev@example.org", Role.REVIEWER),
    }
    new_program(session, cast["fay"], name="fay draft")
    opened = new_program(session, cast["fay"], name="fay open")
    open_program(session, program_id=opened.id, actor=cast["fay"])
    closed = new_program(session, cast["otto"], name="otto closed")
    open_program(session, program_id=closed.id, actor=cast["otto"])
    close_program(session, program_id=closed.id, actor=cast["otto"])
    new_program(session, cast["otto"], name="otto draft")
    new_project(session, cast["pia"], (cast["rex"], "member"), title="shared")
    new_project(session, cast["pia"], title="pia alone")
    return cast


@pytest.mark.parametrize("who", ["ops", "fay", "otto", "pia", "rex", "rev"])
def test_program_lists_agree_with_single_reads(
    session: Session, world: dict[str, Actor], who: str
) -> None:
    actor = world[who]
    everything = list_programs(session).items

    listed = {p.name for p in list_programs_for_actor(session, actor).items}

    readable = {p.name for p in everything if can_read_program(session, actor, p.id)}
    assert listed == readable
    expected = {
        "ops": {"fay draft", "fay open", "otto closed", "otto draft"},
        "fay": {"fay draft", "fay open"},
        "otto": {"otto closed", "otto draft"},
        "pia": {"fay open", "otto closed"},
        "rex": {"fay open", "otto closed"},
        "rev": set(),
    }
    assert listed == expected[who]


@pytest.mark.parametrize("who", ["ops", "fay", "pia", "rex", "rev"])
def test_project_lists_agree_with_single_reads(
    session: Session, world: dict[str, Actor], who: str
) -> None:
    actor = world[who]
    everything = list_projects(session).items

    listed = {p.title for p in list_projects_for_actor(session, actor).items}

    readable = {p.title for p in everything if can_read_project(session, actor, p.id)}
    assert listed == readable
    expected = {
        "ops": {"shared", "pia alone"},
        "fay": set(),
        "pia": {"shared", "pia alone"},
        "rex": {"shared"},
        "rev": set(),
    }
    assert listed == expected[who]


def _readable_programs(session: Session, actor: Actor) -> set[str]:
    return {p.name for p in list_programs(session).items if can_read_program(session, actor, p.id)}


def test_ops_read_every_program_in_every_state(session: Session, world: dict[str, Actor]) -> None:
    assert _readable_programs(session, world["ops"]) == {
        p.name for p in list_programs(session).items
    }


def test_a_funder_reads_the_programs_they_own_in_every_state_and_no_others(
    session: Session, world: dict[str, Actor]
) -> None:
    assert _readable_programs(session, world["otto"]) == {"otto closed", "otto draft"}


def test_a_researcher_reads_published_calls_only(session: Session, world: dict[str, Actor]) -> None:
    assert _readable_programs(session, world["pia"]) == {"fay open", "otto closed"}


def test_reviewers_and_the_system_read_no_program(
    session: Session, world: dict[str, Actor]
) -> None:
    assert _readable_programs(session, world["rev"]) == set()
    assert _readable_programs(session, Actor.system("cli")) == set()


def test_an_owner_whose_funder_role_was_revoked_reads_none_of_their_programs(
    session: Session, world: dict[str, Actor]
) -> None:
    revoke_role(session, email="otto@example.org", role=Role.FUNDER, actor=SYSTEM)
    former = actor_for_email(session, "otto@example.org")

    assert _readable_programs(session, former) == set()
    assert list_programs_for_actor(session, former).items == []


def test_a_funder_who_is_also_a_researcher_reads_their_drafts_and_published_calls(
    session: Session, world: dict[str, Actor]
) -> None:
    assert _readable_programs(session, world["rex"]) == {"fay open", "otto closed"}
    grant_role(session, email="otto@example.org", role=Role.RESEARCHER, actor=SYSTEM)
    otto = actor_for_email(session, "otto@example.org")

    assert _readable_programs(session, otto) == {"fay open", "otto closed", "otto draft"}


@pytest.mark.parametrize("who", ["ops", "fay", "otto", "pia", "rex", "rev"])
def test_the_administer_check_of_the_services_agrees_with_the_pages_rule(
    session: Session, world: dict[str, Actor], who: str
) -> None:
    actor = world[who]
    everything = list_programs(session).items

    by_check = {
        p.name
        for p in everything
        if can_administer_program(actor, owner_ids=[o.user_id for o in p.owners])
    }
    by_rule = {p.name for p in everything if access.administers_program(session, actor, p.id)}
    listed = {p.name for p in access.list_administered_programs(session, actor).items}

    assert by_check == by_rule == listed


def test_the_system_reads_no_project(session: Session, world: dict[str, Actor]) -> None:
    assert list_projects_for_actor(session, Actor.system("cli")).items == []
    assert not any(
        can_read_project(session, Actor.system("cli"), p.id) for p in list_projects(session).items
    )


def test_an_unreadable_program_looks_exactly_like_a_missing_one(
    session: Session, world: dict[str, Actor]
) -> None:
    draft = list_programs(session, owner_id=uid(world["otto"]), status=ProgramStatus.DRAFT)
    program_id = draft.items[0].id

    with pytest.raises(ProgramNotFound) as refused:
        get_program_for_actor(session, world["fay"], program_id)
    with pytest.raises(ProgramNotFound) as missing:
        get_program_for_actor(session, world["ops"], 987_654)

    assert refused.value.status == missing.value.status == 404
    assert refused.value.detail == f"no program has the id {program_id}"
    assert get_program_for_actor(session, world["otto"], program_id).id == program_id


def test_an_unreadable_project_looks_exactly_like_a_missing_one(
    session: Session, world: dict[str, Actor]
) -> None:
    alone = next(p for p in list_projects(session).items if p.title == "pia alone")

    with pytest.raises(ProjectNotFound) as refused:
        get_project_for_actor(session, world["rex"], alone.id)
    with pytest.raises(ProjectNotFound):
        get_project_for_actor(session, world["ops"], 987_654)

    assert refused.value.detail == f"no project has the id {alone.id}"
    shown = get_project_for_actor(session, world["pia"], alone.id)
    assert [m.role for m in shown.members] == [MemberRole.PI]


def test_loading_checks_the_scope_the_use_needs(session: Session, world: dict[str, Actor]) -> None:
    project_id = list_projects(session).items[0].id
    pia = world["pia"]
    read_only = pia.model_copy(update={"scopes": frozenset({Scope.READ})})

    assert get_project_for_actor(session, read_only, project_id).id == project_id
    with pytest.raises(MissingScope):
        get_project_for_actor(session, read_only, project_id, scope=Scope.WRITE)
    with pytest.raises(MissingScope):
        get_program_for_actor(session, read_only, 1, scope=Scope.WRITE)
    with pytest.raises(MissingScope):
        list_programs_for_actor(session, pia.model_copy(update={"scopes": frozenset()}))


def test_a_member_who_loses_the_researcher_role_loses_the_project(session: Session) -> None:
    pi = person(session, "lead2@uni.example", Role.RESEARCHER)
    project = new_project(session, pi)
    revoke_role(session, email="lead2@uni.example", role=Role.RESEARCHER, actor=SYSTEM)
    former = actor_for_email(session, "lead2@uni.example")
    with pytest.raises(ProjectNotFound):
        access.get_project_for_actor(session, former, project.id)
    assert not access.can_read_project(session, former, project.id)
    assert access.list_projects_for_actor(session, former).items == []
