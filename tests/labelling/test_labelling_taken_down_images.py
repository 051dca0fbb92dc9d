"""Images an order took from a dataset version stop being served once it is taken down."""

from __future__ import annotations

from datetime import timedelta

import pytest
from datasets_world import DATASHEET, ENERGY, METADATA
from labelling_world import build_world
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.datasets import publishing, service
from credits.db import utcnow
from credits.labelling import orders, queue
from credits.labelling.errors import ImageTakenDown
from credits.labelling.image_links import link_signature
from credits.labelling.items import items_from_dataset_version
from credits.labelling.label_schema import LabelSchema, SchemaKind
from credits.labelling.models import Item
from credits.labelling.schemas import OrderIn
from credits.settings import load_settings
from credits.storage import blob_store_for_url

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(20)
PETS = LabelSchema(kind=SchemaKind.IMAGE_CLASSIFICATION, labels=["cat", "dog"])


def test_a_signed_image_link_answers_410_once_its_dataset_version_is_taken_down(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    store = blob_store_for_url(f"memory://taken-down-{id(session)}")
    world = build_world(session)
    version = service.create_dataset(
        session, project_id=world.project_id, title="Pets", actor=world.pi
    )
    service.update_metadata(session, version_id=version.id, changes=METADATA, actor=world.pi)
    service.update_datasheet(session, version_id=version.id, changes=DATASHEET, actor=world.pi)
    blob = store.put_stream([PNG], max_bytes=1 << 20)
    service.add_file(session, version_id=version.id, name="pets/cat.png", blob=blob, actor=world.pi)
    publishing.publish_version(session, version_id=version.id, actor=world.pi, energy=ENERGY)
    items, source = items_from_dataset_version(
        session, world.pi, version_id=version.id, file_name=None, schema=PETS, store=store
    )
    order = OrderIn(
        project_id=world.project_id,
        vendor_id=world.vendor.id,
        title="Pets",
        instructions="Cat or dog?",
        label_schema=PETS,
        redundancy=2,
    )
    created = orders.create_order(session, order=order, items=items, source=source, actor=world.pi)
    orders.quote_order(session, order_id=created.id, actor=world.pi)
    orders.place_order(session, order_id=created.id, actor=world.pi)
    annotator = world.annotators[0]
    ids = [each.user_id for each in world.annotators if each.user_id is not None]
    orders.assign_annotators(session, order_id=created.id, user_ids=ids, actor=world.pi)
    session.flush()
    settings = load_settings()
    app = create_app(settings, session_factory=joined_session_factory)
    app.extensions[STORE_KEY] = store
    client = app.test_client()
    item = session.scalars(select(Item).where(Item.blob_sha256.is_not(None))).one()
    expires = int((utcnow() + timedelta(days=90)).timestamp())
    signature = link_signature(
        settings.secret_key.get_secret_value(), item_id=item.id, expires=expires
    )
    link = f"/api/v1/labelling/items/{item.id}/image?expires={expires}&sig={signature}"
    assert client.get(link).get_data() == PNG
    served = queue.next_item(session, annotator, order_id=created.id)
    assert served is not None

    publishing.take_down_version(
        session, version_id=version.id, actor=world.ops, reason="licence dispute"
    )
    session.flush()

    gone = client.get(link)
    assert gone.status_code == 410
    assert gone.get_json()["type"].endswith("/labelling-image-taken-down")
    # The annotators' queue serves the order no more, and an open item's image is gone.
    assert queue.next_item(session, world.annotators[1], order_id=created.id) is None
    with pytest.raises(ImageTakenDown):
        queue.assignment_image(session, annotator, assignment_id=served.assignment_id)
