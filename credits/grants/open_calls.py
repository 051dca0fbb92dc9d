"""The calls open for proposals now, as anyone may read them without signing in.

A public list says what a call is about, when it closes and what reviewers
score; who owns it and its budget stay with the signed-in pages.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.grants.models import Program, ProgramStatus

MAX_CALLS = 200


class OpenCall(BaseModel):
    id: int
    name: str
    description: str
    opens_at: datetime
    closes_at: datetime
    criteria: list[str]


def list_open_calls(session: Session, *, now: datetime) -> list[OpenCall]:
    """Open programs whose window holds ``now``, the soonest to close first."""
    programs = session.scalars(
        select(Program)
        .where(
            Program.status == ProgramStatus.OPEN.value,
            Program.opens_at <= now,
            Program.closes_at > now,
        )
        .order_by(Program.closes_at, Program.id)
        .limit(MAX_CALLS)
    )
    return [
        OpenCall(
            id=program.id,
            name=program.name,
            description=program.description,
            opens_at=program.opens_at,
            closes_at=program.closes_at,
            criteria=[criterion["label"] for criterion in program.criteria],
        )
        for program in programs
    ]
