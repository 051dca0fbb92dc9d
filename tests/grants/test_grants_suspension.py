"""Suspending, unsuspending and archiving projects, and what that does to their
allocations; every refusal changes nothing."""

from __future__ import annotations

from datetime import timedelta
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
from sqlalchemy.orm import Session

from credits.grants import project_archive, projects
from credits.grants.errors import (
    ProjectForbidden,
    ProjectStatusConflict,
)
from credits.grants.models import ProjectStatus
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import queries as ledger_queries
from credits.ledger import service as ledger
from credits.ledger.errors import InsufficientCredits, ReasonRequired
from credits.ledger.models import AccountStatus
from credits.ledger.verify import verify_ledger


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


# suspend_project and unsuspend_project


def test_suspending_blocks_new_holds_until_unsuspended(
    any_session: Session,
) -> None:
    session = any_session
    pi = person(session, "pia@uni.example", Role.RESEARCHER)
    ops = person(session, "ops@platform.example", Role.OPS)
    project = new_project(session, pi)
    first = allocation(session, project.id, amount=4_000_000)
    second = allocation(session, project.id, amount=6_000_000, expires_in=timedelta(days=60))
    running = ledger.place_hold(
        session, key="job-1", currency="gpu", amount=1_000_000, project_id=project.id, actor=SYSTEM
    )

    suspended = projects.suspend_project(
        session, project_id=project.id, actor=ops, reason="compromised token"
    )

    assert suspended.status is ProjectStatus.SUSPENDED
    for account in (first, second):
        assert ledger_queries.get_account(session, account_id=account.id).status is (
            AccountStatus.SUSPENDED
        )
    with pytest.raises(InsufficientCredits):
        ledger.place_hold(
            session, key="job-2", currency="gpu", amount=1, project_id=project.id, actor=SYSTEM
        )
    # Work already running may still be charged.
    ledger.capture(session, hold_key=running.hold_key, amount=500_000, key="cap-1", actor=SYSTEM)
    assert event_data(session, "project", project.id, "project.suspended") == {
        "reason": "compromised token",
        "accounts": [first.id, second.id],
    }

    active = projects.unsuspend_project(
        session, project_id=project.id, actor=ops, reason="token revoked"
    )

    assert active.status is ProjectStatus.ACTIVE
    hold = ledger.place_hold(
        session, key="job-3", currency="gpu", amount=1_000_000, project_id=project.id, actor=SYSTEM
    )
    assert hold.amount == 1_000_000
    assert [e for e, _ in events(session, "project", project.id)][-2:] == [
        "project.suspended",
        "project.unsuspended",
    ]
    assert verify_ledger(session).ok


def test_suspension_leaves_expired_and_other_accounts_alone(
    session: Session, project_id: int, ops: Actor, pi: Actor
) -> None:
    ended = allocation(session, project_id)
    ledger.set_account_status(
        session, account_id=ended.id, status=AccountStatus.EXPIRED, actor=ops, reason="ended"
    )
    other_project = new_project(session, pi)
    other = allocation(session, other_project.id)

    projects.suspend_project(session, project_id=project_id, actor=ops, reason="audit")

    assert ledger_queries.get_account(session, account_id=ended.id).status is AccountStatus.EXPIRED
    assert ledger_queries.get_account(session, account_id=other.id).status is AccountStatus.ACTIVE
    sink = ledger_queries.list_accounts(session, project_id=project_id, kind="usage_sink")
    assert {a.status for a in sink} == {AccountStatus.ACTIVE}


def test_unsuspending_leaves_an_allocation_past_its_end_suspended(
    session: Session, project_id: int, ops: Actor
) -> None:
    lasting = allocation(session, project_id)
    ending = allocation(session, project_id, expires_in=timedelta(hours=1))
    projects.suspend_project(session, project_id=project_id, actor=ops, reason="audit")

    later = ending.expires_at + timedelta(minutes=1)  # type: ignore[operator]
    projects.unsuspend_project(
        session, project_id=project_id, actor=ops, reason="cleared", now=later
    )

    assert ledger_queries.get_account(session, account_id=lasting.id).status is (
        AccountStatus.ACTIVE
    )
    assert ledger_queries.get_account(session, account_id=ending.id).status is (
        AccountStatus.SUSPENDED
    )
    data = event_data(session, "project", project_id, "project.unsuspended")
    assert data == {"reason": "cleared", "accounts": [lasting.id]}


@pytest.mark.parametrize("who", ["pi", "manager", "member", "outsider"])
def test_only_ops_suspend_and_unsuspend(
    session: Session, project_id: int, ops: Actor, who: str, request: pytest.FixtureRequest
) -> None:
    actor: Actor = request.getfixturevalue(who)
    allocation(session, project_id)

    refused(
        session,
        ProjectForbidden,
        projects.suspend_project,
        project_id=project_id,
        actor=actor,
        reason="x",
    )
    projects.suspend_project(session, project_id=project_id, actor=ops, reason="audit")
    refused(
        session,
        ProjectForbidden,
        projects.unsuspend_project,
        project_id=project_id,
        actor=actor,
        reason="x",
    )


