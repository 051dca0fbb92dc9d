"""People behind actor labels: 'user:4' → their name and e-mail, and back.

Pages, the CLI and exports name people rather than print ``user:4``
(:func:`credits.formatting.person`); the audit log's actor filter finds a
person by a part of their name or e-mail (:func:`actor_labels_matching`).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from credits.formatting import Person, user_id_of
from credits.identity.models import User

MAX_MATCHES = 200


def people_by_id(session: Session, user_ids: Iterable[int]) -> dict[int, Person]:
    """The named people among ``user_ids`` (unknown ids are left out)."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    rows = session.execute(select(User.id, User.name, User.email).where(User.id.in_(wanted)))
    return {row.id: Person(name=row.name, email=row.email) for row in rows}


def people_in_labels(session: Session, labels: Iterable[str | None]) -> dict[int, Person]:
    """The people that actor labels such as ``user:4`` name."""
    return people_by_id(session, (i for i in map(user_id_of, labels) if i is not None))


def actor_labels_matching(session: Session, text: str) -> list[str]:
    """Actor labels a filter means: ``text`` itself, and ``user:<id>`` of everyone whose
    name or e-mail contains it (case-insensitive)."""
    cleaned = text.strip()
    if not cleaned:
        return []
    pattern = f"%{cleaned.lower()}%"
    ids = session.scalars(
        select(User.id)
        .where(or_(func.lower(User.name).like(pattern), func.lower(User.email).like(pattern)))
        .order_by(User.id)
        .limit(MAX_MATCHES)
    )
    return [cleaned, *(f"user:{user_id}" for user_id in ids)]
