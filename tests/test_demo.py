"""The demo ``./scripts/up`` seeds: made once through the services, usable at once."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.demo import seed_demo
from credits.grants.models import Program
from credits.identity.models import User
from credits.identity.service import authenticate_password
from credits.ledger.models import Currency
from credits.ledger.queries import project_available
from credits.pool import service as pool


def test_seeding_twice_creates_the_demo_once(session: Session) -> None:
    first = seed_demo(session, flavour="local-gpu", gpus_per_node=2)
    counts = (
        session.scalar(select(func.count()).select_from(User)),
        session.scalar(select(func.count()).select_from(Program)),
    )
    second = seed_demo(session, flavour="local-gpu", gpus_per_node=2)
    assert first.created
    assert {login.role for login in first.logins} == {"researcher", "reviewer", "funder", "ops"}
    assert not second.created
    assert second.logins == []
    assert "already seeded" in second.message
    assert counts == (
        session.scalar(select(func.count()).select_from(User)),
        session.scalar(select(func.count()).select_from(Program)),
    )


def test_the_seeded_researcher_signs_in_and_has_credits(session: Session) -> None:
    result = seed_demo(session, flavour="local-gpu", gpus_per_node=3)
    researcher = next(login for login in result.logins if login.role == "researcher")
    actor = authenticate_password(session, email=researcher.email, password=researcher.password)
    assert actor.email == researcher.email
    assert result.project_id is not None
    available = project_available(session, project_id=result.project_id, currency=Currency.GPU)
    assert available == 1_000_000_000
    flavour = pool.get_flavour(session, name="local-gpu")
    assert flavour.gpus_per_node == 3
    assert [rate.in_force for rate in pool.list_rates(session, flavour="local-gpu")] == [True]
