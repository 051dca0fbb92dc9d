"""Awards become allocations in the ledger: amounts, dates, budget, tranches, kinds, atomicity."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from grants_helpers import event_data, new_project, state
from proposal_helpers import (
    CREDIT,
    World,
    awarded,
    full_state,
    refused,
    reviewed,
    world,
)
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants.allocations import release_tranche
from credits.grants.awards import award_proposal, reject_proposal
from credits.grants.errors import (
    InvalidAward,
    InvalidProposal,
    ProposalForbidden,
    ProposalStatusConflict,
    TrancheStatusConflict,
)
from credits.grants.models import AllocationStatus, ProposalStatus, TrancheStatus
from credits.grants.projects import suspend_project
from credits.grants.proposal_queries import load_proposal
from credits.grants.proposals import create_proposal
from credits.grants.queries import get_program, pool_code
from credits.ledger.errors import IdempotencyKeyReused, InsufficientCredits
from credits.ledger.models import Account, Currency
from credits.ledger.queries import get_account_by_code
from credits.ledger.service import adjust
from credits.ledger.verify import verify_ledger


@pytest.fixture
def w(any_session: Session) -> World:
    return world(any_session)


def _award(session: Session, w: World, proposal: Any, **overrides: Any) -> Any:
    values = {
        "proposal_id": proposal.id,
        "actor": w.fay,
        "key": "award-1",
        "amounts": proposal.requested,
        "starts_at": proposal.starts_at,
        "ends_at": proposal.ends_at,
    }
    return award_proposal(session, **(values | overrides))


def test_an_award_creates_funded_allocations(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w, requested={"gpu": 100 * CREDIT, "label": 5 * CREDIT})
    award = _award(any_session, w, proposal, reason="strong")
    assert sorted(a.currency.value for a in award.allocations) == ["gpu", "label"]
    for allocation in award.allocations:
        assert allocation.status is AllocationStatus.ACTIVE
        assert allocation.released_micro == allocation.awarded_micro
        assert allocation.available_micro == proposal.requested[allocation.currency]
        assert (allocation.starts_at, allocation.expires_at) == (
            proposal.starts_at,
            proposal.ends_at,
        )
        account = any_session.get(Account, allocation.account_id)
        assert account is not None
        assert (account.kind, account.project_id) == ("allocation", w.project_id)
    budget = {
        line.currency.value: line
        for line in get_program(any_session, program_id=w.program_id).budget
    }
    assert budget["gpu"].awarded == 100 * CREDIT
    assert budget["gpu"].remaining == 900 * CREDIT
    assert load_proposal(any_session, proposal.id).status == ProposalStatus.AWARDED.value
    data = event_data(any_session, "proposal", proposal.id, "proposal.awarded")
    assert data["amounts"] == {"gpu": 100 * CREDIT, "label": 5 * CREDIT}
    assert data["reviews"] == 2
    assert verify_ledger(any_session).ok


def test_the_same_key_replays_the_award(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w)
    first = _award(any_session, w, proposal)
    before = full_state(any_session)
    again = _award(any_session, w, proposal)
    assert again.replayed
    assert again.id == first.id
    assert full_state(any_session) == before
    error = refused(
        any_session, ProposalStatusConflict, _award, w=w, proposal=proposal, key="other"
    )
    assert error.extra["current_status"] == "awarded"


def test_an_over_budget_award_is_refused_and_saves_nothing(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w, requested={"gpu": 1001 * CREDIT})
    error = refused(any_session, InsufficientCredits, _award, w=w, proposal=proposal)
    assert error.status == 402
    assert error.extra["remaining"] == 1000 * CREDIT


@pytest.mark.parametrize(
    "overrides",
    [
        {"amounts": {"gpu": 0}},
        {"amounts": {"gpu": -5}},
        {"amounts": {}},
        {"amounts": {"gpu": 2.5}},
        {"ends_at": utcnow() - timedelta(days=1)},
        {"starts_at": None},
        {"ends_at": utcnow() - timedelta(hours=1), "starts_at": utcnow() - timedelta(days=2)},
        {"ends_at": utcnow() + timedelta(days=6 * 366)},
        {"starts_at": utcnow() - timedelta(days=400)},
    ],
)
def test_bad_amounts_and_dates_are_refused(
    any_session: Session, w: World, overrides: dict[str, Any]
) -> None:
    proposal = reviewed(any_session, w)
    refused(any_session, InvalidAward, _award, w=w, proposal=proposal, **overrides)


@pytest.mark.parametrize("who", ["otto", "pia", "reviewer"])
def test_only_owners_and_ops_decide(any_session: Session, w: World, who: str) -> None:
    proposal = reviewed(any_session, w)
    actor = w.reviewers[0] if who == "reviewer" else getattr(w, who)
    refused(any_session, ProposalForbidden, _award, w=w, proposal=proposal, actor=actor)
    refused(any_session, ProposalForbidden, reject_proposal, proposal_id=proposal.id, actor=actor)


def test_ops_award(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w)
    assert _award(any_session, w, proposal, actor=w.ops).allocations


def test_a_rejected_proposal_is_not_awarded(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w)
    reject_proposal(any_session, proposal_id=proposal.id, actor=w.fay)
    error = refused(any_session, ProposalStatusConflict, _award, w=w, proposal=proposal)
    assert error.extra["current_status"] == "rejected"
    error = refused(
        any_session, ProposalStatusConflict, reject_proposal, proposal_id=proposal.id, actor=w.fay
    )
    assert error.extra["current_status"] == "rejected"


def test_a_suspended_projects_allocations_start_suspended(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w)
    suspend_project(any_session, project_id=w.project_id, actor=w.ops, reason="audit")
    award = _award(any_session, w, proposal)
    assert [a.status for a in award.allocations] == [AllocationStatus.SUSPENDED]
    assert award.allocations[0].available_micro == 100 * CREDIT
    assert verify_ledger(any_session).ok


def test_an_award_commits_atomically(
    any_session: Session, w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the allocation rows are flushed leaves nothing of the award."""
    proposal = reviewed(any_session, w)
    before = full_state(any_session)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("credits.grants.awards.fund_allocation", fail)
    with pytest.raises(RuntimeError), any_session.begin_nested():
        _award(any_session, w, proposal)
    any_session.expire_all()
    assert full_state(any_session) == before


