"""Who is told what: proposal events, the daily expiry digest and low-balance notices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from notifications_helpers import SYSTEM, allocation, outbox, person, project, uid
from sqlalchemy.orm import Session

from credits.grants.models import Proposal, ProposalStatus
from credits.grants.programs import create_program
from credits.identity.models import Role, User
from credits.ledger import service as ledger
from credits.ledger.models import AccountStatus, Currency
from credits.notifications.errors import NotificationSubjectNotFound
from credits.notifications.events import (
    notify_decision,
    notify_proposal_submitted,
    notify_reviewer_assigned,
    queue_expiry_digests,
    queue_low_balance_notices,
)
from credits.notifications.models import NotificationKind

NOW = datetime(2031, 3, 10, 7, 0, tzinfo=UTC)


def _by_recipient(session: Session, kind: NotificationKind) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in outbox(session):
        if row.kind == kind.value:
            found.setdefault(row.recipient_email, []).append(row.body)
    return found


def test_one_digest_per_person_per_day_lists_every_allocation_at_a_horizon(
    any_session: Session,
) -> None:
    ada = person(any_session, "ada@uni.example")
    bob = person(any_session, "bob@uni.example")
    cy = person(any_session, "cy@uni.example")
    ice = project(any_session, ada, (bob, "member"), title="Ice sheets")
    sea = project(any_session, cy, (ada, "manager"), title="Sea level")
    in_7 = allocation(any_session, ice.id, expires_at=NOW + timedelta(days=7, hours=2))
    in_30 = allocation(any_session, ice.id, expires_at=NOW + timedelta(days=30))
    in_1 = allocation(any_session, sea.id, expires_at=NOW + timedelta(days=1), amount=2_500_000)
    in_10 = allocation(any_session, ice.id, expires_at=NOW + timedelta(days=10))
    empty = ledger.open_account(
        any_session,
        code="notify-empty",
        currency=Currency.GPU,
        project_id=ice.id,
        expires_at=NOW + timedelta(days=7),
        actor=SYSTEM,
    )

    assert queue_expiry_digests(any_session, now=NOW) == 3

    digests = _by_recipient(any_session, NotificationKind.ALLOCATION_EXPIRING)
    assert sorted(digests) == ["ada@uni.example", "bob@uni.example", "cy@uni.example"]
    assert all(len(bodies) == 1 for bodies in digests.values())
    [ada_digest] = digests["ada@uni.example"]
    for listed in (in_7, in_30, in_1):
        assert listed.code in ada_digest
    assert "2.50 GPU credits left" in ada_digest
    assert "(in 1 day)" in ada_digest
    for unlisted in (in_10, empty):
        assert unlisted.code not in ada_digest
    [bob_digest] = digests["bob@uni.example"]
    assert in_1.code not in bob_digest
    [row] = [r for r in outbox(any_session) if r.recipient_email == "ada@uni.example"]
    assert (row.subject, row.dedupe_key, row.recipient_user_id) == (
        "3 allocations expiring soon",
        f"expiry:{uid(ada)}:2031-03-10",
        uid(ada),
    )


def test_the_digest_sweep_run_twice_a_day_enqueues_once_and_again_at_the_next_horizon(
    session: Session,
) -> None:
    ada = person(session, "ada@uni.example")
    ice = project(session, ada, title="Ice sheets")
    allocation(session, ice.id, expires_at=NOW + timedelta(days=30))

    assert queue_expiry_digests(session, now=NOW) == 1
    assert queue_expiry_digests(session, now=NOW + timedelta(hours=5)) == 0
    assert queue_expiry_digests(session, now=NOW + timedelta(days=1)) == 0
    assert queue_expiry_digests(session, now=NOW + timedelta(days=23)) == 1
    assert queue_expiry_digests(session, now=NOW + timedelta(days=29)) == 1
    assert len(outbox(session)) == 3


def test_expired_allocations_and_inactive_people_get_no_digest(session: Session) -> None:
    ada = person(session, "ada@uni.example")
    bob = person(session, "bob@uni.example")
    ice = project(session, ada, (bob, "member"), title="Ice sheets")
    account = allocation(session, ice.id, expires_at=NOW + timedelta(days=7))
    ledger.set_account_status(
        session, account_id=account.id, status=AccountStatus.EXPIRED, actor=SYSTEM, reason="test"
    )
    assert queue_expiry_digests(session, now=NOW) == 0

    allocation(session, ice.id, expires_at=NOW + timedelta(days=7))
    user = session.get(User, uid(bob))
    assert user is not None
    user.is_active = False
    session.flush()

    assert queue_expiry_digests(session, now=NOW) == 1
    assert [row.recipient_email for row in outbox(session)] == ["ada@uni.example"]


def _hold(session: Session, account_id: int, amount: int) -> None:
    ledger.place_hold(
        session,
        key=f"notify-hold-{account_id}",
        currency=Currency.GPU,
        amount=amount,
        account_id=account_id,
        actor=SYSTEM,
    )


def test_low_balance_notices_go_to_the_pi_and_managers_once_a_day(any_session: Session) -> None:
    ada = person(any_session, "ada@uni.example")
    bob = person(any_session, "bob@uni.example")
    cy = person(any_session, "cy@uni.example")
    ice = project(any_session, ada, (bob, "manager"), (cy, "member"), title="Ice sheets")
    low = allocation(any_session, ice.id, amount=10_000_000)
    at_ten_percent = allocation(any_session, ice.id, amount=10_000_000)
    healthy = allocation(any_session, ice.id, amount=10_000_000)
    _hold(any_session, low.id, 9_500_000)
    _hold(any_session, at_ten_percent.id, 9_000_000)
    _hold(any_session, healthy.id, 2_000_000)
    # "Once a day" is per UTC calendar day, so the sweep is pinned to midday:
    # a real clock near midnight would put the second sweep on the next day.
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)

    assert queue_low_balance_notices(any_session, now=now) == 2
    assert queue_low_balance_notices(any_session, now=now + timedelta(hours=11)) == 0

    notices = _by_recipient(any_session, NotificationKind.LOW_BALANCE)
    assert sorted(notices) == ["ada@uni.example", "bob@uni.example"]
    [body] = notices["ada@uni.example"]
    assert f"Allocation {low.code} has 0.50 of 10 GPU credits available" in body
    assert queue_low_balance_notices(any_session, now=now + timedelta(days=1)) == 2


def test_ended_allocations_get_no_low_balance_notice(session: Session) -> None:
    ada = person(session, "ada@uni.example")
    ice = project(session, ada, title="Ice sheets")
    low = allocation(session, ice.id, expires_at=datetime.now(UTC) + timedelta(days=2))
    _hold(session, low.id, 9_999_999)

    assert queue_low_balance_notices(session, now=datetime.now(UTC) + timedelta(days=3)) == 0


@pytest.fixture
def proposal(session: Session) -> Proposal:
    fay = person(session, "fay@funder.example", Role.FUNDER)
    otto = person(session, "otto@funder.example", Role.FUNDER)
    pia = person(session, "pia@uni.example")
    program = create_program(
        session,
        name="Compute for climate",
        description="GPU hours for climate models.",
        opens_at=NOW - timedelta(days=1),
        closes_at=NOW + timedelta(days=30),
        criteria=[{"key": "merit", "label": "Merit"}],
        min_reviewers=1,
        min_mean_score=300,
        owner_ids=[uid(otto)],
        actor=fay,
    )
    ice = project(session, pia, title="Ice sheets")
    row = Proposal(
        program_id=program.id,
        project_id=ice.id,
        kind="new",
        status=ProposalStatus.SUBMITTED.value,
        title="Glacier emulators",
        created_by_user_id=uid(pia),
    )
    session.add(row)
    session.flush()
    return row


def test_a_submitted_proposal_is_announced_to_each_program_owner_once(
    session: Session, proposal: Proposal
) -> None:
    created = notify_proposal_submitted(session, proposal_id=proposal.id)

    assert len(created) == 2
    assert notify_proposal_submitted(session, proposal_id=proposal.id) == []
    rows = outbox(session)
    assert sorted(row.recipient_email for row in rows) == [
        "fay@funder.example",
        "otto@funder.example",
    ]
    assert rows[0].subject == "New proposal in Compute for climate: Glacier emulators"


def test_an_assigned_reviewer_is_told(session: Session, proposal: Proposal) -> None:
    rex = person(session, "rex@uni.example", Role.REVIEWER)

    [row_id] = notify_reviewer_assigned(session, proposal_id=proposal.id, reviewer_user_id=uid(rex))

    [row] = outbox(session)
    assert (row.id, row.recipient_email, row.subject) == (
        row_id,
        "rex@uni.example",
        "Review requested: Glacier emulators",
    )


def test_the_pi_hears_the_decision_once_it_is_made(session: Session, proposal: Proposal) -> None:
    assert notify_decision(session, proposal_id=proposal.id) == []

    proposal.status = ProposalStatus.AWARDED.value
    proposal.decision_reason = "Strong merit."
    session.flush()
    notify_decision(session, proposal_id=proposal.id)
    notify_decision(session, proposal_id=proposal.id)

    [row] = outbox(session)
    assert (row.recipient_email, row.subject) == (
        "pia@uni.example",
        "Proposal awarded: Glacier emulators",
    )
    assert "Reason: Strong merit." in row.body


def test_an_unknown_proposal_is_refused(session: Session) -> None:
    with pytest.raises(NotificationSubjectNotFound):
        notify_decision(session, proposal_id=999_999)
