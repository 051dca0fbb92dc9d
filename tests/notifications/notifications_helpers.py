"""People, projects, allocations and fakes for the notification tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants.projects import add_member, create_project
from credits.grants.schemas import ProjectOut
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.ledger import service as ledger
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import system_account_id
from credits.ledger.schemas import AccountOut
from credits.notifications.models import OutboxMessage

SYSTEM = Actor.system("tests")
_codes = itertools.count()


def person(session: Session, email: str, *roles: Role) -> Actor:
    create_user(
        session,
        email=email,
        name=email.partition("@")[0].title(),
        roles=roles or (Role.RESEARCHER,),
        institution="Uni",
        actor=SYSTEM,
    )
    return actor_for_email(session, email)


def uid(actor: Actor) -> int:
    assert actor.user_id is not None
    return actor.user_id


def project(session: Session, pi: Actor, *members: tuple[Actor, str], title: str) -> ProjectOut:
    created = create_project(session, actor=pi, title=title, field_of_science="Glaciology")
    for member, role in members:
        add_member(session, project_id=created.id, user_id=uid(member), role=role, actor=pi)
    return created


def allocation(
    session: Session,
    project_id: int,
    *,
    amount: int = 10_000_000,
    expires_at: datetime | None = None,
    currency: Currency = Currency.GPU,
) -> AccountOut:
    """An allocation account of the project, granted ``amount`` from the mint."""
    account = ledger.open_account(
        session,
        code=f"notify-allocation-{next(_codes)}",
        currency=currency,
        project_id=project_id,
        expires_at=expires_at or utcnow() + timedelta(days=90),
        actor=SYSTEM,
    )
    ledger.grant(
        session,
        key=f"notify-fund-{account.code}",
        from_account_id=system_account_id(session, AccountKind.SOURCE, currency),
        to_account_id=account.id,
        amount=amount,
        actor=SYSTEM,
    )
    return account


def outbox(session: Session) -> list[OutboxMessage]:
    return list(
        session.scalars(
            select(OutboxMessage)
            .order_by(OutboxMessage.id)
            .execution_options(populate_existing=True)
        )
    )


class FakeMailer:
    """Keeps what it was asked to send; fails while ``failures`` is above zero."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[EmailMessage] = []
        self.failures = failures

    def send(self, message: EmailMessage) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionRefusedError("smtp.example.org refused the connection")
        self.sent.append(message)
