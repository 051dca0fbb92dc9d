"""Building grants state through the services, for the grants tests."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.audit.models import AuditEvent
from credits.db import utcnow
from credits.errors import CreditsError
from credits.grants.models import Program, ProgramOwner, Project, ProjectMember
from credits.grants.programs import create_program
from credits.grants.projects import add_member, create_project
from credits.grants.schemas import ProgramOut, ProjectOut
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.identity.tokens import create_token
from credits.ledger import service as ledger
from credits.ledger.models import Account, AccountKind, Currency, Transfer
from credits.ledger.queries import system_account_id
from credits.ledger.schemas import AccountOut
from credits.settings import load_settings

SYSTEM = Actor.system("tests")
CRITERIA = [{"key": "merit", "label": "Scientific merit"}, {"key": "fit", "label": "Fit"}]
_codes = itertools.count()


def person(session: Session, email: str, *roles: Role, institution: str = "Uni") -> Actor:
    """A new user holding ``roles``, as the actor services see."""
    create_user(
        session,
        email=email,
        name=email.partition("@")[0].title(),
        roles=roles,
        institution=institution,
        actor=SYSTEM,
    )
    return actor_for_email(session, email)


# The tests under tests/api keep these in their own helpers module, which tests
# run by directory cannot import; the little needed is repeated here.


def token_headers(
    session: Session, email: str, *roles: Role, scopes: Iterable[str] = ()
) -> dict[str, str]:
    """Makes a user holding ``roles`` and a token; returns the Authorization header."""
    person(session, email, *roles)
    created = create_token(session, email=email, actor=SYSTEM, scopes=scopes)
    session.flush()
    return {"Authorization": f"Bearer {created.secret}"}


def joined_app(session_factory: sessionmaker[Session]) -> Flask:
    """The app whose requests commit into the test's savepoint, rolled back at its end."""
    return create_app(load_settings(), session_factory=session_factory)


def uid(actor: Actor) -> int:
    assert actor.user_id is not None
    return actor.user_id


def program_values(**overrides: Any) -> dict[str, Any]:
    now = utcnow()
    values: dict[str, Any] = {
        "name": "Compute for climate",
        "description": "GPU hours for climate models.",
        "opens_at": now - timedelta(days=1),
        "closes_at": now + timedelta(days=30),
        "criteria": CRITERIA,
        "min_reviewers": 2,
        "min_mean_score": 350,
    }
    return values | overrides


def new_program(session: Session, actor: Actor, **overrides: Any) -> ProgramOut:
    return create_program(session, actor=actor, **program_values(**overrides))


def new_project(
    session: Session, pi: Actor, *members: tuple[Actor, str], **overrides: Any
) -> ProjectOut:
    """A project led by ``pi`` with ``members`` as (actor, role) pairs added by the PI."""
    values: dict[str, Any] = {"title": "Ice sheets", "field_of_science": "Glaciology"}
    project = create_project(session, actor=pi, **(values | overrides))
    for member, role in members:
        project = add_member(
            session, project_id=project.id, user_id=uid(member), role=role, actor=pi
        )
    return project


def allocation(
    session: Session,
    project_id: int,
    *,
    amount: int = 10_000_000,
    expires_in: timedelta = timedelta(days=30),
    currency: Currency = Currency.GPU,
) -> AccountOut:
    """An allocation account of the project, granted ``amount`` from the mint."""
    account = ledger.open_account(
        session,
        code=f"test-allocation-{next(_codes)}",
        currency=currency,
        project_id=project_id,
        expires_at=utcnow() + expires_in,
        actor=SYSTEM,
    )
    ledger.grant(
        session,
        key=f"test-fund-{account.code}",
        from_account_id=system_account_id(session, AccountKind.SOURCE, currency),
        to_account_id=account.id,
        amount=amount,
        actor=SYSTEM,
    )
    return account


def state(session: Session) -> dict[str, Any]:
    """Row counts and statuses that a refused call must leave as they were."""
    session.flush()

    def count(model: Any) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0

    return {
        "counts": {
            model.__name__: count(model)
            for model in (
                Program,
                ProgramOwner,
                Project,
                ProjectMember,
                AuditEvent,
                Account,
                Transfer,
            )
        },
        "programs": session.execute(
            select(Program.id, Program.status, Program.name, Program.min_reviewers)
        ).all(),
        "projects": session.execute(select(Project.id, Project.status)).all(),
        "members": session.execute(
            select(ProjectMember.project_id, ProjectMember.user_id, ProjectMember.role)
        ).all(),
        "accounts": session.execute(
            select(Account.id, Account.status, Account.credits_posted, Account.debits_posted)
        ).all(),
    }


def refused(session: Session, error: type[CreditsError], call: Any, **kwargs: Any) -> Any:
    """Runs ``call(session, **kwargs)``, which must raise ``error`` and change nothing."""
    before = state(session)
    with pytest.raises(error) as raised:
        call(session, **kwargs)
    assert state(session) == before
    return raised.value


def events(session: Session, subject_type: str, subject_id: int) -> list[tuple[str, str]]:
    """(event_type, actor) of the subject's audit events, oldest first."""
    rows = session.execute(
        select(AuditEvent.event_type, AuditEvent.actor)
        .where(AuditEvent.subject_type == subject_type)
        .where(AuditEvent.subject_id == str(subject_id))
        .order_by(AuditEvent.id)
    )
    return [(row.event_type, row.actor) for row in rows]


def event_data(session: Session, subject_type: str, subject_id: int, event_type: str) -> Any:
    """The ``data`` of the subject's newest event of ``event_type``."""
    canonical = session.scalar(
        select(AuditEvent.canonical_json)
        .where(AuditEvent.subject_type == subject_type)
        .where(AuditEvent.subject_id == str(subject_id))
        .where(AuditEvent.event_type == event_type)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    assert canonical is not None, f"no {event_type} event for {subject_type} {subject_id}"
    return json.loads(canonical)["data"]
