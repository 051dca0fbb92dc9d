"""A small world for labelling tests: a project funded with labelling credits, its
researchers, ops, two annotators and an in-house vendor with a price.
A plain module, imported by name (tests/ has no packages)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta

from datasets_world import person
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants.projects import add_member, create_project
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.labelling import deliveries, orders, vendors
from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind
from credits.labelling.models import Adapter, Item, PriceUnit, SourceKind
from credits.labelling.schemas import (
    ItemIn,
    OrderIn,
    OrderOut,
    OrderSource,
    PriceSheetIn,
    VendorIn,
    VendorOut,
)
from credits.ledger import queries, service
from credits.ledger.models import AccountKind, Currency

SYSTEM = Actor.system("labelling-tests")
CREDIT = 1_000_000
SENTIMENT = LabelSchema(kind=SchemaKind.SINGLE_LABEL, labels=["positive", "negative", "neutral"])
_codes = itertools.count()


@dataclass
class LabellingWorld:
    pi: Actor
    member: Actor
    outsider: Actor
    ops: Actor
    annotators: list[Actor]
    project_id: int
    allocation_id: int
    vendor: VendorOut
    vendor_ids: dict[str, int] = field(default_factory=dict)

    def add_vendor(
        self,
        session: Session,
        name: str,
        *,
        adapter: Adapter = Adapter.INHOUSE,
        unit: PriceUnit = PriceUnit.ITEM,
        price: int = CREDIT,
        fee_basis_points: int = 0,
        kinds: tuple[SchemaKind, ...] = tuple(SchemaKind),
    ) -> VendorOut:
        vendor = vendors.add_vendor(
            session,
            vendor=VendorIn(name=name, adapter=adapter, task_kinds=list(kinds)),
            actor=self.ops,
        )
        vendors.add_price_sheet(
            session,
            vendor_id=vendor.id,
            sheet=PriceSheetIn(
                unit=unit, micro_credits_per_unit=price, fee_basis_points=fee_basis_points
            ),
            actor=self.ops,
        )
        return vendors.get_vendor(session, vendor_id=vendor.id)

    def draft(
        self,
        session: Session,
        *,
        items: int = 4,
        gold: int = 0,
        redundancy: int = 2,
        vendor_id: int | None = None,
        schema: LabelSchema = SENTIMENT,
        **extra: object,
    ) -> OrderOut:
        """A draft of ``items`` texts, the first ``gold`` of them gold items ("positive")."""
        order = OrderIn.model_validate(
            {
                "project_id": self.project_id,
                "vendor_id": vendor_id or self.vendor.id,
                "title": "Sentiment of reviews",
                "instructions": "Label the review's sentiment.",
                "label_schema": schema.model_dump(),
                "redundancy": redundancy,
                **extra,
            }
        )
        texts = [
            ItemIn(
                external_id=f"review-{n}",
                text=f"Review number {n} was {'great' if n % 2 else 'awful'}.",
                gold=AnnotationValue(labels=[schema.labels[0]]) if n < gold else None,
            )
            for n in range(items)
        ]
        return orders.create_order(
            session,
            order=order,
            items=texts,
            source=OrderSource(kind=SourceKind.UPLOAD, name="reviews.csv"),
            actor=self.pi,
        )

    def placed(self, session: Session, **draft: object) -> OrderOut:
        order = self.draft(session, **draft)  # type: ignore[arg-type]
        orders.quote_order(session, order_id=order.id, actor=self.pi)
        return orders.place_order(session, order_id=order.id, actor=self.pi)

    def deliver_all(self, session: Session, order_id: int, label: str = "neutral") -> None:
        """Every item of the order labelled ``label`` by each annotator of the world."""
        for item in session.scalars(select(Item).where(Item.order_id == order_id)).all():
            for annotator in self.annotators:
                deliveries.record_delivery(
                    session,
                    order_id=order_id,
                    item_id=item.id,
                    annotator_ref=f"user:{annotator.user_id}",
                    value=AnnotationValue(labels=[label]),
                    seconds=4.0,
                    delivery_key=f"{item.id}:{annotator.user_id}",
                    actor=self.ops,
                )
        session.flush()

    def available(self, session: Session) -> int:
        return queries.get_account(session, account_id=self.allocation_id).available


def build_world(session: Session, *, label_credits: int = 100 * CREDIT) -> LabellingWorld:
    tag = next(_codes)
    pi = person(session, f"pi{tag}@uni.example", Role.RESEARCHER)
    member = person(session, f"member{tag}@uni.example", Role.RESEARCHER)
    outsider = person(session, f"outsider{tag}@uni.example", Role.RESEARCHER)
    ops = person(session, f"ops{tag}@platform.example", Role.OPS)
    annotators = [
        person(session, f"annotator{n}-{tag}@uni.example", Role.ANNOTATOR) for n in (1, 2)
    ]
    project = create_project(session, title="Reviews", field_of_science="Linguistics", actor=pi)
    assert member.user_id is not None
    add_member(session, project_id=project.id, user_id=member.user_id, role="member", actor=pi)
    allocation = service.open_account(
        session,
        code=f"labelling-test-{tag}",
        currency=Currency.LABEL,
        project_id=project.id,
        expires_at=utcnow() + timedelta(days=30),
        actor=SYSTEM,
    )
    if label_credits:
        service.grant(
            session,
            key=f"fund-labelling-test-{tag}",
            from_account_id=queries.system_account_id(session, AccountKind.SOURCE, Currency.LABEL),
            to_account_id=allocation.id,
            amount=label_credits,
            actor=SYSTEM,
        )
    world = LabellingWorld(
        pi,
        member,
        outsider,
        ops,
        annotators,
        project.id,
        allocation.id,
        vendor=None,  # type: ignore[arg-type]
    )
    world.vendor = world.add_vendor(session, f"In-house {tag}")
    return world