# Tranches.


def test_a_tranche_policy_holds_back_the_rest(any_session: Session) -> None:
    w = world(any_session, initial_share_percent=30)
    award = awarded(any_session, w, requested={"gpu": 10 * CREDIT})
    (allocation,) = award.allocations
    (tranche,) = award.tranches
    assert allocation.released_micro == 3 * CREDIT
    assert (tranche.amount_micro, tranche.status) == (7 * CREDIT, TrancheStatus.PENDING)
    budget = get_program(any_session, program_id=w.program_id).budget[0]
    assert budget.awarded == 3 * CREDIT
    released = release_tranche(
        any_session, tranche_id=tranche.id, actor=w.fay, progress_report="Half done.", key="r1"
    )
    assert released.status is TrancheStatus.RELEASED
    assert released.progress_report == "Half done."
    before = full_state(any_session)
    assert (
        release_tranche(
            any_session, tranche_id=tranche.id, actor=w.fay, progress_report="Half done.", key="r1"
        ).status
        is TrancheStatus.RELEASED
    )
    assert full_state(any_session) == before
    error = refused(
        any_session,
        TrancheStatusConflict,
        release_tranche,
        tranche_id=tranche.id,
        actor=w.fay,
        progress_report="again",
        key="r2",
    )
    assert error.extra["current_status"] == "released"
    assert verify_ledger(any_session).ok


def test_pending_tranches_count_against_the_budget(any_session: Session) -> None:
    w = world(any_session, budget=10 * CREDIT, initial_share_percent=50, min_reviewers=1)
    awarded(any_session, w, requested={"gpu": 8 * CREDIT}, reviewers=1)
    second = reviewed(any_session, w, requested={"gpu": 3 * CREDIT}, reviewers=1)
    error = refused(any_session, InsufficientCredits, _award, w=w, proposal=second, key="k2")
    assert error.extra["remaining"] == 2 * CREDIT
    # What funders are shown to be left is what the refusal says: the pending 4 are promised.
    lines = get_program(any_session, program_id=w.program_id).budget
    (budget,) = [line for line in lines if line.currency is Currency.GPU]
    assert (budget.awarded, budget.promised, budget.remaining) == (
        4 * CREDIT,
        4 * CREDIT,
        2 * CREDIT,
    )


