"""Real commits on PostgreSQL: grants transitions raced by many requests happen once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from test_ledger_concurrency import committed_postgres, run_together, verify_through_cli

from credits.db import make_session_factory, run_in_transaction, session_scope, utcnow
from credits.grants import programs, projects
from credits.grants.errors import AlreadyProjectMember, ProjectStatusConflict
from credits.grants.funding import fund_program
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user

pytestmark = pytest.mark.postgres

__all__ = ["committed_postgres"]  # the fixture, imported for pytest to find

SYSTEM = Actor.system("grants-concurrency-test")
THREADS = 8


PEOPLE = {"ops": Role.OPS, "fay": Role.FUNDER, "pia": Role.RESEARCHER, "mo": Role.RESEARCHER}


def _people(session: Any) -> dict[str, Actor]:
    for name, role in PEOPLE.items():
        create_user(
            session, email=f"{name}@x.org", name=name, roles=[role], institution="Uni", actor=SYSTEM
        )
    return {name: actor_for_email(session, f"{name}@x.org") for name in PEOPLE}


def _program(session: Any, fay: Actor) -> int:
    now = utcnow()
    return programs.create_program(
        session,
        name="Call",
        description="A call",
        opens_at=now,
        closes_at=now + timedelta(days=30),
        criteria=[{"key": "merit", "label": "Merit"}],
        min_reviewers=1,
        min_mean_score=300,
        actor=fay,
    ).id


def test_racing_fundings_with_one_key_move_credits_once(
    committed_postgres: tuple[str, Engine],
) -> None:
    url, engine = committed_postgres
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        people = _people(session)
        program_id = _program(session, people["fay"])

    def fund(_: int) -> Any:
        return run_in_transaction(
            factory,
            lambda session: fund_program(
                session,
                program_id=program_id,
                currency="gpu",
                amount_micro=7_000_000,
                key="fy27",
                actor=people["fay"],
                reason="FY27",
            ),
        )

    results = run_together(THREADS, fund)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(1 for r in results if not r.replayed) == 1
    assert {r.transfer.id for r in results} == {results[0].transfer.id}
    with session_scope(factory) as session:
        budget = programs.get_program(session, program_id=program_id).budget
    assert [b.funded for b in budget if b.currency == "gpu"] == [7_000_000]
    assert "ledger OK" in verify_through_cli(url)


def test_racing_suspensions_and_member_adds_happen_once(
    committed_postgres: tuple[str, Engine],
) -> None:
    _, engine = committed_postgres
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        people = _people(session)
        project_id = projects.create_project(
            session, title="Ice", field_of_science="Glaciology", actor=people["pia"]
        ).id
    mo = people["mo"].user_id or 0

    def add(_: int) -> Any:
        return run_in_transaction(
            factory,
            lambda session: projects.add_member(
                session, project_id=project_id, user_id=mo, role="member", actor=people["pia"]
            ),
        )

    added = run_together(THREADS, add)
    assert sum(1 for r in added if not isinstance(r, Exception)) == 1
    assert all(isinstance(r, AlreadyProjectMember) for r in added if isinstance(r, Exception))

    def suspend(_: int) -> Any:
        return run_in_transaction(
            factory,
            lambda session: projects.suspend_project(
                session, project_id=project_id, actor=people["ops"], reason="audit"
            ),
        )

    suspended = run_together(THREADS, suspend)
    assert sum(1 for r in suspended if not isinstance(r, Exception)) == 1
    refused = [r for r in suspended if isinstance(r, Exception)]
    assert all(isinstance(r, ProjectStatusConflict) for r in refused), refused
