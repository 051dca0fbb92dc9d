"""Project services: creation, members, reading; every refusal changes nothing.

Suspension and archiving are in test_grants_suspension.py."""

from __future__ import annotations

from typing import Any

import pytest
from grants_helpers import (
    SYSTEM,
    allocation,
    event_data,
    events,
    new_project,
    person,
    refused,
    uid,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credits.errors import CreditsError
from credits.grants import projects
from credits.grants.errors import (
    AlreadyProjectMember,
    CannotRemovePi,
    InvalidProject,
    MemberNotFound,
    NotAResearcher,
    ProjectForbidden,
    ProjectNotFound,
)
from credits.grants.models import MemberRole, ProjectMember, ProjectStatus
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger.models import AccountKind, Currency


@pytest.fixture
def pi(session: Session) -> Actor:
    return person(session, "pia@uni.example", Role.RESEARCHER, institution="Uni of Ice")


@pytest.fixture
def manager(session: Session) -> Actor:
    return person(session, "manu@uni.example", Role.RESEARCHER)


@pytest.fixture
def member(session: Session) -> Actor:
    return person(session, "mem@uni.example", Role.RESEARCHER)


@pytest.fixture
def outsider(session: Session) -> Actor:
    return person(session, "out@uni.example", Role.RESEARCHER)


@pytest.fixture
def ops(session: Session) -> Actor:
    return person(session, "ops@platform.example", Role.OPS)


@pytest.fixture
def project_id(session: Session, pi: Actor, manager: Actor, member: Actor) -> int:
    """A project led by ``pi`` with a manager and a member."""
    return new_project(session, pi, (manager, "manager"), (member, "member")).id


def _roles(session: Session, project_id: int) -> dict[str, str]:
    project = projects.get_project(session, project_id=project_id)
    return {m.email: m.role.value for m in project.members}


# create_project


def test_a_researcher_creates_a_project_and_leads_it(session: Session, pi: Actor) -> None:
    project = projects.create_project(
        session, title=" Ice sheets ", field_of_science="Glaciology", actor=pi
    )

    assert project.status is ProjectStatus.ACTIVE
    assert project.title == "Ice sheets"
    assert project.pi_user_id == uid(pi)
    assert project.institution == "Uni of Ice"
    assert [(m.email, m.role) for m in project.members] == [("pia@uni.example", MemberRole.PI)]
    assert events(session, "project", project.id) == [("project.created", pi.label)]
    assert event_data(session, "project", project.id, "project.created")["pi_user_id"] == uid(pi)


def test_ops_names_the_pi_and_the_institution(session: Session, ops: Actor, pi: Actor) -> None:
    project = projects.create_project(
        session,
        title="Ice",
        field_of_science="Glaciology",
        institution="Polar Institute",
        pi_user_id=uid(pi),
        actor=ops,
    )

    assert project.pi_user_id == uid(pi)
    assert project.institution == "Polar Institute"
    assert events(session, "project", project.id) == [("project.created", ops.label)]


@pytest.mark.parametrize(
    ("who", "overrides", "error"),
    [
        ("pi", {"pi_user_id": "manager"}, ProjectForbidden),
        ("funder", {}, ProjectForbidden),
        ("ops", {}, NotAResearcher),  # ops must name a PI, or be a researcher
        ("system", {}, InvalidProject),
        ("ops", {"pi_user_id": "funder"}, NotAResearcher),
        ("ops", {"pi_user_id": 987_654}, NotAResearcher),
        ("pi", {"title": "  "}, InvalidProject),
        ("pi", {"title": "t" * 301}, InvalidProject),
        ("pi", {"field_of_science": ""}, InvalidProject),
        ("pi", {"institution": "i" * 201}, InvalidProject),
    ],
)
def test_refused_projects_are_not_created(
    session: Session,
    manager: Actor,
    who: str,
    overrides: dict[str, Any],
    error: type[CreditsError],
    request: pytest.FixtureRequest,
) -> None:
    actors = {
        "pi": request.getfixturevalue("pi"),
        "ops": request.getfixturevalue("ops"),
        "funder": person(session, "fay@funder.example", Role.FUNDER, Role.REVIEWER),
        "system": SYSTEM,
        "manager": manager,
    }
    values: dict[str, Any] = {"title": "Ice", "field_of_science": "Glaciology"} | overrides
    if isinstance(values.get("pi_user_id"), str):
        values["pi_user_id"] = uid(actors[values["pi_user_id"]])

    refused(session, error, projects.create_project, actor=actors[who], **values)


def test_the_database_allows_one_pi_per_project(any_session: Session) -> None:
    session = any_session
    pi = person(session, "pia@uni.example", Role.RESEARCHER)
    other = person(session, "other@uni.example", Role.RESEARCHER)
    project = new_project(session, pi)

    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(ProjectMember(project_id=project.id, user_id=uid(other), role="pi"))
        session.flush()

    assert [m.role for m in projects.get_project(session, project_id=project.id).members] == [
        MemberRole.PI
    ]


# add_member


def test_members_come_and_go_on_both_backends(any_session: Session) -> None:
    session = any_session
    pi = person(session, "pia@uni.example", Role.RESEARCHER)
    newcomer = person(session, "new@uni.example", Role.RESEARCHER)
    project = new_project(session, pi)

    added = projects.add_member(
        session, project_id=project.id, user_id=uid(newcomer), role="member", actor=pi
    )
    removed = projects.remove_member(
        session, project_id=project.id, user_id=uid(newcomer), actor=pi
    )

    assert [m.role for m in added.members] == [MemberRole.PI, MemberRole.MEMBER]
    assert [m.role for m in removed.members] == [MemberRole.PI]
    assert [e for e, _ in events(session, "project", project.id)] == [
        "project.created",
        "project.member_added",
        "project.member_removed",
    ]


@pytest.mark.parametrize("adder", ["pi", "manager", "ops"])
@pytest.mark.parametrize("role", ["manager", "member"])
def test_the_pi_managers_and_ops_add_members(
    session: Session,
    project_id: int,
    outsider: Actor,
    adder: str,
    role: str,
    request: pytest.FixtureRequest,
) -> None:
    actor: Actor = request.getfixturevalue(adder)

    project = projects.add_member(
        session, project_id=project_id, user_id=uid(outsider), role=role, actor=actor
    )

    assert {m.email: m.role.value for m in project.members}["out@uni.example"] == role
    assert events(session, "project", project_id)[-1] == ("project.member_added", actor.label)
    assert event_data(session, "project", project_id, "project.member_added") == {
        "user_id": uid(outsider),
        "role": role,
    }


@pytest.mark.parametrize(
    ("who", "target", "role", "error"),
    [
        ("member", "outsider", "member", ProjectForbidden),
        ("outsider", "outsider", "member", ProjectForbidden),
        ("pi", "outsider", "pi", InvalidProject),
        ("pi", "outsider", "owner", InvalidProject),
        ("pi", "member", "manager", AlreadyProjectMember),
        ("pi", "funder", "member", NotAResearcher),
    ],
)
def test_refused_additions_change_nothing(
    session: Session,
    project_id: int,
    who: str,
    target: str,
    role: str,
    error: type[CreditsError],
    request: pytest.FixtureRequest,
) -> None:
    if target == "funder":
        target_id = uid(person(session, "fay@funder.example", Role.FUNDER))
    else:
        target_id = uid(request.getfixturevalue(target))
    actor: Actor = request.getfixturevalue(who)

    refused(
        session,
        error,
        projects.add_member,
        project_id=project_id,
        user_id=target_id,
        role=role,
        actor=actor,
    )


def test_adding_an_existing_member_names_their_role(
    session: Session, project_id: int, pi: Actor, manager: Actor
) -> None:
    error = refused(
        session,
        AlreadyProjectMember,
        projects.add_member,
        project_id=project_id,
        user_id=uid(manager),
        role="member",
        actor=pi,
    )

    assert error.status == 409
    assert error.extra == {"user_id": uid(manager), "role": "manager"}


def test_unknown_users_and_projects_are_not_found(
    session: Session, project_id: int, pi: Actor
) -> None:
    refused(
        session,
        NotAResearcher,
        projects.add_member,
        project_id=project_id,
        user_id=987_654,
        role="member",
        actor=pi,
    )
    refused(
        session,
        ProjectNotFound,
        projects.add_member,
        project_id=987_654,
        user_id=uid(pi),
        role="member",
        actor=pi,
    )


# remove_member


@pytest.mark.parametrize(
    ("who", "target"),
    [
        ("pi", "manager"),
        ("pi", "member"),
        ("ops", "manager"),
        ("manager", "member"),
        ("manager", "manager"),  # a manager may leave
        ("member", "member"),  # a member may leave
    ],
)
def test_allowed_removals(
    session: Session, project_id: int, who: str, target: str, request: pytest.FixtureRequest
) -> None:
    actor: Actor = request.getfixturevalue(who)
    removed: Actor = request.getfixturevalue(target)

    project = projects.remove_member(
        session, project_id=project_id, user_id=uid(removed), actor=actor
    )

    assert uid(removed) not in {m.user_id for m in project.members}
    assert events(session, "project", project_id)[-1] == ("project.member_removed", actor.label)
    assert event_data(session, "project", project_id, "project.member_removed")["role"] == target


@pytest.mark.parametrize(
    ("who", "target", "error"),
    [
        ("manager", "other_manager", ProjectForbidden),
        ("manager", "pi", CannotRemovePi),
        ("member", "manager", ProjectForbidden),
        ("member", "other_member", ProjectForbidden),
        ("outsider", "member", ProjectForbidden),
        ("pi", "pi", CannotRemovePi),
        ("ops", "pi", CannotRemovePi),
        ("pi", "outsider", MemberNotFound),
    ],
)
def test_refused_removals_change_nothing(
    session: Session,
    project_id: int,
    pi: Actor,
    who: str,
    target: str,
    error: type[CreditsError],
    request: pytest.FixtureRequest,
) -> None:
    extra = {
        "other_manager": person(session, "manu2@uni.example", Role.RESEARCHER),
        "other_member": person(session, "mem2@uni.example", Role.RESEARCHER),
    }
    for name, role in (("other_manager", "manager"), ("other_member", "member")):
        projects.add_member(
            session, project_id=project_id, user_id=uid(extra[name]), role=role, actor=pi
        )
    actor: Actor = request.getfixturevalue(who)
    removed = extra[target] if target in extra else request.getfixturevalue(target)

    raised = refused(
        session,
        error,
        projects.remove_member,
        project_id=project_id,
        user_id=uid(removed),
        actor=actor,
    )

    if error is CannotRemovePi:
        assert raised.status == 409
        assert raised.extra == {"role": "pi"}


# get_project and list_projects


def test_a_project_shows_its_members_and_accounts(
    session: Session, project_id: int, pi: Actor
) -> None:
    account = allocation(session, project_id, currency=Currency.LABEL)

    project = projects.get_project(session, project_id=project_id)

    assert _roles(session, project_id) == {
        "pia@uni.example": "pi",
        "manu@uni.example": "manager",
        "mem@uni.example": "member",
    }
    kinds = {(a.id if a.kind is AccountKind.ALLOCATION else None, a.kind) for a in project.accounts}
    assert kinds == {(account.id, AccountKind.ALLOCATION), (None, AccountKind.USAGE_SINK)}
    assert project.pi_user_id == uid(pi)


def test_projects_are_listed_by_id_with_status_and_cursor(
    session: Session, pi: Actor, ops: Actor
) -> None:
    ids = [new_project(session, pi, title=f"P{n}").id for n in range(3)]
    projects.suspend_project(session, project_id=ids[2], actor=ops, reason="audit")

    first = projects.list_projects(session, limit=2)
    rest = projects.list_projects(session, limit=2, cursor=first.next_cursor)
    suspended = projects.list_projects(session, status=ProjectStatus.SUSPENDED)

    assert [p.id for p in first.items + rest.items] == ids
    assert first.next_cursor == ids[1]
    assert rest.next_cursor is None
    assert [p.id for p in suspended.items] == [ids[2]]


def test_an_unknown_project_is_not_found(session: Session) -> None:
    with pytest.raises(ProjectNotFound):
        projects.get_project(session, project_id=987_654)


def test_an_unknown_user_and_a_non_researcher_get_the_same_answer(session: Session) -> None:
    pi = person(session, "lead@uni.example", Role.RESEARCHER)
    funder = person(session, "fund@funder.example", Role.FUNDER)
    project = new_project(session, pi)
    answers = []
    for user_id in (uid(funder), 987_654):
        with pytest.raises(NotAResearcher) as refused_add, session.begin_nested():
            projects.add_member(
                session, project_id=project.id, user_id=user_id, role="member", actor=pi
            )
        answers.append(refused_add.value.detail.replace(str(user_id), "ID"))
        assert "@" not in refused_add.value.detail
    assert answers[0] == answers[1]