@pytest.mark.parametrize("call", [projects.suspend_project, projects.unsuspend_project])
def test_suspension_changes_need_a_reason(
    session: Session, project_id: int, ops: Actor, call: Any
) -> None:
    refused(session, ReasonRequired, call, project_id=project_id, actor=ops, reason=" ")


@pytest.mark.parametrize(
    ("start", "call", "reason"),
    [
        ("suspended", projects.suspend_project, "again"),
        ("archived", projects.suspend_project, "late"),
        ("active", projects.unsuspend_project, "not suspended"),
        ("archived", projects.unsuspend_project, "too late"),
    ],
)
def test_suspension_refuses_the_wrong_starting_state(
    session: Session, project_id: int, ops: Actor, start: str, call: Any, reason: str
) -> None:
    allocation(session, project_id)
    if start == "suspended":
        projects.suspend_project(session, project_id=project_id, actor=ops, reason="audit")
    if start == "archived":
        project_archive.archive_project(session, project_id=project_id, actor=ops)

    error = refused(
        session, ProjectStatusConflict, call, project_id=project_id, actor=ops, reason=reason
    )

    assert error.status == 409
    assert error.extra == {"current_status": start}


# archive_project


def test_the_pi_archives_a_project_and_its_allocations_stop(
    session: Session, project_id: int, pi: Actor, member: Actor
) -> None:
    account = allocation(session, project_id)

    archived = project_archive.archive_project(
        session, project_id=project_id, actor=pi, reason="finished"
    )

    assert archived.status is ProjectStatus.ARCHIVED
    assert ledger_queries.get_account(session, account_id=account.id).status is (
        AccountStatus.SUSPENDED
    )
    assert events(session, "project", project_id)[-1] == ("project.archived", pi.label)
    assert event_data(session, "project", project_id, "project.archived") == {
        "reason": "finished",
        "accounts": [account.id],
        "jobs": [],
        "labelling_orders": [],
        "from": "active",
    }
    assert events(session, "ledger_account", account.id)[-1] == (
        "ledger.account_status",
        "system:grants",
    )
    refused(
        session,
        ProjectStatusConflict,
        projects.remove_member,
        project_id=project_id,
        user_id=uid(member),
        actor=pi,
    )


def test_ops_archive_a_suspended_project(session: Session, project_id: int, ops: Actor) -> None:
    projects.suspend_project(session, project_id=project_id, actor=ops, reason="audit")

    archived = project_archive.archive_project(session, project_id=project_id, actor=ops)

    assert archived.status is ProjectStatus.ARCHIVED
    assert event_data(session, "project", project_id, "project.archived")["from"] == "suspended"


@pytest.mark.parametrize("who", ["manager", "member", "outsider"])
def test_only_the_pi_and_ops_archive(
    session: Session, project_id: int, who: str, request: pytest.FixtureRequest
) -> None:
    refused(
        session,
        ProjectForbidden,
        project_archive.archive_project,
        project_id=project_id,
        actor=request.getfixturevalue(who),
    )


def test_archiving_twice_is_a_conflict(session: Session, project_id: int, pi: Actor) -> None:
    project_archive.archive_project(session, project_id=project_id, actor=pi)

    error = refused(
        session,
        ProjectStatusConflict,
        project_archive.archive_project,
        project_id=project_id,
        actor=pi,
    )

    assert error.extra == {"current_status": "archived"}


def test_an_archived_project_takes_no_members(
    session: Session, project_id: int, pi: Actor, outsider: Actor
) -> None:
    project_archive.archive_project(session, project_id=project_id, actor=pi)

    refused(
        session,
        ProjectStatusConflict,
        projects.add_member,
        project_id=project_id,
        user_id=uid(outsider),
        role="member",
        actor=pi,
    )


def test_unsuspending_keeps_an_account_ops_suspended_on_its_own(
    session: Session, project_id: int, ops: Actor
) -> None:
    frozen = allocation(session, project_id)
    plain = allocation(session, project_id)
    ledger.set_account_status(
        session, account_id=frozen.id, status="suspended", actor=ops, reason="fraud check"
    )
    projects.suspend_project(session, project_id=project_id, actor=ops, reason="audit")
    projects.unsuspend_project(session, project_id=project_id, actor=ops, reason="cleared")

    assert ledger_queries.get_account(session, account_id=frozen.id).status is (
        AccountStatus.SUSPENDED
    )
    assert ledger_queries.get_account(session, account_id=plain.id).status is (AccountStatus.ACTIVE)
