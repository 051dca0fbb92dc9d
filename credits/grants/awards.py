"""Decisions: award or reject a proposal; awards become allocations in the ledger.

Who: a program owner or ops, not on the applying project (the conflict of
interest that bars its members from reviewing it). From: ``submitted`` or
``in_review``. A decision needs the program's ``min_reviewers`` counted
reviews (reviewers who declared a conflict do not count) and, to award, a
mean of at least the program's ``min_mean_score``; an ``override_reason``
skips both and is audited.

An award, its allocation rows, its tranches and its ledger transfers are
written in the caller's one transaction, so they commit together or not at
all. Per kind:

- ``new``/``renewal``: one allocation per awarded currency, each a new ledger
  allocation account (``allocation:<award id>:<currency>``) funded by a grant
  from the program's pool. A suspended project's new allocations start
  suspended.
- ``supplement``: a grant from the pool into the named allocation.
- ``extension``: the named allocation and its ledger account end later.

With a tranche policy (``initial_share_percent``) only that share (rounded
down) is granted at award; the rest is one pending tranche per allocation,
granted by :func:`credits.grants.allocations.release_tranche`.

The whole award, pending tranches included, must fit in what the pool holds
beyond the program's other pending tranches (InsufficientCredits, 402); the
ledger's own overdraft guard backs this up. Ledger keys are derived from the
proposal (``proposal:<id>:award:<currency>``), and the client's
``Idempotency-Key`` is kept on the award: the same key again returns the
first award, and a second award of the proposal is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants.allocations import (
    fund_allocation,
    open_allocation,
    require_budget,
    suspend_with_project,
)
from credits.grants.errors import (
    InvalidAward,
    ProjectStatusConflict,
    ProposalForbidden,
)
from credits.grants.models import (
    Allocation,
    Award,
    Program,
    Project,
    ProjectStatus,
    Proposal,
    ProposalKind,
    ProposalStatus,
)
from credits.grants.proposal_queries import (
    load_proposal,
    render_award,
    render_proposal,
)
from credits.grants.proposals import (
    audit_proposal,
    check_period,
    clean_amounts,
    extends_too_little,
    live_allocation,
    require_status,
)
from credits.grants.queries import load_program, load_project, owner_ids
from credits.grants.reviews import REVIEWABLE, check_decision_reviews, require_impartial
from credits.grants.schemas import AwardOut, ProposalOut
from credits.identity.access import can_administer_program
from credits.identity.actor import Actor
from credits.ledger import journal
from credits.ledger.errors import IdempotencyKeyReused
from credits.ledger.service import extend_account
from credits.notifications.events import announce, notify_decision

__all__ = ["award_proposal", "reject_proposal"]

# An award covers at most five years and starts at most a year back.
MAX_PERIOD = timedelta(days=5 * 366)
MAX_BACKDATE = timedelta(days=366)
REASON_MAX_LENGTH = 20_000
PLATFORM = Actor.system("grants")


# Guards.


def _require_decider(actor: Actor, program: Program) -> None:
    if not can_administer_program(actor, owner_ids=owner_ids(program)):
        raise ProposalForbidden(f"only an owner of program {program.id} or ops may decide")


def _clean_optional(text: str | None, field: str) -> str | None:
    if text is None:
        return None
    cleaned = text.strip() if isinstance(text, str) else ""
    if not cleaned or len(cleaned) > REASON_MAX_LENGTH:
        raise InvalidAward(f"{field} is text of 1 to {REASON_MAX_LENGTH} characters", field=field)
    return cleaned


def _check_new_period(
    starts_at: datetime | None, ends_at: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    if starts_at is None or ends_at is None:
        raise InvalidAward("an award needs starts_at and ends_at", field="ends_at")
    check_period(starts_at, ends_at, error=InvalidAward)
    if ends_at <= now:
        raise InvalidAward("an award must end in the future", field="ends_at")
    if ends_at - starts_at > MAX_PERIOD:
        raise InvalidAward(f"an award lasts at most {MAX_PERIOD.days} days", field="ends_at")
    if starts_at < now - MAX_BACKDATE:
        raise InvalidAward(
            f"an award starts at most {MAX_BACKDATE.days} days ago", field="starts_at"
        )
    return starts_at, ends_at


def _replay(
    session: Session, proposal: Proposal, key: str, actor: Actor, request: Mapping[str, Any]
) -> AwardOut | None:
    """The first award when ``key`` made it; the same key from another actor or with
    another request (any of AwardIn's fields) is refused (IdempotencyKeyReused), as the
    ledger refuses it."""
    award = session.scalar(select(Award).where(Award.proposal_id == proposal.id))
    if award is None or award.idempotency_key != key:
        return None
    if award.decided_by_user_id != actor.user_id or not _same_request(award, proposal, request):
        raise IdempotencyKeyReused(
            f"key {key!r} awarded proposal {proposal.id} with another request"
        )
    ids = list(
        session.scalars(
            select(Allocation.id).where(Allocation.award_id == award.id).order_by(Allocation.id)
        )
    )
    if not ids and proposal.allocation_id is not None:
        ids = [proposal.allocation_id]
    return render_award(session, award, allocation_ids=ids, replayed=True)


def _same_request(award: Award, proposal: Proposal, request: Mapping[str, Any]) -> bool:
    """Whether ``request`` is the one that made ``award``, compared with what the award and
    the proposal it decided keep of it (so no request hash is stored)."""
    try:
        amounts = clean_amounts(
            request["amounts"] or {}, field="amounts", positive=True, error=InvalidAward
        )
        reason = _clean_optional(request["reason"], "reason")
        override = _clean_optional(request["override_reason"], "override_reason")
    except InvalidAward:
        return False  # the award was made from a valid request, so not from this one
    return (
        amounts == award.amounts
        and (request["starts_at"], request["ends_at"]) == _given_period(award, proposal)
        and reason == proposal.decision_reason
        and override == proposal.override_reason
    )


def _given_period(award: Award, proposal: Proposal) -> tuple[datetime | None, datetime | None]:
    """The dates the awarding request gave: a supplement gives none (the award keeps its
    allocation's), an extension only the new end."""
    if proposal.allocation_id is None:
        return award.starts_at, award.ends_at
    if proposal.kind == ProposalKind.EXTENSION.value:
        return None, award.ends_at
    return None, None


# Services.


def award_proposal(
    session: Session,
    *,
    proposal_id: int,
    actor: Actor,
    key: str,
    amounts: Mapping[str, Any] | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    reason: str | None = None,
    override_reason: str | None = None,
    now: datetime | None = None,
) -> AwardOut:
    """Awards the proposal: submitted or in_review → awarded, with its allocations.

    ``amounts`` are micro-credits per currency, each above zero: for new and
    renewal one or more currencies with ``starts_at`` < ``ends_at`` (ending in
    the future, at most five years long, starting at most a year back); for a
    supplement the allocation's currency alone and no dates; for an extension
    no amounts and an ``ends_at`` later than the allocation's. Appends
    ``proposal.awarded``. The same ``key`` with the same request from the same
    actor again returns the first award; with another request or actor it is
    IdempotencyKeyReused.

    Raises ProposalNotFound, ProposalForbidden (not an owner or ops, or on the
    applying project), ProposalStatusConflict, ProjectStatusConflict
    (archived), NotEnoughReviews, ScoreBelowMinimum, InvalidAward,
    InsufficientCredits, AccountNotActive (a supplement into a suspended
    allocation), InvalidProposal (the named allocation has ended).
    """
    now = now or utcnow()
    key = journal.check_key(key)
    proposal = load_proposal(session, proposal_id, lock=True)
    program = load_program(session, proposal.program_id)
    _require_decider(actor, program)
    if proposal.status == ProposalStatus.AWARDED.value and (
        replayed := _replay(
            session,
            proposal,
            key,
            actor,
            {
                "amounts": amounts,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "reason": reason,
                "override_reason": override_reason,
            },
        )
    ):
        return replayed
    require_impartial(session, actor, proposal.project_id)
    require_status(proposal, REVIEWABLE, "be awarded")
    # Locked so that a suspension in flight is seen: its allocations start suspended.
    project = load_project(session, proposal.project_id, lock=True)
    if project.status == ProjectStatus.ARCHIVED.value:
        raise ProjectStatusConflict(
            f"project {project.id} is archived", current_status=project.status
        )
    why = _clean_optional(reason, "reason")
    override = _clean_optional(override_reason, "override_reason")
    facts = check_decision_reviews(
        session, proposal, program, override_reason=override, awarding=True
    )
    kind = ProposalKind(proposal.kind)
    cleaned = clean_amounts(amounts or {}, field="amounts", positive=True, error=InvalidAward)
    award = Award(
        proposal_id=proposal.id,
        program_id=program.id,
        project_id=project.id,
        amounts=cleaned,
        decided_by_user_id=actor.user_id,
        idempotency_key=key,
    )
    # A CHECK constraint gives every supplement and extension, and only them, an allocation.
    if proposal.allocation_id is not None:
        target = live_allocation(
            session, proposal.allocation_id, project_id=project.id, program_id=program.id
        )
        award.starts_at, award.ends_at = target.starts_at, target.expires_at
        allocations = _award_to_allocation(
            session,
            kind=kind,
            proposal=proposal,
            program=program,
            award=award,
            target=target,
            ends_at=ends_at,
            starts_at=starts_at,
            actor=actor,
        )
    else:
        allocations = _award_new(
            session,
            proposal=proposal,
            program=program,
            project=project,
            award=award,
            period=_check_new_period(starts_at, ends_at, now),
            actor=actor,
        )
    _decide(
        proposal, status=ProposalStatus.AWARDED, actor=actor, reason=why, override=override, now=now
    )
    session.flush()
    audit_proposal(
        session,
        "proposal.awarded",
        proposal,
        actor,
        award_id=award.id,
        amounts=cleaned,
        starts_at=award.starts_at.isoformat(),
        ends_at=award.ends_at.isoformat(),
        allocations=[allocation.id for allocation in allocations],
        reason=why,
        **facts,
    )
    announce(session, notify_decision, proposal_id=proposal.id)
    return render_award(session, award, allocation_ids=[a.id for a in allocations])


def _award_new(
    session: Session,
    *,
    proposal: Proposal,
    program: Program,
    project: Project,
    award: Award,
    period: tuple[datetime, datetime],
    actor: Actor,
) -> list[Allocation]:
    """New and renewal: one funded allocation per awarded currency."""
    if not award.amounts:
        raise InvalidAward("an award grants at least one currency", field="amounts")
    award.starts_at, award.ends_at = period
    require_budget(session, program.id, award.amounts)
    session.add(award)
    session.flush()
    allocations = []
    for currency, amount in sorted(award.amounts.items()):
        allocation = open_allocation(
            session, award=award, project=project, currency=currency, amount=amount, actor=actor
        )
        fund_allocation(
            session,
            proposal=proposal,
            program=program,
            allocation=allocation,
            award=award,
            amount=amount,
            actor=actor,
        )
        if project.status == ProjectStatus.SUSPENDED.value:
            suspend_with_project(session, allocation, project)
        allocations.append(allocation)
    return allocations


def _award_to_allocation(
    session: Session,
    *,
    kind: ProposalKind,
    proposal: Proposal,
    program: Program,
    award: Award,
    target: Allocation,
    starts_at: datetime | None,
    ends_at: datetime | None,
    actor: Actor,
) -> list[Allocation]:
    """A supplement grants into ``target``; an extension moves its end date later."""
    if starts_at is not None:
        raise InvalidAward(f"a {kind.value} keeps its allocation's start", field="starts_at")
    if kind is ProposalKind.SUPPLEMENT:
        if ends_at is not None:
            raise InvalidAward("a supplement keeps its allocation's end", field="ends_at")
        if set(award.amounts) != {target.currency}:
            raise InvalidAward(
                f"a supplement grants {target.currency} alone, into allocation {target.id}",
                field="amounts",
            )
        require_budget(session, program.id, award.amounts)
        session.add(award)
        session.flush()
        amount = award.amounts[target.currency]
        target.awarded_micro += amount
        fund_allocation(
            session,
            proposal=proposal,
            program=program,
            allocation=target,
            award=award,
            amount=amount,
            actor=actor,
        )
        return [target]
    if award.amounts:
        raise InvalidAward("an extension grants no credits", field="amounts")
    if ends_at is None or ends_at <= target.expires_at:
        raise InvalidAward(extends_too_little(target.id, target.expires_at), field="ends_at")
    check_period(target.starts_at, ends_at, error=InvalidAward)
    if ends_at - target.starts_at > MAX_PERIOD:
        raise InvalidAward(f"an allocation lasts at most {MAX_PERIOD.days} days", field="ends_at")
    award.ends_at = ends_at
    session.add(award)
    session.flush()
    extend_account(
        session,
        account_id=target.account_id,
        expires_at=ends_at,
        actor=actor,
        reason=f"award {award.id} of proposal {proposal.id}",
    )
    target.expires_at = ends_at
    return [target]


def _decide(
    proposal: Proposal,
    *,
    status: ProposalStatus,
    actor: Actor,
    reason: str | None,
    override: str | None,
    now: datetime,
) -> None:
    proposal.status = status.value
    proposal.decided_at = now
    proposal.decided_by_user_id = actor.user_id
    proposal.decision_reason = reason
    proposal.override_reason = override


def reject_proposal(
    session: Session,
    *,
    proposal_id: int,
    actor: Actor,
    reason: str | None = None,
    override_reason: str | None = None,
    now: datetime | None = None,
) -> ProposalOut:
    """submitted or in_review → rejected; appends ``proposal.rejected``.

    Needs the program's minimum number of reviews, or an override reason.
    Raises ProposalNotFound, ProposalForbidden (not an owner or ops, or on the
    applying project), ProposalStatusConflict, NotEnoughReviews, InvalidAward
    (a reason too long or blank).
    """
    now = now or utcnow()
    proposal = load_proposal(session, proposal_id, lock=True)
    program = load_program(session, proposal.program_id)
    _require_decider(actor, program)
    require_impartial(session, actor, proposal.project_id)
    require_status(proposal, REVIEWABLE, "be rejected")
    why = _clean_optional(reason, "reason")
    override = _clean_optional(override_reason, "override_reason")
    facts = check_decision_reviews(
        session, proposal, program, override_reason=override, awarding=False
    )
    previous = proposal.status
    _decide(
        proposal,
        status=ProposalStatus.REJECTED,
        actor=actor,
        reason=why,
        override=override,
        now=now,
    )
    session.flush()
    audit_proposal(
        session, "proposal.rejected", proposal, actor, reason=why, **facts, **{"from": previous}
    )
    announce(session, notify_decision, proposal_id=proposal.id)
    return render_proposal(proposal)
