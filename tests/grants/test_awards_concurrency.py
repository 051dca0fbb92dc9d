"""Real commits on PostgreSQL: racing awards never overspend a program's pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from proposal_helpers import CREDIT, reviewed, world
from racing import committing_factory, together
from sqlalchemy.orm import Session, sessionmaker

from credits.db import session_scope
from credits.grants.awards import award_proposal
from credits.grants.proposal_queries import load_proposal
from credits.grants.queries import get_program
from credits.grants.schemas import AwardOut
from credits.ledger.errors import InsufficientCredits
from credits.ledger.verify import verify_ledger

pytestmark = pytest.mark.postgres

THREADS = 8


@pytest.fixture
def factory() -> Iterator[sessionmaker[Session]]:
    """A throwaway migrated database: these tests commit for real."""
    yield from committing_factory(THREADS)


def _together(work: Callable[[int], Any]) -> list[Any]:
    return together(THREADS, work)


def test_racing_awards_fit_the_budget(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as session:
        w = world(session, budget=10 * CREDIT, min_reviewers=1)
        ids = [
            reviewed(session, w, reviewers=1, requested={"gpu": 3 * CREDIT}).id
            for _ in range(THREADS)
        ]

    def award(index: int) -> AwardOut:
        with session_scope(factory) as session:
            proposal_id = ids[index]
            proposal = load_proposal(session, proposal_id)
            return award_proposal(
                session,
                proposal_id=proposal_id,
                actor=w.fay,
                key=f"race-{index}",
                amounts={"gpu": 3 * CREDIT},
                starts_at=proposal.starts_at,
                ends_at=proposal.ends_at,
            )

    results = _together(award)
    won = [r for r in results if isinstance(r, AwardOut)]
    lost = [r for r in results if isinstance(r, InsufficientCredits)]
    assert (len(won), len(lost)) == (3, THREADS - 3), results
    with session_scope(factory) as session:
        gpu = next(
            b for b in get_program(session, program_id=w.program_id).budget if b.currency == "gpu"
        )
        assert (gpu.awarded, gpu.remaining) == (9 * CREDIT, 1 * CREDIT)
        assert verify_ledger(session).ok


def test_one_key_sent_many_times_awards_once(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as session:
        w = world(session, min_reviewers=1)
        proposal = reviewed(session, w, reviewers=1)

    def award(index: int) -> AwardOut:
        with session_scope(factory) as session:
            return award_proposal(
                session,
                proposal_id=proposal.id,
                actor=w.fay,
                key="same",
                amounts=proposal.requested,
                starts_at=proposal.starts_at,
                ends_at=proposal.ends_at,
            )

    results = _together(award)
    assert all(isinstance(r, AwardOut) for r in results), results
    assert len({r.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    with session_scope(factory) as session:
        assert verify_ledger(session).ok
