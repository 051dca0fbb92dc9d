"""Labelling for the API-wide tests (the access matrix, the bad-input suite, schemathesis,
list/get parity): vendors with prices, project A funded with labelling credits, and
researcher A's orders in each state an action of the API starts from.

:func:`with_labelling` adds them to a world of tests/datasets_api_world.py. A plain
module, imported by name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta

from api_world import RESEARCHER_A, SYSTEM
from datasets_api_world import DatasetsWorld
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.labelling import deliveries, orders, vendors
from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind
from credits.labelling.models import Adapter, Item, PriceUnit, SourceKind
from credits.labelling.schemas import ItemIn, OrderIn, OrderSource, PriceSheetIn, VendorIn
from credits.ledger import service as ledger
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import system_account_id

CREDIT = 1_000_000
SCHEMA = LabelSchema(kind=SchemaKind.SINGLE_LABEL, labels=["positive", "negative"])
SYSTEM_OPS = Actor(label="tests:labelling-ops", roles=frozenset({Role.OPS}))


@dataclass(frozen=True)
class LabellingApiWorld(DatasetsWorld):
    """The world with labelling: every order is project A's, made by researcher A."""

    lb_vendor: int = 0  # in-house, 1 credit per item
    lb_invoice_vendor: int = 0  # invoice, 1 credit per item
    lb_annotator: int = 0  # a user holding the annotator role
    lb_draft: int = 0  # a draft of two items
    lb_quoted: int = 0  # quoted, ready to place
    lb_delivered: int = 0  # in-house, placed and fully delivered
    lb_disputed: int = 0  # delivered, then disputed
    lb_invoice: int = 0  # an invoice vendor's order, placed
    lb_item: int = 0  # an item of the delivered order


def order_body(world: LabellingApiWorld) -> dict[str, object]:
    """A new order of project A from the in-house vendor, as the API takes it."""
    return {
        "order": {
            "project_id": world.project_a,
            "vendor_id": world.lb_vendor,
            "title": "Sentiment",
            "instructions": "Label each review.",
            "label_schema": SCHEMA.model_dump(mode="json"),
            "redundancy": 1,
        },
        "items": [
            {"external_id": "r1", "text": "Great.", "gold": {"labels": ["positive"]}},
            {"external_id": "r2", "text": "Awful."},
        ],
    }


def priced_vendor(session: Session, name: str, adapter: Adapter) -> int:
    vendor = vendors.add_vendor(
        session,
        vendor=VendorIn(name=name, adapter=adapter, task_kinds=list(SchemaKind)),
        actor=SYSTEM_OPS,
    )
    sheet = PriceSheetIn(unit=PriceUnit.ITEM, micro_credits_per_unit=CREDIT)
    vendors.add_price_sheet(session, vendor_id=vendor.id, sheet=sheet, actor=SYSTEM_OPS)
    return vendor.id


def _fund(session: Session, project_id: int) -> None:
    account = ledger.open_account(
        session,
        code=f"world-labelling-{project_id}",
        currency=Currency.LABEL,
        project_id=project_id,
        expires_at=utcnow() + timedelta(days=30),
        actor=SYSTEM,
    )
    ledger.grant(
        session,
        key=f"world-labelling-fund-{project_id}",
        from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.LABEL),
        to_account_id=account.id,
        amount=100 * CREDIT,
        actor=SYSTEM,
    )


def _draft(session: Session, actor: Actor, project_id: int, vendor_id: int, items: int) -> int:
    order = OrderIn(
        project_id=project_id, vendor_id=vendor_id, title="Sentiment", label_schema=SCHEMA
    )
    texts = [ItemIn(external_id=f"r{n}", text=f"Review {n}.") for n in range(items)]
    source = OrderSource(kind=SourceKind.UPLOAD, name="reviews.csv")
    return orders.create_order(session, order=order, items=texts, source=source, actor=actor).id


def _placed(session: Session, actor: Actor, project_id: int, vendor_id: int) -> int:
    order_id = _draft(session, actor, project_id, vendor_id, items=1)
    orders.quote_order(session, order_id=order_id, actor=actor)
    orders.place_order(session, order_id=order_id, actor=actor)
    return order_id


def _delivered(session: Session, actor: Actor, project_id: int, vendor_id: int) -> int:
    order_id = _placed(session, actor, project_id, vendor_id)
    item_id = session.scalars(select(Item.id).where(Item.order_id == order_id)).one()
    deliveries.record_delivery(
        session,
        order_id=order_id,
        item_id=item_id,
        annotator_ref="user:world",
        value=AnnotationValue(labels=["positive"]),
        seconds=3.0,
        delivery_key=f"world-{order_id}",
        actor=SYSTEM_OPS,
    )
    return order_id


def with_labelling(session: Session, world: DatasetsWorld) -> LabellingApiWorld:
    """``world`` and researcher A's labelling orders, project A funded to pay for them."""
    actor = actor_for_email(session, f"{RESEARCHER_A}@example.org")
    project = world.project_a
    create_user(
        session,
        email="annotator@example.org",
        name="Annotator",
        roles=[Role.ANNOTATOR],
        institution="Uni",
        actor=SYSTEM,
    )
    annotator = actor_for_email(session, "annotator@example.org").user_id
    _fund(session, project)
    in_house = priced_vendor(session, "World in-house", Adapter.INHOUSE)
    invoice = priced_vendor(session, "World invoices", Adapter.INVOICE)
    quoted = _draft(session, actor, project, in_house, items=1)
    orders.quote_order(session, order_id=quoted, actor=actor)
    disputed = _delivered(session, actor, project, in_house)
    orders.dispute_order(session, order_id=disputed, actor=actor, reason="wrong labels")
    values = {field.name: getattr(world, field.name) for field in fields(world)}
    delivered = _delivered(session, actor, project, in_house)
    built = LabellingApiWorld(
        **values,
        lb_vendor=in_house,
        lb_invoice_vendor=invoice,
        lb_annotator=annotator or 0,
        lb_draft=_draft(session, actor, project, in_house, items=2),
        lb_quoted=quoted,
        lb_delivered=delivered,
        lb_disputed=disputed,
        lb_invoice=_placed(session, actor, project, invoice),
        lb_item=session.scalars(select(Item.id).where(Item.order_id == delivered)).one(),
    )
    session.flush()
    return built
