"""Labelling orders in the portal: the new-order form refuses each bad field on the field
and creates nothing; the order page's actions move the state; too few credits shows
what was required and available; an outsider gets 404; ops manage vendors, prices
and disputes."""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from typing import Any

import pytest
from api_world import world_executor
from flask import Flask
from flask.testing import FlaskClient
from labelling_world import CREDIT, LabellingWorld, build_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.grants.projects import create_project
from credits.identity.actor import Actor
from credits.identity.models import User
from credits.labelling import deliveries
from credits.labelling.label_schema import AnnotationValue, SchemaKind
from credits.labelling.models import Item, Order, PriceSheet, PriceUnit, Vendor
from credits.labelling.quality import order_quality
from credits.labelling.queries import get_order
from credits.settings import load_settings
from credits.storage import blob_store_for_url

CSRF = "labelling-csrf"
CSV = b"id,text\nr1,Great film.\nr2,Dull film.\nr3,Fine.\n"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    app = create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )
    app.extensions[STORE_KEY] = blob_store_for_url(f"memory://labelling-{uuid.uuid4().hex}")
    return app


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    return build_world(session)


def _client(app: Flask, who: Actor) -> FlaskClient:
    client = app.test_client()
    assert who.user_id is not None
    sign_in_as(client, who.user_id, csrf_token=CSRF)
    return client


def _form(world: LabellingWorld, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": CSRF,
        "project_id": str(world.project_id),
        "vendor_id": str(world.vendor.id),
        "title": "Sentiment of reviews",
        "instructions": "Label the review's sentiment.",
        "schema_kind": "single_label",
        "labels": "positive\nnegative\n",
        "redundancy": "2",
        "estimate": "",
        "source": "upload",
        "target_dataset_id": "",
        "items_file": (io.BytesIO(CSV), "reviews.csv"),
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


def _orders(session: Session) -> int:
    return session.scalar(select(func.count(Order.id))) or 0


def _post_order(client: FlaskClient, form: dict[str, Any]) -> Any:
    return client.post("/labelling/orders/new", data=form, content_type="multipart/form-data")


def _field_error(html: str, name: str) -> str:
    found = re.search(rf'<p class="error" id="e-{name}">([^<]*)</p>', html)
    assert found, f"no error on the field {name!r}"
    return found[1]


def test_the_form_shows_each_active_vendor_with_its_price_and_task_kinds(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    world.add_vendor(session, "Per label", unit=PriceUnit.LABEL, price=50_000)
    page = _client(app, world.pi).get("/labelling/orders/new").get_data(as_text=True)
    assert "In-house" in page
    assert "0.05 credits per label" in page
    assert "needs an estimate of labels per item" in page
    assert "single_label, multi_label, text_spans, image_classification" in page


def test_the_project_page_links_to_a_new_order_for_that_project(
    app: Flask, world: LabellingWorld
) -> None:
    client = _client(app, world.pi)
    project = client.get(f"/projects/{world.project_id}").get_data(as_text=True)
    link = f"/labelling/orders/new?project_id={world.project_id}"
    assert f'href="{link}"' in project
    form = client.get(link).get_data(as_text=True)
    assert f'<option value="{world.project_id}" selected>' in form


BAD_FIELDS = [
    ("title", {"title": "   "}),
    ("labels", {"labels": ""}),
    ("labels", {"labels": "only-one"}),
    ("labels", {"labels": "same\nSAME"}),
    ("redundancy", {"redundancy": "0"}),
    ("redundancy", {"redundancy": "two"}),
    ("redundancy", {"redundancy": "9"}),
    ("vendor_id", {"vendor_id": ""}),
    ("vendor_id", {"vendor_id": "999999"}),
    ("schema_kind", {"schema_kind": "poetry"}),
    ("items_file", {"items_file": None}),
    ("items_file", {"items_file": (io.BytesIO(b"id,words\nr1,x\n"), "reviews.csv")}),
    ("items_file", {"items_file": (io.BytesIO(b"id,text\nr1,x\nr1,y\n"), "reviews.csv")}),
    ("items_file", {"items_file": (io.BytesIO(CSV), "reviews.xlsx")}),
    ("image_files", {"source": "images", "schema_kind": "image_classification"}),
    ("version_id", {"source": "dataset", "version_id": ""}),
    ("version_id", {"source": "dataset", "version_id": "999999", "file_name": "a.csv"}),
    ("source", {"source": "carrier-pigeon"}),
    ("target_dataset_id", {"target_dataset_id": "999999"}),
]


@pytest.mark.parametrize(
    ("field", "changes"), BAD_FIELDS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_FIELDS)]
)
def test_a_bad_field_is_an_error_on_that_field_and_nothing_is_created(
    app: Flask, session: Session, world: LabellingWorld, field: str, changes: dict[str, Any]
) -> None:
    before = _orders(session)
    response = _post_order(_client(app, world.pi), _form(world, **changes))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert _field_error(html, field)
    assert "Nothing was created" in html
    assert _orders(session) == before


