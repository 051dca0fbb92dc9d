"""An accepted order becomes a draft dataset version with its annotations and provenance."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import jsonschema
import pytest
from datasets_world import CSV, DATASHEET, ENERGY, METADATA, datacite_schema, person
from labelling_world import CREDIT, LabellingWorld, build_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.datasets import exports, publishing, queries, service
from credits.datasets.models import (
    Dataset,
    DatasetDoi,
    DatasetProvenance,
    DatasetVersion,
    ProvenanceKind,
)
from credits.datasets.schemas import VersionOut
from credits.db import utcnow
from credits.grants import awards, funding, programs, proposals
from credits.identity.models import Role
from credits.labelling import deliveries, orders
from credits.labelling.delivery import annotations_document, deliver_as_dataset, majority
from credits.labelling.label_schema import AnnotationValue
from credits.labelling.models import Annotation, Item, Order, Resolution
from credits.labelling.schemas import OrderOut
from credits.ledger.models import Currency
from credits.settings import load_settings
from credits.storage import BlobStore, blob_store_for_url, blob_store_from_settings

BASE = "https://credits.example"


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    return build_world(session)


def _items(session: Session, order_id: int) -> list[Item]:
    return list(
        session.scalars(select(Item).where(Item.order_id == order_id).order_by(Item.position))
    )


def _label(
    session: Session,
    world: LabellingWorld,
    order: OrderOut,
    answers: list[tuple[str, str]],
) -> None:
    """Item n gets the n-th pair of answers, from user:1 and user:2 (4 and 8 seconds)."""
    for item, pair in zip(_items(session, order.id), answers, strict=True):
        for annotator, label in enumerate(pair, start=1):
            deliveries.record_delivery(
                session,
                order_id=order.id,
                item_id=item.id,
                annotator_ref=f"user:{annotator}",
                value=AnnotationValue(labels=[label]),
                seconds=4.0 * annotator,
                delivery_key=f"{item.id}:{annotator}",
                actor=world.ops,
            )


def _file_lines(version_id: int, session: Session, world: LabellingWorld) -> list[dict[str, Any]]:
    version = queries.get_version(session, world.pi, version_id)
    [file] = [f for f in version.files if f.name.startswith("labels-order-")]
    store = blob_store_from_settings(load_settings())
    data = b"".join(store.open_range(file.sha256))
    return [json.loads(line) for line in data.decode().splitlines()]


def test_accepting_creates_a_draft_dataset_with_one_json_line_per_item(
    session: Session, world: LabellingWorld
) -> None:
    order = world.placed(session, items=3, gold=1, redundancy=2)
    _label(
        session,
        world,
        order,
        [("positive", "positive"), ("negative", "neutral"), ("neutral", "neutral")],
    )
    accepted = orders.accept_order(session, order_id=order.id, actor=world.pi)

    assert accepted.status == "settled"
    assert accepted.delivered_version_id is not None
    version = queries.get_version(session, world.pi, accepted.delivered_version_id)
    assert (version.state.value, version.title, version.number) == (
        "draft",
        "Sentiment of reviews",
        1,
    )
    assert version.project_id == world.project_id
    [file] = version.files
    assert (file.name, file.media_type) == (
        f"labels-order-{order.id}.jsonl",
        "application/jsonlines",
    )
    one, two = (deliveries.pseudonym(order.id, f"user:{n}") for n in (1, 2))
    assert _file_lines(version.id, session, world) == [
        {
            "item_id": "review-0",
            "labels": ["positive"],
            "annotations": [
                {"annotator": one, "labels": ["positive"], "seconds": 4.0},
                {"annotator": two, "labels": ["positive"], "seconds": 8.0},
            ],
            "agreement": 1.0,
            "gold": True,
        },
        {
            "item_id": "review-1",
            "labels": None,
            "annotations": [
                {"annotator": one, "labels": ["negative"], "seconds": 4.0},
                {"annotator": two, "labels": ["neutral"], "seconds": 8.0},
            ],
            "agreement": 0.5,
            "gold": False,
        },
        {
            "item_id": "review-2",
            "labels": ["neutral"],
            "annotations": [
                {"annotator": one, "labels": ["neutral"], "seconds": 4.0},
                {"annotator": two, "labels": ["neutral"], "seconds": 8.0},
            ],
            "agreement": 1.0,
            "gold": False,
        },
    ]


def test_the_delivered_version_records_the_order_and_its_credits_as_provenance(
    session: Session, world: LabellingWorld
) -> None:
    order = world.placed(session, items=2, redundancy=2)
    _label(session, world, order, [("positive", "positive"), ("negative", "negative")])
    accepted = orders.accept_order(session, order_id=order.id, actor=world.pi)
    assert accepted.delivered_version_id is not None

    [row] = session.scalars(
        select(DatasetProvenance).where(
            DatasetProvenance.version_id == accepted.delivered_version_id
        )
    ).all()
    assert row.kind == ProvenanceKind.LABELLING_ORDER.value
    assert row.labelling_order_id == order.id
    assert row.charged_micro == accepted.captured_micro == 4 * CREDIT
    assert row.program_id is None  # the test world funds its project without an award

    version = queries.get_version(session, world.pi, accepted.delivered_version_id)
    [line] = version.provenance.lines
    assert line.labelling_summary() == (
        f"Labelling order {order.id}: 4 labelling credits, vendor {world.vendor.name},"
        " 4 annotations"
    )
    assert version.provenance.labelling_charged_micro == 4 * CREDIT
    assert version.provenance.charged_micro == 0
    assert version.provenance.sentence() == (
        f"labelled in labelling order {order.id} (4 labelling credits, vendor"
        f" {world.vendor.name}, 4 annotations)"
    )


def test_a_refunded_dispute_delivers_with_the_credits_net_of_the_refund(
    session: Session, world: LabellingWorld
) -> None:
    resolved = _resolved(session, world, Resolution.REFUNDED, refund_micro=CREDIT // 2)
    assert resolved.delivered_version_id is not None
    charged = session.scalar(
        select(DatasetProvenance.charged_micro).where(
            DatasetProvenance.version_id == resolved.delivered_version_id
        )
    )
    assert charged == 2 * CREDIT - CREDIT // 2
    lines = _file_lines(resolved.delivered_version_id, session, world)
    assert [line["item_id"] for line in lines] == ["review-0", "review-1"]


def _label_one_each(session: Session, world: LabellingWorld, order: OrderOut) -> None:
    for item in _items(session, order.id):
        deliveries.record_delivery(
            session,
            order_id=order.id,
            item_id=item.id,
            annotator_ref="user:1",
            value=AnnotationValue(labels=["positive"]),
            seconds=None,
            delivery_key=f"{item.id}",
            actor=world.ops,
        )


def _labelled(session: Session, world: LabellingWorld, **draft: object) -> OrderOut:
    """A placed order of two items, each labelled 'positive' by one annotator."""
    order = world.placed(session, items=2, redundancy=1, **draft)
    _label_one_each(session, world, order)
    return order


def _accepted(session: Session, world: LabellingWorld, **draft: object) -> tuple[OrderOut, int]:
    """A labelled order, accepted: the order and the version it was delivered into."""
    order = _labelled(session, world, **draft)
    accepted = orders.accept_order(session, order_id=order.id, actor=world.pi)
    assert accepted.delivered_version_id is not None
    return order, accepted.delivered_version_id


def _resolved(
    session: Session, world: LabellingWorld, resolution: Resolution, refund_micro: int = 0
) -> OrderOut:
    order = _labelled(session, world)
    orders.dispute_order(session, order_id=order.id, actor=world.pi, reason="Sloppy labels")
    return orders.resolve_dispute(
        session,
        order_id=order.id,
        resolution=resolution,
        actor=world.ops,
        note=f"Resolved: {resolution.value}",
        refund_micro=refund_micro,
    )


def _publish_delivery(session: Session, world: LabellingWorld, version_id: int) -> VersionOut:
    service.update_metadata(session, version_id=version_id, changes=METADATA, actor=world.pi)
    service.update_datasheet(session, version_id=version_id, changes=DATASHEET, actor=world.pi)
    return publishing.publish_version(session, version_id=version_id, actor=world.pi, energy=ENERGY)


def test_an_accepted_dispute_delivers_and_a_cancelled_order_delivers_nothing(
    session: Session, world: LabellingWorld
) -> None:
    assert _resolved(session, world, Resolution.ACCEPTED).delivered_version_id is not None
    before = session.scalar(select(func.count(Dataset.id)))

    cancelled = world.placed(session, items=2, redundancy=1)
    out = orders.cancel_order(session, order_id=cancelled.id, actor=world.pi)
    assert out.delivered_version_id is None
    ended = _resolved(session, world, Resolution.CANCELLED)
    assert ended.status == "cancelled" and ended.delivered_version_id is None
    assert session.scalar(select(func.count(Dataset.id))) == before


def _published_dataset(session: Session, world: LabellingWorld, store: BlobStore) -> int:
    draft = service.create_dataset(
        session, project_id=world.project_id, title="Reviews", actor=world.pi
    )
    service.update_metadata(session, version_id=draft.id, changes=METADATA, actor=world.pi)
    service.update_datasheet(session, version_id=draft.id, changes=DATASHEET, actor=world.pi)
    blob = store.put_stream([CSV], max_bytes=1024)
    service.add_file(session, version_id=draft.id, name="reviews.csv", blob=blob, actor=world.pi)
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    return draft.dataset_id


def test_accepting_into_an_existing_dataset_makes_its_next_version(
    session: Session, world: LabellingWorld
) -> None:
    dataset_id = _published_dataset(session, world, blob_store_from_settings(load_settings()))
    order, version_id = _accepted(session, world, target_dataset_id=dataset_id)

    version = queries.get_version(session, world.pi, version_id)
    assert (version.dataset_id, version.number, version.state.value) == (dataset_id, 2, "draft")
    assert [f.name for f in version.files] == [f"labels-order-{order.id}.jsonl", "reviews.csv"]
    assert version.title == METADATA["title"]
    assert [line.kind for line in version.provenance.lines] == ["labelling_order"]


def test_a_dataset_with_an_open_draft_takes_the_delivery_into_that_draft(
    session: Session, world: LabellingWorld
) -> None:
    draft = service.create_dataset(
        session, project_id=world.project_id, title="Work in progress", actor=world.pi
    )
    _, version_id = _accepted(session, world, target_dataset_id=draft.dataset_id)
    assert version_id == draft.id


def test_the_store_is_injectable_and_the_file_is_the_document(
    session: Session, world: LabellingWorld
) -> None:
    order = _labelled(session, world)
    row = session.get_one(Order, order.id)
    store = blob_store_for_url(f"memory://labelling-delivery-{id(session)}")
    version_id = deliver_as_dataset(session, order=row, actor=world.pi, now=utcnow(), store=store)
    [file] = queries.get_version(session, world.pi, version_id).files
    assert b"".join(store.open_range(file.sha256)) == annotations_document(session, row)


def test_majority_is_the_most_common_answer_and_agreement_its_share() -> None:
    assert majority([["a"], ["a"], ["b"]]) == (["a"], 0.666667)
    assert majority([["a"], ["b"]]) == (None, 0.5)
    assert majority([["a"]]) == (["a"], None)
    assert majority([]) == (None, None)


# Funding: an order paid from an award's allocation names the award's program.


def _award_labelling_credits(session: Session, world: LabellingWorld) -> int:
    funder = person(session, f"funder-{world.project_id}@council.example", Role.FUNDER)
    now = utcnow()
    program = programs.create_program(
        session,
        name="Annotated Corpora",
        description="Labelling.",
        opens_at=now - timedelta(days=1),
        closes_at=now + timedelta(days=60),
        criteria=[{"key": "merit", "label": "Merit"}],
        min_reviewers=1,
        min_mean_score=300,
        actor=funder,
    )
    programs.open_program(session, program_id=program.id, actor=funder)
    funding.fund_program(
        session,
        program_id=program.id,
        currency=Currency.LABEL,
        amount_micro=1000 * CREDIT,
        key=f"labelling-fund-{program.id}",
        actor=funder,
        reason="FY27",
    )
    proposal = proposals.create_proposal(
        session,
        program_id=program.id,
        project_id=world.project_id,
        kind="new",
        actor=world.pi,
        title="Sentiment corpus",
        abstract="Reviews.",
        justification="Labels.",
        requested={"label": 50 * CREDIT},
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(days=30),
    )
    proposals.submit_proposal(session, proposal_id=proposal.id, actor=world.pi)
    awards.award_proposal(
        session,
        proposal_id=proposal.id,
        actor=funder,
        key=f"labelling-award-{proposal.id}",
        amounts={"label": 50 * CREDIT},
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(days=30),
        override_reason="decided without reviews in a test",
    )
    return program.id


def test_an_order_paid_by_an_award_names_its_program_in_the_datacite_export(
    session: Session,
) -> None:
    world = build_world(session, label_credits=0)
    program_id = _award_labelling_credits(session, world)
    order, version_id = _accepted(session, world)
    _publish_delivery(session, world, version_id)
    version = queries.get_version(session, None, version_id)

    datacite = exports.datacite(version, base_url=BASE, publisher="P", funder_name="Council")
    jsonschema.Draft201909Validator(datacite_schema()).validate(datacite)
    assert datacite["fundingReferences"] == [
        {
            "funderName": "Council",
            "awardNumber": f"program-{program_id}",
            "awardTitle": "Annotated Corpora",
        }
    ]
    summary = (
        f"labelled in labelling order {order.id} (2 labelling credits, vendor"
        f" {world.vendor.name}, 2 annotations) from program Annotated Corpora"
    )
    assert version.provenance.sentence() == summary
    methods = [d for d in datacite["descriptions"] if d["descriptionType"] == "Methods"]
    assert methods == [
        {"description": f"This version was {summary}.", "descriptionType": "Methods"}
    ]
    croissant = exports.croissant(version, base_url=BASE, publisher="P", heads={})
    [activity] = croissant["prov:wasGeneratedBy"]
    assert activity["name"] == f"Labelling order {order.id}"
    assert croissant["funding"][0]["name"] == "Annotated Corpora"
    assert f"## Provenance\n\nThis version was {summary}." in exports.datasheet_markdown(
        version, base_url=BASE, publisher="P"
    )


def test_the_landing_page_and_the_api_show_the_labelling_order_behind_a_version(
    session: Session, joined_session_factory: sessionmaker[Session], world: LabellingWorld
) -> None:
    order, version_id = _accepted(session, world)
    published = _publish_delivery(session, world, version_id)
    client = create_app(load_settings(), session_factory=joined_session_factory).test_client()

    html = client.get(f"/datasets/versions/{published.public_id}").get_data(as_text=True)
    summary = (
        f"Labelling order {order.id}: 2 labelling credits, vendor {world.vendor.name},"
        " 2 annotations"
    )
    assert summary in html
    assert f"Labelled in labelling order {order.id} (2 labelling credits" in html
    document = client.get(f"/api/v1/datasets/versions/{version_id}").get_json()
    [line] = document["provenance"]["lines"]
    assert line["kind"] == "labelling_order"
    assert line["labelling_order_id"] == order.id
    assert line["charged_micro"] == 2 * CREDIT
    assert line["labelling"] == {
        "order_id": order.id,
        "title": "Sentiment of reviews",
        "vendor": world.vendor.name,
        "annotations": 2,
    }
    assert document["provenance"]["labelling_charged_micro"] == 2 * CREDIT


def test_an_annotator_keeps_one_pseudonym_in_an_order_across_a_key_rotation(
    session: Session, world: LabellingWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = world.placed(session, items=2, gold=0, redundancy=2)
    first_item, second_item = _items(session, order.id)

    def deliver(item: Item, annotator: str) -> str:
        delivered = deliveries.record_delivery(
            session,
            order_id=order.id,
            item_id=item.id,
            annotator_ref=annotator,
            value=AnnotationValue(labels=["neutral"]),
            seconds=3.0,
            delivery_key=f"{item.id}:{annotator}",
            actor=world.ops,
        )
        row = session.get(Annotation, delivered.delivery_id)
        assert row is not None
        return row.annotator_pseudonym

    before = deliver(first_item, "user:1")
    monkeypatch.setenv("CREDITS_SECRET_KEY", "a-rotated-secret-key-0123456789abcdef")
    after = deliver(second_item, "user:1")
    newcomer = deliver(first_item, "user:2")

    assert after == before
    # The rotation did change what a new annotator's pseudonym derives from.
    assert deliveries.pseudonym(order.id, "user:1") != before
    assert newcomer == deliveries.pseudonym(order.id, "user:2")


# DOIs: a delivered draft is saved as the API's and the CLI's drafts are.

DATACITE = {
    "CREDITS_DATACITE_URL": "https://api.test.datacite.org",
    "CREDITS_DATACITE_REPOSITORY_ID": "CREDITS.TEST",
    "CREDITS_DATACITE_PASSWORD": "secret",
    "CREDITS_DATACITE_PREFIX": "10.5072",
    "CREDITS_PUBLIC_URL": BASE,
}


@pytest.mark.parametrize("into", ["a new dataset", "the next version of a dataset"])
def test_with_dois_on_the_delivered_draft_has_its_doi_due_for_reservation(
    session: Session, world: LabellingWorld, monkeypatch: pytest.MonkeyPatch, into: str
) -> None:
    target = (
        None
        if into == "a new dataset"
        else _published_dataset(session, world, blob_store_from_settings(load_settings()))
    )
    for name, value in DATACITE.items():
        monkeypatch.setenv(name, value)

    _, version_id = _accepted(session, world, target_dataset_id=target)

    record = session.get_one(DatasetDoi, version_id)
    version = session.get_one(DatasetVersion, version_id)
    assert (record.doi, record.pending) == (f"10.5072/{version.public_id}", True)
