"""How far an order's annotation has come, and who is annotating it, for its requester.

Items are counted against the order's redundancy; annotators assigned to an
in-house order are named by e-mail to the project's researchers and ops, who
assigned them (annotations elsewhere name them by the order's pseudonyms).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.identity.models import Role, User, UserRole
from credits.identity.service import normalize_email
from credits.labelling.access import load_order
from credits.labelling.models import Item, OrderAnnotator

# The item table on the order page shows this many; the counts cover every item.
ITEM_ROWS = 200


class ItemProgress(BaseModel):
    external_id: str
    annotations: int
    is_gold: bool


class OrderProgress(BaseModel):
    items: int
    complete_items: int
    annotations: int
    wanted_annotations: int
    rows: list[ItemProgress]


def order_progress(session: Session, actor: Actor, *, order_id: int) -> OrderProgress:
    """Items with their annotations against the redundancy. Raises OrderNotFound."""
    order = load_order(session, actor, order_id)
    items, complete, annotations = session.execute(
        select(
            func.count(Item.id),
            func.count(Item.id).filter(Item.annotation_count >= order.redundancy),
            func.coalesce(func.sum(Item.annotation_count), 0),
        ).where(Item.order_id == order.id)
    ).one()
    rows = session.execute(
        select(Item.external_id, Item.annotation_count, Item.is_gold)
        .where(Item.order_id == order.id)
        .order_by(Item.position)
        .limit(ITEM_ROWS)
    ).all()
    return OrderProgress(
        items=int(items),
        complete_items=int(complete),
        annotations=int(annotations),
        wanted_annotations=int(items) * order.redundancy,
        rows=[ItemProgress(external_id=e, annotations=n, is_gold=g) for e, n, g in rows],
    )


def assigned_annotators(session: Session, actor: Actor, *, order_id: int) -> list[str]:
    """The e-mails of the annotators assigned to the order. Raises OrderNotFound."""
    order = load_order(session, actor, order_id)
    return list(
        session.scalars(
            select(User.email)
            .join(OrderAnnotator, OrderAnnotator.user_id == User.id)
            .where(OrderAnnotator.order_id == order.id)
            .order_by(User.email)
        )
    )


def annotator_ids(session: Session, emails: Sequence[str]) -> list[int]:
    """The ids of the active annotators with these e-mails, in order.

    Raises InvalidInput for none given or an e-mail that is not an active annotator's
    (the refusal repeats what was typed, nothing about who exists)."""
    wanted = [normalize_email(email) for email in emails if email.strip()]
    if not wanted:
        raise InvalidInput("give the e-mail of at least one annotator")
    rows = {
        row.email: row.id
        for row in session.execute(
            select(User.email, User.id)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                User.email.in_(wanted),
                User.is_active.is_(True),
                UserRole.role == Role.ANNOTATOR.value,
            )
        )
    }
    missing = [email for email in wanted if email not in rows]
    if missing:
        raise InvalidInput(f"not an active annotator: {', '.join(missing)}", field="annotators")
    return [rows[email] for email in dict.fromkeys(wanted)]
