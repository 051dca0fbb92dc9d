"""The annotator's pages through Flask's test client: their queues, an item with a key per
label, submissions that record a delivery and its time, skips, images, refusals."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from labelling_world import LabellingWorld, build_world
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.db import utcnow
from credits.identity.actor import Actor
from credits.labelling import orders
from credits.labelling.label_schema import LabelSchema, SchemaKind
from credits.labelling.models import Annotation, Assignment, SourceKind
from credits.labelling.schemas import ItemIn, OrderIn, OrderOut, OrderSource
from credits.settings import load_settings
from credits.storage import blob_store_for_url

CSRF = "annotate-csrf-token"
PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    app = create_app(load_settings(), session_factory=joined_session_factory)
    app.extensions[STORE_KEY] = blob_store_for_url(f"memory://annotate-{uuid.uuid4().hex}")
    return app


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    return build_world(session)


def _client(app: Flask, who: Actor) -> FlaskClient:
    client = app.test_client()
    assert who.user_id is not None
    sign_in_as(client, who.user_id, csrf_token=CSRF)
    return client


def _assigned(session: Session, world: LabellingWorld, order: OrderOut) -> OrderOut:
    ids = [a.user_id for a in world.annotators if a.user_id is not None]
    return orders.assign_annotators(session, order_id=order.id, user_ids=ids, actor=world.pi)


def _order(session: Session, world: LabellingWorld, **draft: object) -> OrderOut:
    return _assigned(session, world, world.placed(session, **draft))


def _open(session: Session, annotator: Actor) -> Assignment:
    session.expire_all()  # the app's requests ran in sessions of their own
    return session.scalars(
        select(Assignment).where(
            Assignment.user_id == annotator.user_id, Assignment.status == "open"
        )
    ).one()


def _served_a_minute_ago(session: Session, annotator: Actor) -> Assignment:
    assignment = _open(session, annotator)
    assignment.served_at = utcnow() - timedelta(minutes=1)
    session.flush()
    return assignment


def test_the_queue_page_lists_assigned_orders_with_what_is_left(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=3, redundancy=1)
    page = _client(app, world.annotators[0]).get("/annotate")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'data-order-id="{order.id}" data-remaining="3"' in html
    assert f'href="/annotate/{order.id}"' in html
    assert 'href="/annotate"' in html  # the navigation names the annotator's page
    assert _client(app, world.pi).get("/annotate").status_code == 404


def test_an_item_page_has_a_key_per_label_and_says_nothing_of_gold_or_credits(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=4, gold=4 - 1, redundancy=1)
    page = _client(app, world.annotators[0]).get(f"/annotate/{order.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for key, label in enumerate(("positive", "negative", "neutral"), start=1):
        assert re.search(
            rf'<button type="submit" name="label" value="{label}" data-annotate-key="{key}"', html
        )
    assert "static/annotate.js" in html and 'id="annotate-seconds"' in html
    assert "Label the review" in html  # the order's instructions
    assert 'id="annotate-skip"' in html and "<kbd>S</kbd>" in html
    main = html.split('<main id="main">', 1)[1].lower()
    assert "gold" not in main and "credit" not in main
    assert "<script>" not in html  # the page's script is a static file (CSP: 'self')


def test_submitting_a_label_records_a_delivery_and_the_time_spent(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    annotator = world.annotators[0]
    client = _client(app, annotator)
    client.get(f"/annotate/{order.id}")
    assignment = _served_a_minute_ago(session, annotator)
    answer = client.post(
        f"/annotate/{order.id}/assignments/{assignment.id}",
        data={"csrf_token": CSRF, "label": "negative", "seconds": "4.25"},
    )
    assert answer.status_code == 302 and answer.headers["Location"] == f"/annotate/{order.id}"
    annotation = session.scalars(select(Annotation).where(Annotation.order_id == order.id)).one()
    assert annotation.value["labels"] == ["negative"]
    assert annotation.seconds == 4.25
    assert annotation.annotator_ref == f"user:{annotator.user_id}"
    session.expire_all()
    assert session.get_one(Assignment, assignment.id).status == "done"


def test_a_page_that_measured_nothing_records_the_time_since_the_item_was_served(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    annotator = world.annotators[0]
    client = _client(app, annotator)
    client.get(f"/annotate/{order.id}")
    assignment = _served_a_minute_ago(session, annotator)
    client.post(
        f"/annotate/{order.id}/assignments/{assignment.id}",
        data={"csrf_token": CSRF, "label": "positive", "seconds": ""},
    )
    annotation = session.scalars(select(Annotation).where(Annotation.order_id == order.id)).one()
    assert annotation.seconds is not None and 59 <= annotation.seconds <= 120


def test_an_answer_without_a_label_is_a_form_error_and_records_nothing(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    client = _client(app, world.annotators[0])
    client.get(f"/annotate/{order.id}")
    assignment = _open(session, world.annotators[0])
    answer = client.post(
        f"/annotate/{order.id}/assignments/{assignment.id}",
        data={"csrf_token": CSRF, "seconds": "2"},
    )
    assert answer.status_code == 422
    assert "Nothing was recorded" in answer.get_data(as_text=True)
    assert f'data-assignment-id="{assignment.id}"' in answer.get_data(as_text=True)
    assert session.scalar(select(Annotation.id).where(Annotation.order_id == order.id)) is None


def test_multi_label_items_toggle_labels_and_submit_them_together(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    schema = LabelSchema(kind=SchemaKind.MULTI_LABEL, labels=["funny", "sad", "long"])
    order = _order(session, world, items=2, redundancy=1, schema=schema)
    client = _client(app, world.annotators[0])
    html = client.get(f"/annotate/{order.id}").get_data(as_text=True)
    assert 'type="checkbox" name="label" value="sad" data-annotate-key="2"' in html
    assert 'id="annotate-submit"' in html and 'data-annotate-kind="multi_label"' in html
    assignment = _open(session, world.annotators[0])
    client.post(
        f"/annotate/{order.id}/assignments/{assignment.id}",
        data={"csrf_token": CSRF, "label": ["long", "funny"], "seconds": "1"},
    )
    annotation = session.scalars(select(Annotation).where(Annotation.order_id == order.id)).one()
    assert annotation.value["labels"] == ["funny", "long"]


def test_text_span_items_submit_the_marked_spans(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    schema = LabelSchema(kind=SchemaKind.TEXT_SPANS, labels=["PER", "ORG"])
    order = _order(session, world, items=2, redundancy=1, schema=schema)
    client = _client(app, world.annotators[0])
    html = client.get(f"/annotate/{order.id}").get_data(as_text=True)
    assert 'id="annotate-text"' in html and 'id="annotate-spans"' in html
    assert '<button type="button" data-annotate-key="1" data-annotate-label="PER">' in html
    assignment = _open(session, world.annotators[0])
    spans = [{"start": 0, "end": 6, "label": "PER"}]
    client.post(
        f"/annotate/{order.id}/assignments/{assignment.id}",
        data={"csrf_token": CSRF, "spans": json.dumps(spans), "seconds": "3"},
    )
    annotation = session.scalars(select(Annotation).where(Annotation.order_id == order.id)).one()
    assert annotation.value["spans"] == spans


def test_skipping_serves_another_item_and_never_the_skipped_one(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    client = _client(app, world.annotators[0])
    client.get(f"/annotate/{order.id}")
    skipped = _open(session, world.annotators[0])
    answer = client.post(
        f"/annotate/{order.id}/assignments/{skipped.id}/skip", data={"csrf_token": CSRF}
    )
    assert answer.status_code == 302
    html = client.get(f"/annotate/{order.id}").get_data(as_text=True)
    served = _open(session, world.annotators[0])
    assert served.item_id != skipped.item_id
    assert f'data-assignment-id="{served.id}"' in html


def test_someone_elses_assignment_is_a_404(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=2)
    one, two = world.annotators
    _client(app, one).get(f"/annotate/{order.id}")
    theirs = _open(session, one)
    other = _client(app, two)
    answer = other.post(
        f"/annotate/{order.id}/assignments/{theirs.id}",
        data={"csrf_token": CSRF, "label": "positive", "seconds": "1"},
    )
    assert answer.status_code == 404
    skip = other.post(
        f"/annotate/{order.id}/assignments/{theirs.id}/skip", data={"csrf_token": CSRF}
    )
    assert skip.status_code == 404
    assert session.scalar(select(Annotation.id).where(Annotation.order_id == order.id)) is None


def test_an_order_not_assigned_to_the_annotator_is_a_404(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order = world.placed(session, items=2, redundancy=1)
    assert _client(app, world.annotators[0]).get(f"/annotate/{order.id}").status_code == 404


def test_a_finished_queue_says_so(app: Flask, session: Session, world: LabellingWorld) -> None:
    order = _order(session, world, items=1, redundancy=1)
    client = _client(app, world.annotators[0])
    client.get(f"/annotate/{order.id}")
    assignment = _open(session, world.annotators[0])
    client.post(
        f"/annotate/{order.id}/assignments/{assignment.id}",
        data={"csrf_token": CSRF, "label": "positive", "seconds": "1"},
    )
    html = client.get(f"/annotate/{order.id}").get_data(as_text=True)
    assert 'id="annotate-done" data-status="delivered"' in html


def _image_order(
    app: Flask, session: Session, world: LabellingWorld, data: bytes, media_type: str
) -> int:
    """A placed image order of one item stored as ``media_type``; its order id."""
    blob = app.extensions[STORE_KEY].put_stream([data], max_bytes=len(data))
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    schema = LabelSchema(kind=SchemaKind.IMAGE_CLASSIFICATION, labels=["cat", "dog"])
    draft = orders.create_order(
        session,
        order=OrderIn(
            project_id=world.project_id,
            vendor_id=world.vendor.id,
            title="Pets",
            label_schema=schema,
            redundancy=1,
        ),
        items=[ItemIn(external_id="p1", blob_sha256=blob.sha256, media_type=media_type)],
        source=OrderSource(kind=SourceKind.UPLOAD, name="pets.zip"),
        actor=world.pi,
    )
    orders.quote_order(session, order_id=draft.id, actor=world.pi)
    return _assigned(
        session, world, orders.place_order(session, order_id=draft.id, actor=world.pi)
    ).id


def test_an_image_item_is_served_from_the_blob_store_to_its_annotator_only(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order_id = _image_order(app, session, world, PNG, "image/png")
    client = _client(app, world.annotators[0])
    html = client.get(f"/annotate/{order_id}").get_data(as_text=True)
    assignment = _open(session, world.annotators[0])
    assert f'src="/annotate/assignments/{assignment.id}/image"' in html
    image = client.get(f"/annotate/assignments/{assignment.id}/image")
    assert (image.status_code, image.mimetype, image.get_data()) == (200, "image/png", PNG)
    other = _client(app, world.annotators[1])
    assert other.get(f"/annotate/assignments/{assignment.id}/image").status_code == 404


def test_an_item_stored_with_a_type_that_is_no_image_is_served_as_a_download(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    """Orders made while inline items could name any blob and type may hold HTML; the
    portal's own origin must not render it."""
    page = b"<script>alert(1)</script>"
    order_id = _image_order(app, session, world, page, "text/html")
    client = _client(app, world.annotators[0])
    client.get(f"/annotate/{order_id}")
    assignment = _open(session, world.annotators[0])

    served = client.get(f"/annotate/assignments/{assignment.id}/image")

    assert (served.status_code, served.mimetype) == (200, "application/octet-stream")
    assert served.headers["X-Content-Type-Options"] == "nosniff"