def test_image_files_become_image_items(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    form = _form(
        world,
        schema_kind="image_classification",
        labels="cat\ndog",
        source="images",
        items_file=None,
        image_files=[(io.BytesIO(png), "cat-1.png"), (io.BytesIO(png + b"!"), "dog-1.png")],
    )
    order_id = _create_with(app, world, form)
    items = session.scalars(select(Item).where(Item.order_id == order_id)).all()
    assert sorted((item.external_id, item.media_type) for item in items) == [
        ("cat-1.png", "image/png"),
        ("dog-1.png", "image/png"),
    ]
    assert all(
        item.blob_sha256 and app.extensions[STORE_KEY].exists(item.blob_sha256) for item in items
    )


def test_a_per_label_vendor_needs_the_estimate_for_multi_label(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    vendor = world.add_vendor(session, "Per label", unit=PriceUnit.LABEL, price=50_000)
    client = _client(app, world.pi)
    form = _form(world, vendor_id=str(vendor.id), schema_kind="multi_label")
    response = _post_order(client, form)
    assert response.status_code == 422
    assert "needs an estimate" in _field_error(response.get_data(as_text=True), "estimate")
    assert _orders(session) == 0
    form = _form(world, vendor_id=str(vendor.id), schema_kind="multi_label", estimate="1.5")
    assert _post_order(client, form).status_code == 302
    order = session.scalars(select(Order)).one()
    assert order.estimate_per_annotation_micro == 1_500_000


def test_another_projects_id_is_refused_on_the_project_field(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    create_project(session, title="Own", field_of_science="Physics", actor=world.outsider)
    response = _post_order(_client(app, world.outsider), _form(world))
    assert response.status_code == 422
    assert _field_error(response.get_data(as_text=True), "project_id")
    assert _orders(session) == 0


def test_a_vendor_that_does_not_take_the_task_kind_is_refused_on_the_vendor(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    vendor = world.add_vendor(session, "Images only", kinds=(SchemaKind.IMAGE_CLASSIFICATION,))
    response = _post_order(_client(app, world.pi), _form(world, vendor_id=str(vendor.id)))
    assert "does not take single_label" in _field_error(
        response.get_data(as_text=True), "vendor_id"
    )
    assert _orders(session) == 0


def _create(app: Flask, world: LabellingWorld, **changes: Any) -> int:
    return _create_with(app, world, _form(world, **changes))


def _create_with(app: Flask, world: LabellingWorld, form: dict[str, Any]) -> int:
    response = _post_order(_client(app, world.pi), form)
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[-1])


def test_an_upload_makes_a_draft_that_quote_and_place_hold(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order_id = _create(app, world)
    client = _client(app, world.pi)
    page = client.get(f"/labelling/orders/{order_id}").get_data(as_text=True)
    assert "badge-draft" in page and "0 of 3 items" in page
    assert (
        client.post(f"/labelling/orders/{order_id}/quote", data={"csrf_token": CSRF}).status_code
        == 302
    )
    page = client.get(f"/labelling/orders/{order_id}").get_data(as_text=True)
    sheet = session.scalars(
        select(PriceSheet.id).where(PriceSheet.vendor_id == world.vendor.id)
    ).one()
    assert "6 items" in page and "6 credits" in page and f"price sheet {sheet}" in page
    before = world.available(session)
    assert (
        client.post(f"/labelling/orders/{order_id}/place", data={"csrf_token": CSRF}).status_code
        == 302
    )
    assert get_order(session, world.pi, order_id=order_id).status == "placed"
    assert world.available(session) == before - 6 * CREDIT
    listing = client.get("/labelling").get_data(as_text=True)
    assert f"/labelling/orders/{order_id}" in listing and "badge-placed" in listing


def test_placing_with_too_few_credits_shows_required_and_available(
    app: Flask, session: Session
) -> None:
    world = build_world(session, label_credits=4 * CREDIT)
    order_id = _create(app, world)
    client = _client(app, world.pi)
    client.post(f"/labelling/orders/{order_id}/quote", data={"csrf_token": CSRF})
    response = client.post(f"/labelling/orders/{order_id}/place", data={"csrf_token": CSRF})
    assert response.status_code == 402
    html = response.get_data(as_text=True)
    assert (
        "the order needs 6 labelling credits and the project has 4 labelling credits available"
        in html
    )
    assert get_order(session, world.pi, order_id=order_id).status == "quoted"
    assert world.available(session) == 4 * CREDIT


def test_a_refused_transition_names_the_state(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order_id = _create(app, world)
    response = _client(app, world.pi).post(
        f"/labelling/orders/{order_id}/accept", data={"csrf_token": CSRF}
    )
    assert response.status_code == 409
    assert "cannot accept an order that is draft" in response.get_data(as_text=True)


def _deliver_all(session: Session, world: LabellingWorld, order_id: int) -> None:
    items = session.scalars(select(Item).where(Item.order_id == order_id)).all()
    for item in items:
        for n, annotator in enumerate(world.annotators):
            deliveries.record_delivery(
                session,
                order_id=order_id,
                item_id=item.id,
                annotator_ref=f"user:{annotator.user_id}",
                value=AnnotationValue(labels=["positive" if n == 0 else "negative"]),
                seconds=3.0,
                delivery_key=f"{item.id}:{n}",
                actor=world.ops,
            )
    session.flush()  # the portal reads through its own session


def test_annotators_are_assigned_by_email_and_accepting_settles(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order_id = _create(app, world)
    client = _client(app, world.pi)
    emails = "\n".join(str(_email(session, a)) for a in world.annotators)
    refused = client.post(
        f"/labelling/orders/{order_id}/annotators",
        data={"csrf_token": CSRF, "annotators": "nobody@uni.example"},
    )
    assert refused.status_code == 422
    assert "not an active annotator" in refused.get_data(as_text=True)
    client.post(
        f"/labelling/orders/{order_id}/annotators",
        data={"csrf_token": CSRF, "annotators": emails},
    )
    page = client.get(f"/labelling/orders/{order_id}").get_data(as_text=True)
    assert all(str(_email(session, a)) in page for a in world.annotators)
    client.post(f"/labelling/orders/{order_id}/quote", data={"csrf_token": CSRF})
    client.post(f"/labelling/orders/{order_id}/place", data={"csrf_token": CSRF})
    _deliver_all(session, world, order_id)
    page = client.get(f"/labelling/orders/{order_id}").get_data(as_text=True)
    assert "badge-delivered" in page and "3 of 3 items" in page
    client.post(f"/labelling/orders/{order_id}/accept", data={"csrf_token": CSRF})
    assert get_order(session, world.pi, order_id=order_id).status == "settled"


def test_the_order_page_shows_agreement_and_gold_accuracy_while_the_order_runs(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    gold = b"id,text,gold\ng1,Great film.,positive\nr2,Dull film.,\nr3,Fine.,\n"
    order_id = _create(app, world, items_file=(io.BytesIO(gold), "reviews.csv"))
    client = _client(app, world.pi)
    client.post(f"/labelling/orders/{order_id}/quote", data={"csrf_token": CSRF})
    client.post(f"/labelling/orders/{order_id}/place", data={"csrf_token": CSRF})
    page = client.get(f"/labelling/orders/{order_id}").get_data(as_text=True)
    assert re.search(r'data-testid="agreement">\s*Not enough annotations yet\.', page)

    # The first annotator says "positive" to every item, the second "negative".
    _deliver_all(session, world, order_id)
    page = client.get(f"/labelling/orders/{order_id}").get_data(as_text=True)
    figures = order_quality(session, world.pi, order_id=order_id)
    assert figures.alpha is not None and figures.alpha < 0
    assert f'data-testid="agreement">{figures.alpha:.3f}' in page
    per_label = re.findall(r"<tr><td>(\w+)</td><td class=\"num\">(-?[\d.]+)</td></tr>", page)
    assert per_label == [
        (row.label, f"{row.alpha:.3f}") for row in figures.labels if row.alpha is not None
    ]
    accuracy = re.findall(r"<code>(annotator-\w+)</code></td>.*?(\d+) %</td></tr>", page)
    assert sorted(percent for _, percent in accuracy) == ["0", "100"]


def _email(session: Session, who: Actor) -> str:
    return session.get_one(User, who.user_id).email


def test_an_outsider_gets_404_for_the_order_and_its_actions(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order_id = _create(app, world)
    client = _client(app, world.outsider)
    assert client.get(f"/labelling/orders/{order_id}").status_code == 404
    for action in ("quote", "place", "cancel", "accept", "dispute", "annotators"):
        response = client.post(f"/labelling/orders/{order_id}/{action}", data={"csrf_token": CSRF})
        assert response.status_code == 404, action
    assert f"/labelling/orders/{order_id}" not in client.get("/labelling").get_data(as_text=True)
    assert get_order(session, world.pi, order_id=order_id).status == "draft"


def test_ops_add_a_vendor_and_a_price_and_retire_it(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    client = _client(app, world.ops)
    refused = client.post(
        "/ops/labelling/vendors",
        data={"csrf_token": CSRF, "name": "Acme", "adapter": "invoice", "max_redundancy": "3"},
    )
    assert refused.status_code == 400
    assert "task_kinds" in refused.get_data(as_text=True) or "at least 1" in refused.get_data(
        as_text=True
    )
    added = client.post(
        "/ops/labelling/vendors",
        data={
            "csrf_token": CSRF,
            "name": "Acme",
            "adapter": "invoice",
            "task_kinds": ["single_label", "multi_label"],
            "max_redundancy": "3",
            "gold_items": "on",
        },
    )
    assert added.status_code == 302
    vendor = session.scalars(select(Vendor).where(Vendor.name == "Acme")).one()
    price = {
        "csrf_token": CSRF,
        "vendor_id": str(vendor.id),
        "unit": "label",
        "credits_per_unit": "0.04",
        "fee_percent": "2.5",
    }
    bad = client.post("/ops/labelling/prices", data=price | {"credits_per_unit": "free"})
    assert bad.status_code == 400
    named = client.post(
        "/ops/labelling/prices", data=price | {"reason": "as agreed with 0000-0002-1825-0097"}
    )
    assert named.status_code == 400
    assert (
        '<p class="error" id="e-reason">reason is published in the public, permanent '
        "transparency log and may not hold an ORCID iD"
    ) in named.get_data(as_text=True)
    assert session.scalars(select(PriceSheet).where(PriceSheet.vendor_id == vendor.id)).all() == []
    good = client.post("/ops/labelling/prices", data=price)
    assert good.status_code == 302
    sheet = session.scalars(select(PriceSheet).where(PriceSheet.vendor_id == vendor.id)).one()
    assert (sheet.micro_credits_per_unit, sheet.fee_basis_points) == (40_000, 250)
    page = client.get("/ops/labelling/vendors").get_data(as_text=True)
    assert "0.04 credits per label + 2.5 % fee" in page
    client.post(f"/ops/labelling/vendors/{vendor.id}/retire", data={"csrf_token": CSRF})
    session.refresh(vendor)
    assert not vendor.active
    form = _client(app, world.pi).get("/labelling/orders/new").get_data(as_text=True)
    assert "Acme" not in form


def test_a_dispute_is_resolved_by_ops_with_a_refund(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    order_id = _create(app, world)
    pi = _client(app, world.pi)
    pi.post(f"/labelling/orders/{order_id}/quote", data={"csrf_token": CSRF})
    pi.post(f"/labelling/orders/{order_id}/place", data={"csrf_token": CSRF})
    _deliver_all(session, world, order_id)
    no_reason = pi.post(f"/labelling/orders/{order_id}/dispute", data={"csrf_token": CSRF})
    assert no_reason.status_code == 422
    pi.post(
        f"/labelling/orders/{order_id}/dispute",
        data={"csrf_token": CSRF, "reason": "labels look random"},
    )
    assert get_order(session, world.pi, order_id=order_id).status == "disputed"
    ops = _client(app, world.ops)
    assert "labels look random" in ops.get("/ops/labelling/disputes").get_data(as_text=True)
    too_much = ops.post(
        f"/ops/labelling/orders/{order_id}/resolve",
        data={"csrf_token": CSRF, "resolution": "refunded", "refund": "100", "note": "half"},
    )
    assert too_much.status_code == 400
    assert get_order(session, world.pi, order_id=order_id).status == "disputed"
    ops.post(
        f"/ops/labelling/orders/{order_id}/resolve",
        data={"csrf_token": CSRF, "resolution": "refunded", "refund": "3", "note": "half"},
    )
    settled = get_order(session, world.pi, order_id=order_id)
    assert (settled.status, settled.refunded_micro) == ("settled", 3 * CREDIT)


def test_images_of_an_order_refused_after_they_were_stored_are_removed(
    app: Flask, session: Session, world: LabellingWorld
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    form = _form(  # a text schema: the order refuses image items once they are stored
        world,
        source="images",
        items_file=None,
        image_files=[(io.BytesIO(png), "cat-1.png")],
    )
    response = _post_order(_client(app, world.pi), form)
    assert response.status_code == 422
    assert _orders(session) == 0
    assert not app.extensions[STORE_KEY].exists(hashlib.sha256(png).hexdigest())
