"""Building proposal, review and award state through the services, for the tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from grants_helpers import new_program, new_project, person, state, uid
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.errors import CreditsError
from credits.grants.awards import award_proposal
from credits.grants.funding import fund_program
from credits.grants.models import (
    Allocation,
    Award,
    Proposal,
    Review,
    ReviewAssignment,
    Tranche,
)
from credits.grants.programs import open_program
from credits.grants.proposals import create_proposal, submit_proposal
from credits.grants.reviews import assign_reviewer, submit_review
from credits.grants.schemas import AwardOut, ProposalOut
from credits.identity.actor import Actor
from credits.identity.models import Role

CREDIT = 1_000_000
_keys = itertools.count()


@dataclass
class World:
    ops: Actor
    fay: Actor
    otto: Actor
    pia: Actor
    mia: Actor
    mo: Actor
    max: Actor
    reviewers: list[Actor]
    program_id: int
    project_id: int


def world(session: Session, *, budget: int = 1000 * CREDIT, **program_overrides: Any) -> World:
    """An open program owned by fay with ``budget`` of gpu and label credits, a project led
    by pia (mia a manager, mo a member), and three reviewers."""
    ops = person(session, "ops@platform.example", Role.OPS)
    fay = person(session, "fay@funder.example", Role.FUNDER)
    otto = person(session, "otto@funder.example", Role.FUNDER)
    pia = person(session, "pia@uni.example", Role.RESEARCHER)
    mia = person(session, "mia@uni.example", Role.RESEARCHER)
    mo = person(session, "mo@uni.example", Role.RESEARCHER)
    max_ = person(session, "max@uni.example", Role.RESEARCHER)
    reviewers = [person(session, f"rev{i}@uni.example", Role.REVIEWER) for i in range(3)]
    program = new_program(session, fay, **program_overrides)
    open_program(session, program_id=program.id, actor=fay)
    for currency in ("gpu", "label"):
        fund_program(
            session,
            program_id=program.id,
            currency=currency,
            amount_micro=budget,
            key=f"fund-{currency}",
            actor=fay,
            reason="FY27",
        )
    project = new_project(session, pia, (mia, "manager"), (mo, "member"))
    return World(ops, fay, otto, pia, mia, mo, max_, reviewers, program.id, project.id)


def proposal_values(**overrides: Any) -> dict[str, Any]:
    now = utcnow()
    values: dict[str, Any] = {
        "kind": "new",
        "title": "Ice sheet emulators",
        "abstract": "We train emulators of ice sheets.",
        "justification": "Each run needs 8 GPUs for a day.",
        "requested": {"gpu": 100 * CREDIT},
        "starts_at": now,
        "ends_at": now + timedelta(days=180),
    }
    return values | overrides


def drafted(session: Session, w: World, **overrides: Any) -> ProposalOut:
    return create_proposal(
        session,
        program_id=w.program_id,
        project_id=w.project_id,
        actor=w.pia,
        **proposal_values(**overrides),
    )


def submitted(session: Session, w: World, **overrides: Any) -> ProposalOut:
    proposal = drafted(session, w, **overrides)
    return submit_proposal(session, proposal_id=proposal.id, actor=w.pia)


def reviewed(
    session: Session,
    w: World,
    *,
    score: int = 4,
    reviewers: int = 2,
    by: Actor | None = None,
    **overrides: Any,
) -> ProposalOut:
    """Submitted, assigned by ``by`` (fay) to ``reviewers`` reviewers who each scored
    ``score`` everywhere."""
    proposal = submitted(session, w, **overrides)
    for reviewer in w.reviewers[:reviewers]:
        assign_reviewer(
            session, proposal_id=proposal.id, reviewer_user_id=uid(reviewer), actor=by or w.fay
        )
        submit_review(
            session,
            proposal_id=proposal.id,
            actor=reviewer,
            scores={"merit": score, "fit": score},
            comment="Sound plan.",
        )
    return proposal


def awarded(session: Session, w: World, *, amounts: Any = None, **overrides: Any) -> AwardOut:
    """A reviewed proposal awarded what it asked for over its period."""
    proposal = reviewed(session, w, **overrides)
    return award_proposal(
        session,
        proposal_id=proposal.id,
        actor=w.fay,
        key=f"award-{next(_keys)}",
        amounts=amounts if amounts is not None else proposal.requested,
        starts_at=proposal.starts_at,
        ends_at=proposal.ends_at,
    )


def full_state(session: Session) -> dict[str, Any]:
    """``grants_helpers.state`` plus the proposal, review and award tables."""

    def count(model: Any) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0

    result = state(session)
    result["counts"] |= {
        model.__name__: count(model)
        for model in (Proposal, ReviewAssignment, Review, Award, Allocation, Tranche)
    }
    result["proposals"] = session.execute(
        select(Proposal.id, Proposal.status, Proposal.title, Proposal.requested)
    ).all()
    result["reviews"] = session.execute(select(Review.id, Review.mean_score)).all()
    result["assignments"] = session.execute(
        select(ReviewAssignment.reviewer_user_id, ReviewAssignment.conflict_declared_at)
    ).all()
    result["allocations"] = session.execute(
        select(Allocation.id, Allocation.status, Allocation.expires_at, Allocation.awarded_micro)
    ).all()
    result["tranches"] = session.execute(select(Tranche.id, Tranche.status)).all()
    return result


def refused(session: Session, error: type[CreditsError], call: Any, **kwargs: Any) -> Any:
    """Runs ``call(session, **kwargs)``, which must raise ``error`` and change nothing."""
    before = full_state(session)
    with pytest.raises(error) as raised:
        call(session, **kwargs)
    assert full_state(session) == before
    return raised.value