def test_ops_cannot_remove_what_a_pool_owes_pending_tranches(any_session: Session) -> None:
    w = world(any_session, budget=10 * CREDIT, initial_share_percent=50, min_reviewers=1)
    (tranche,) = awarded(any_session, w, requested={"gpu": 8 * CREDIT}, reviewers=1).tranches
    pool = get_account_by_code(any_session, code=pool_code(w.program_id, Currency.GPU))
    error = refused(
        any_session,
        InsufficientCredits,
        adjust,
        key="drain",
        account_id=pool.id,
        amount=-3 * CREDIT,
        actor=w.ops,
        reason="correction",
    )
    assert (error.extra["required"], error.extra["available"]) == (3 * CREDIT, 2 * CREDIT)
    adjust(any_session, key="trim", account_id=pool.id, amount=-2 * CREDIT, actor=w.ops, reason="x")
    lines = get_program(any_session, program_id=w.program_id).budget
    (budget,) = [line for line in lines if line.currency is Currency.GPU]
    # Funding ops took back is neither awarded nor left.
    assert (budget.funded, budget.awarded, budget.promised, budget.remaining) == (
        8 * CREDIT,
        4 * CREDIT,
        4 * CREDIT,
        0,
    )
    released = release_tranche(
        any_session, tranche_id=tranche.id, actor=w.fay, progress_report="on track", key="r"
    )
    assert released.status == TrancheStatus.RELEASED
    assert verify_ledger(any_session).ok


def test_a_release_needs_an_owner_and_a_report(any_session: Session) -> None:
    w = world(any_session, initial_share_percent=50)
    (tranche,) = awarded(any_session, w).tranches
    refused(
        any_session,
        ProposalForbidden,
        release_tranche,
        tranche_id=tranche.id,
        actor=w.otto,
        progress_report="r",
        key="k",
    )
    refused(
        any_session,
        InvalidAward,
        release_tranche,
        tranche_id=tranche.id,
        actor=w.fay,
        progress_report=" ",
        key="k",
    )


# Supplements and extensions.


def test_a_supplement_grants_more_into_the_named_allocation(any_session: Session, w: World) -> None:
    (allocation,) = awarded(any_session, w).allocations
    proposal = reviewed(
        any_session,
        w,
        kind="supplement",
        allocation_id=allocation.id,
        requested={"gpu": 20 * CREDIT},
        starts_at=None,
        ends_at=None,
    )
    refused(
        any_session,
        InvalidAward,
        _award,
        w=w,
        proposal=proposal,
        key="s",
        amounts={"label": 20 * CREDIT},
        starts_at=None,
        ends_at=None,
    )
    award = _award(any_session, w, proposal, key="s", starts_at=None, ends_at=None)
    (topped,) = award.allocations
    assert topped.id == allocation.id
    assert topped.awarded_micro == 120 * CREDIT
    assert topped.available_micro == 120 * CREDIT
    assert verify_ledger(any_session).ok


def test_an_extension_moves_the_end_date(any_session: Session, w: World) -> None:
    (allocation,) = awarded(any_session, w).allocations
    later = allocation.expires_at + timedelta(days=90)
    proposal = reviewed(
        any_session,
        w,
        kind="extension",
        allocation_id=allocation.id,
        requested={},
        starts_at=None,
        ends_at=later,
    )
    refused(
        any_session,
        InvalidAward,
        _award,
        w=w,
        proposal=proposal,
        key="e",
        amounts={},
        starts_at=None,
        ends_at=allocation.expires_at,
    )
    award = _award(any_session, w, proposal, key="e", amounts={}, starts_at=None, ends_at=later)
    (extended,) = award.allocations
    assert extended.expires_at == later
    account = any_session.get(Account, extended.account_id)
    assert account is not None
    any_session.refresh(account)
    assert account.expires_at == later
    assert (
        event_data(any_session, "ledger_account", extended.account_id, "ledger.account_extended")[
            "to"
        ]
        == later.isoformat()
    )


def test_an_extension_must_be_later(any_session: Session, w: World) -> None:
    (allocation,) = awarded(any_session, w).allocations
    proposal = reviewed(
        any_session,
        w,
        kind="extension",
        allocation_id=allocation.id,
        requested={},
        starts_at=None,
        ends_at=allocation.expires_at + timedelta(days=1),
    )
    refused(
        any_session,
        InvalidAward,
        _award,
        w=w,
        proposal=proposal,
        key="e",
        amounts={},
        starts_at=None,
        ends_at=allocation.expires_at - timedelta(days=1),
    )


def test_a_supplement_of_another_projects_allocation_is_refused(
    any_session: Session, w: World
) -> None:
    (allocation,) = awarded(any_session, w).allocations
    other = new_project(any_session, w.max, title="Other")
    before = state(any_session)
    with pytest.raises(InvalidProposal):
        create_proposal(
            any_session,
            program_id=w.program_id,
            project_id=other.id,
            kind="supplement",
            allocation_id=allocation.id,
            actor=w.max,
        )
    assert state(any_session) == before


def test_the_same_key_with_another_request_is_refused(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w)
    _award(any_session, w, proposal)
    refused(
        any_session,
        IdempotencyKeyReused,
        _award,
        w=w,
        proposal=proposal,
        amounts={"gpu": 1},
    )
    refused(any_session, IdempotencyKeyReused, _award, w=w, proposal=proposal, actor=w.ops)
