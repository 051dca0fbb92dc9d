"""The labelling API end to end: vendors and prices by ops, orders by researchers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from labelling_world import CREDIT, SENTIMENT, LabellingWorld, build_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.datasets import service as datasets
from credits.db import utcnow
from credits.identity.actor import Actor
from credits.identity.tokens import create_token
from credits.labelling.models import Adapter, Annotation, Item, Order
from credits.labelling.queries import get_order
from credits.ledger.models import HoldPart
from credits.ledger.verify import verify_ledger
from credits.settings import load_settings
from credits.storage import blob_store_for_url

ORDERS = "/api/v1/labelling/orders"
VENDORS = "/api/v1/labelling/vendors"
PROBLEM = "application/problem+json"
SYSTEM = Actor.system("labelling-api-tests")


@dataclass
class Api:
    client: FlaskClient
    world: LabellingWorld
    headers: dict[str, dict[str, str]]

    def post(self, url: str, who: str, body: Any = None, **headers: str) -> Any:
        return self.client.post(url, json=body, headers=self.headers[who] | headers)

    def get(self, url: str, who: str, **query: Any) -> Any:
        return self.client.get(url, query_string=query, headers=self.headers[who])


def _bearer(session: Session, actor: Actor) -> dict[str, str]:
    assert actor.email is not None
    secret = create_token(session, email=actor.email, actor=SYSTEM).secret
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def api(session: Session, joined_session_factory: sessionmaker[Session]) -> Api:
    world = build_world(session, label_credits=10 * CREDIT)
    people = {"pi": world.pi, "member": world.member, "outsider": world.outsider, "ops": world.ops}
    headers = {name: _bearer(session, actor) for name, actor in people.items()}
    session.flush()
    return Api(
        create_app(load_settings(), session_factory=joined_session_factory).test_client(),
        world,
        headers,
    )


def _order_body(world: LabellingWorld, vendor_id: int, *, items: int = 3) -> dict[str, Any]:
    return {
        "order": {
            "project_id": world.project_id,
            "vendor_id": vendor_id,
            "title": "Sentiment of reviews",
            "instructions": "Label the sentiment.",
            "label_schema": SENTIMENT.model_dump(mode="json"),
            "redundancy": 2,
        },
        "items": [
            {"external_id": f"r{n}", "text": f"Review {n}."}
            | ({"gold": {"labels": ["positive"]}} if n == 0 else {})
            for n in range(items)
        ],
    }


def _vendor_with_price(api: Api, *, price_micro: int = 1_000_000, fee_bp: int = 250) -> int:
    vendor = api.post(
        VENDORS,
        "ops",
        {"name": "Acme Labels", "adapter": "inhouse", "task_kinds": ["single_label"]},
    )
    assert vendor.status_code == 201, vendor.get_json()
    vendor_id = int(vendor.get_json()["id"])
    price = api.post(
        f"{VENDORS}/{vendor_id}/prices",
        "ops",
        {"unit": "item", "micro_credits_per_unit": price_micro, "fee_basis_points": fee_bp},
    )
    assert price.status_code == 201, price.get_json()
    return vendor_id


def _create(api: Api, vendor_id: int, *, key: str = "order-1", items: int = 3) -> dict[str, Any]:
    response = api.post(
        ORDERS, "pi", _order_body(api.world, vendor_id, items=items), **{"Idempotency-Key": key}
    )
    assert response.status_code == 201, response.get_json()
    assert response.headers["Location"].endswith(f"{ORDERS}/{response.get_json()['id']}")
    return dict(response.get_json())


def test_an_order_runs_from_draft_to_settled_through_the_api(api: Api, session: Session) -> None:
    vendor_id = _vendor_with_price(api)
    order = _create(api, vendor_id)
    assert order["status"] == "draft" and order["items"] == 3 and order["gold_items"] == 1

    quoted = api.post(f"{ORDERS}/{order['id']}/quote", "pi").get_json()
    # 3 items x 2 annotators x 1 credit, plus 2.5 %.
    assert quoted["status"] == "quoted" and quoted["quoted_micro"] == 6_150_000
    placed = api.post(f"{ORDERS}/{order['id']}/place", "pi", {})
    assert placed.status_code == 200 and placed.get_json()["status"] == "placed"
    assert api.world.available(session) == 10 * CREDIT - 6_150_000

    api.world.deliver_all(session, order["id"])
    shown = api.get(f"{ORDERS}/{order['id']}", "member").get_json()
    assert shown["status"] == "delivered" and shown["captured_micro"] == 6_150_000
    accepted = api.post(f"{ORDERS}/{order['id']}/accept", "pi").get_json()

    assert accepted["status"] == "settled"
    assert api.world.available(session) == 10 * CREDIT - 6_150_000
    assert verify_ledger(session).ok


def test_items_and_annotations_are_paged_with_pseudonyms_only(api: Api, session: Session) -> None:
    vendor_id = _vendor_with_price(api)
    order = _create(api, vendor_id, items=3)
    api.post(f"{ORDERS}/{order['id']}/quote", "pi")
    api.post(f"{ORDERS}/{order['id']}/place", "pi")
    api.world.deliver_all(session, order["id"])

    first = api.get(f"{ORDERS}/{order['id']}/items", "pi", limit=2)
    second = api.get(f"{ORDERS}/{order['id']}/items", "pi", cursor=first.get_json()["next_cursor"])
    annotations = api.get(f"{ORDERS}/{order['id']}/annotations", "pi", limit=200).get_json()

    assert [i["external_id"] for i in first.get_json()["items"]] == ["r0", "r1"]
    assert 'rel="next"' in first.headers["Link"]
    assert [i["external_id"] for i in second.get_json()["items"]] == ["r2"]
    assert second.get_json()["next_cursor"] is None
    assert first.get_json()["items"][0]["gold"] == {"labels": ["positive"], "spans": []}
    assert all(i["annotation_count"] == 2 for i in first.get_json()["items"])
    assert len(annotations["items"]) == 6
    names = {a["annotator"] for a in annotations["items"]}
    assert len(names) == 2 and all(name.startswith("annotator-") for name in names)
    emails = [a.email for a in api.world.annotators]
    assert not any(str(email) in str(annotations) for email in emails)


def test_placing_without_enough_credits_is_402_and_holds_nothing(
    api: Api, session: Session
) -> None:
    vendor_id = _vendor_with_price(api, price_micro=5 * CREDIT, fee_bp=0)
    order = _create(api, vendor_id)
    api.post(f"{ORDERS}/{order['id']}/quote", "pi")
    holds_before = session.scalar(select(func.count()).select_from(HoldPart))

    refused = api.post(f"{ORDERS}/{order['id']}/place", "pi")

    assert refused.status_code == 402 and refused.mimetype == PROBLEM
    problem = refused.get_json()
    assert problem["required"] == 30 * CREDIT and problem["available"] == 10 * CREDIT
    assert session.scalar(select(func.count()).select_from(HoldPart)) == holds_before
    assert api.world.available(session) == 10 * CREDIT
    assert api.get(f"{ORDERS}/{order['id']}", "pi").get_json()["status"] == "quoted"


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("place", None),
        ("accept", None),
        ("dispute", {"reason": "sloppy"}),
        ("resolve", {"resolution": "accepted", "note": "fine"}),
    ],
)
def test_a_transition_the_state_refuses_is_409_naming_it(
    api: Api, action: str, body: dict[str, Any] | None
) -> None:
    order = _create(api, _vendor_with_price(api))

    refused = api.post(f"{ORDERS}/{order['id']}/{action}", "ops", body)

    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["state"] == "draft"
    assert refused.get_json()["type"].endswith("/labelling-order-state")


def test_a_cancelled_order_refuses_cancel_again(api: Api) -> None:
    order = _create(api, _vendor_with_price(api))
    cancelled = api.post(f"{ORDERS}/{order['id']}/cancel", "pi", {"reason": "wrong file"})
    assert cancelled.get_json()["status"] == "cancelled"

    again = api.post(f"{ORDERS}/{order['id']}/cancel", "pi")

    assert again.status_code == 409 and again.get_json()["state"] == "cancelled"


def test_a_dispute_is_resolved_by_ops_with_a_refund(api: Api, session: Session) -> None:
    order = _create(api, _vendor_with_price(api, fee_bp=0))
    api.post(f"{ORDERS}/{order['id']}/quote", "pi")
    api.post(f"{ORDERS}/{order['id']}/place", "pi")
    api.world.deliver_all(session, order["id"])
    disputed = api.post(f"{ORDERS}/{order['id']}/dispute", "pi", {"reason": "labels are wrong"})
    assert disputed.get_json()["status"] == "disputed"
    body = {"resolution": "refunded", "note": "half redone", "refund_micro": 2 * CREDIT}

    by_researcher = api.post(f"{ORDERS}/{order['id']}/resolve", "pi", body)
    for resolution in ("accepted", "cancelled"):
        named = {"resolution": resolution, "note": "agreed with jane@uni.example"}
        refused = api.post(f"{ORDERS}/{order['id']}/resolve", "ops", named)
        assert refused.status_code == 422
        assert refused.get_json()["type"].endswith("personal-data-in-public-text")
        assert api.get(f"{ORDERS}/{order['id']}", "ops").get_json()["status"] == "disputed"
    resolved = api.post(f"{ORDERS}/{order['id']}/resolve", "ops", body)

    assert by_researcher.status_code == 403
    assert resolved.status_code == 200, resolved.get_json()
    assert resolved.get_json()["status"] == "settled"
    assert resolved.get_json()["refunded_micro"] == 2 * CREDIT
    assert api.world.available(session) == 10 * CREDIT - 6 * CREDIT + 2 * CREDIT


def test_ops_mark_an_invoice_order_delivered(api: Api, session: Session) -> None:
    vendor = api.world.add_vendor(session, "Invoicer", adapter="invoice")  # type: ignore[arg-type]
    session.flush()
    order = _create(api, vendor.id)
    api.post(f"{ORDERS}/{order['id']}/quote", "pi")
    api.post(f"{ORDERS}/{order['id']}/place", "pi")
    in_house = _create(api, _vendor_with_price(api), key="in-house")

    by_researcher = api.post(f"{ORDERS}/{order['id']}/delivered", "pi")
    delivered = api.post(f"{ORDERS}/{order['id']}/delivered", "ops")
    again = api.post(f"{ORDERS}/{order['id']}/delivered", "ops")
    not_invoice = api.post(f"{ORDERS}/{in_house['id']}/delivered", "ops")

    assert by_researcher.status_code == 403
    assert delivered.get_json()["status"] == "delivered"
    assert again.status_code == 409 and again.get_json()["state"] == "delivered"
    assert not_invoice.status_code == 422


def test_an_outsider_gets_404_for_an_order_and_sees_none_listed(api: Api) -> None:
    order = _create(api, _vendor_with_price(api))

    assert api.get(f"{ORDERS}/{order['id']}", "outsider").status_code == 404
    assert api.post(f"{ORDERS}/{order['id']}/cancel", "outsider").status_code == 404
    assert api.get(f"{ORDERS}/{order['id']}/items", "outsider").status_code == 404
    assert api.get(ORDERS, "outsider").get_json()["items"] == []
    listed = api.get(ORDERS, "member", project_id=api.world.project_id, status="draft")
    assert [o["id"] for o in listed.get_json()["items"]] == [order["id"]]


def test_an_outsider_cannot_create_an_order_in_a_project_not_theirs(api: Api) -> None:
    vendor_id = _vendor_with_price(api)

    refused = api.post(
        ORDERS, "outsider", _order_body(api.world, vendor_id), **{"Idempotency-Key": "x"}
    )

    assert refused.status_code == 404


def test_a_researcher_may_not_add_a_vendor_or_a_price(api: Api) -> None:
    vendor_id = _vendor_with_price(api)
    body = {"name": "Mine", "adapter": "inhouse", "task_kinds": ["single_label"]}

    assert api.post(VENDORS, "pi", body).status_code == 403
    price = {"unit": "item", "micro_credits_per_unit": 1}
    assert api.post(f"{VENDORS}/{vendor_id}/prices", "pi", price).status_code == 403
    assert api.post(f"{VENDORS}/{vendor_id}/retire", "pi").status_code == 403


def test_a_retired_vendor_is_listed_as_such_and_takes_no_orders(api: Api) -> None:
    vendor_id = _vendor_with_price(api)
    retired = api.post(f"{VENDORS}/{vendor_id}/retire", "ops").get_json()
    assert retired["active"] is False

    listed = {v["id"]: v["active"] for v in api.get(VENDORS, "pi").get_json()["items"]}
    refused = api.post(
        ORDERS, "pi", _order_body(api.world, vendor_id), **{"Idempotency-Key": "retired"}
    )
    restored = api.post(f"{VENDORS}/{vendor_id}/restore", "ops").get_json()

    assert listed[vendor_id] is False
    assert refused.status_code == 422 and refused.get_json()["type"].endswith("/vendor-mismatch")
    assert restored["active"] is True


def test_prices_are_effective_dated_and_listed_newest_first(api: Api) -> None:
    vendor_id = _vendor_with_price(api, price_micro=1_000_000)
    later = (utcnow() + timedelta(days=2)).isoformat()
    api.post(
        f"{VENDORS}/{vendor_id}/prices",
        "ops",
        {"unit": "item", "micro_credits_per_unit": 2_000_000, "effective_from": later},
    )
    past = (utcnow() - timedelta(days=2)).isoformat()

    refused = api.post(
        f"{VENDORS}/{vendor_id}/prices",
        "ops",
        {"unit": "item", "micro_credits_per_unit": 3, "effective_from": past},
    )
    prices = api.get(f"{VENDORS}/{vendor_id}/prices", "pi").get_json()["items"]
    vendor = api.get(f"{VENDORS}/{vendor_id}", "pi").get_json()

    assert refused.status_code == 422
    assert [p["micro_credits_per_unit"] for p in prices] == [2_000_000, 1_000_000]
    assert vendor["price"]["micro_credits_per_unit"] == 1_000_000

    # A price from tomorrow goes ahead of the one set for the day after: in force
    # until that one starts.
    tomorrow = (utcnow() + timedelta(days=1)).isoformat()
    between = api.post(
        f"{VENDORS}/{vendor_id}/prices",
        "ops",
        {"unit": "item", "micro_credits_per_unit": 1_500_000, "effective_from": tomorrow},
    )
    assert between.status_code == 201, between.get_json()
    listed = api.get(f"{VENDORS}/{vendor_id}/prices", "pi").get_json()["items"]
    assert [p["micro_credits_per_unit"] for p in listed] == [2_000_000, 1_500_000, 1_000_000]


@pytest.mark.parametrize(
    "body",
    [
        {"order": {}, "items": []},
        {"items": [{"external_id": "a", "text": "x"}]},
        "not an object",
    ],
)
def test_a_bad_order_body_is_a_422_problem_and_creates_nothing(
    api: Api, session: Session, body: Any
) -> None:
    before = session.scalar(select(func.count(Order.id)))

    refused = api.post(ORDERS, "pi", body, **{"Idempotency-Key": "bad"})

    assert refused.status_code == 422 and refused.mimetype == PROBLEM
    assert session.scalar(select(func.count(Order.id))) == before


def test_an_order_giving_both_estimates_is_refused_and_creates_nothing(
    api: Api, session: Session
) -> None:
    before = session.scalar(select(func.count(Order.id)))
    body = _order_body(api.world, _vendor_with_price(api))
    body["order"] |= {"expected_labels_per_item": "3", "expected_seconds_per_item": "0.5"}

    refused = api.post(ORDERS, "pi", body, **{"Idempotency-Key": "both"})

    assert refused.status_code == 422 and refused.mimetype == PROBLEM
    assert "not both" in str(refused.get_json())
    assert session.scalar(select(func.count(Order.id))) == before


def test_an_order_with_an_unknown_gold_label_is_refused(api: Api, session: Session) -> None:
    body = _order_body(api.world, _vendor_with_price(api))
    body["items"][0]["gold"] = {"labels": ["sarcastic"]}

    refused = api.post(ORDERS, "pi", body, **{"Idempotency-Key": "gold"})

    assert refused.status_code == 422
    assert "sarcastic" in refused.get_json()["detail"]


@pytest.mark.parametrize("kind", ["single_label", "image_classification"])
def test_an_inline_item_naming_a_stored_blob_is_refused_and_changes_nothing(
    api: Api, session: Session, kind: str
) -> None:
    """A blob named by its hash alone would let any orderer send any stored file (a
    taken-down dataset's, another project's draft) to annotators, served as it says."""
    store = blob_store_for_url(f"memory://labelling-api-{id(session)}")
    api.client.application.extensions[STORE_KEY] = store
    data = b"<script>alert(1)</script>"
    sha256 = store.put_stream([data], max_bytes=len(data)).sha256
    body = _order_body(api.world, _vendor_with_price(api))
    body["order"]["label_schema"] = {"kind": kind, "labels": ["cat", "dog"]}
    body["items"] = [{"external_id": "x", "blob_sha256": sha256, "media_type": "text/html"}]
    before = session.scalar(select(func.count(Order.id)))

    refused = api.post(ORDERS, "pi", body, **{"Idempotency-Key": "blob"})

    assert refused.status_code == 422 and refused.mimetype == PROBLEM
    assert "blob_sha256" in str(refused.get_json())
    assert session.scalar(select(func.count(Order.id))) == before


def test_creating_an_order_needs_an_idempotency_key(api: Api) -> None:
    refused = api.post(ORDERS, "pi", _order_body(api.world, _vendor_with_price(api)))

    assert refused.status_code == 400
    assert refused.get_json()["type"].endswith("/idempotency-key-required")


def test_a_replayed_idempotency_key_returns_the_first_order(api: Api, session: Session) -> None:
    vendor_id = _vendor_with_price(api)
    first = _create(api, vendor_id, key="same")

    replay = api.post(
        ORDERS, "pi", _order_body(api.world, vendor_id), **{"Idempotency-Key": "same"}
    )
    different = api.post(
        ORDERS, "pi", _order_body(api.world, vendor_id, items=2), **{"Idempotency-Key": "same"}
    )

    assert replay.status_code == 200 and replay.get_json()["id"] == first["id"]
    assert replay.get_json()["replayed"] is True
    assert different.status_code == 422
    assert different.get_json()["type"].endswith("/idempotency-key-reused")
    assert session.scalar(select(func.count(Order.id))) == 1


def test_annotators_are_assigned_to_an_in_house_order(api: Api) -> None:
    order = _create(api, _vendor_with_price(api))
    ids = [a.user_id for a in api.world.annotators]

    assigned = api.post(f"{ORDERS}/{order['id']}/annotators", "pi", {"user_ids": ids})
    not_annotator = api.post(
        f"{ORDERS}/{order['id']}/annotators", "pi", {"user_ids": [api.world.outsider.user_id]}
    )

    assert assigned.status_code == 200, assigned.get_json()
    assert not_annotator.status_code == 422


def test_a_read_only_token_may_list_but_not_create(api: Api, session: Session) -> None:
    assert api.world.pi.email is not None
    secret = create_token(session, email=api.world.pi.email, actor=SYSTEM, scopes=["read"]).secret
    session.flush()
    api.headers["reader"] = {"Authorization": f"Bearer {secret}"}
    vendor_id = _vendor_with_price(api)

    assert api.get(ORDERS, "reader").status_code == 200
    refused = api.post(
        ORDERS, "reader", _order_body(api.world, vendor_id), **{"Idempotency-Key": "r"}
    )
    assert refused.status_code == 403


def test_an_order_is_created_from_an_uploaded_csv(api: Api) -> None:
    body = _order_body(api.world, _vendor_with_price(api))
    del body["items"]
    body["upload"] = {
        "file_name": "reviews.csv",
        "content": "id,text,gold\nr1,Loved it.,positive\nr2,Hated it.,\nr3,Meh.,\n",
    }

    created = api.post(ORDERS, "pi", body, **{"Idempotency-Key": "csv"})

    assert created.status_code == 201, created.get_json()
    order = created.get_json()
    assert order["items"] == 3 and order["gold_items"] == 1
    assert order["source"] == {"kind": "upload", "version_id": None, "name": "reviews.csv"}


def test_a_bad_upload_names_the_line_and_creates_nothing(api: Api, session: Session) -> None:
    body = _order_body(api.world, _vendor_with_price(api))
    del body["items"]
    body["upload"] = {"file_name": "reviews.jsonl", "content": '{"id": "a", "text": "x"}\n{oops\n'}

    refused = api.post(ORDERS, "pi", body, **{"Idempotency-Key": "jsonl"})

    assert refused.status_code == 422 and "line 2" in refused.get_json()["detail"]
    assert session.scalar(select(func.count(Order.id))) == 0


def test_an_order_is_created_from_a_dataset_versions_file(api: Api, session: Session) -> None:
    store = blob_store_for_url(f"memory://labelling-api-{id(session)}")
    api.client.application.extensions[STORE_KEY] = store
    version = datasets.create_dataset(
        session, project_id=api.world.project_id, title="Reviews", actor=api.world.pi
    )
    data = b'{"id": 1, "text": "Fine."}\n{"id": 2, "text": "Bad."}\n'
    blob = store.put_stream([data], max_bytes=len(data))
    datasets.add_file(
        session, version_id=version.id, name="reviews.jsonl", blob=blob, actor=api.world.pi
    )
    session.flush()
    body = _order_body(api.world, _vendor_with_price(api))
    del body["items"]
    body["source"] = {"dataset_version_id": version.id, "file": "reviews.jsonl"}

    created = api.post(ORDERS, "pi", body, **{"Idempotency-Key": "dataset"})
    by_outsider = api.post(ORDERS, "outsider", body, **{"Idempotency-Key": "dataset"})

    assert created.status_code == 201, created.get_json()
    assert created.get_json()["items"] == 2
    assert created.get_json()["source"]["version_id"] == version.id
    assert by_outsider.status_code == 404


def test_items_come_from_exactly_one_place(api: Api) -> None:
    body = _order_body(api.world, _vendor_with_price(api))
    body["upload"] = {"file_name": "reviews.csv", "content": "id,text\nr1,x\n"}

    refused = api.post(ORDERS, "pi", body, **{"Idempotency-Key": "both"})

    assert refused.status_code == 422


WEBHOOK = "/api/v1/labelling/webhooks/label-studio"
WEBHOOK_SECRET = "webhook-s3cret"


def _label_studio_order(session: Session, world: LabellingWorld, project: int) -> tuple[int, int]:
    vendor = world.add_vendor(session, "Studio", adapter=Adapter.LABEL_STUDIO)
    order = world.placed(session, items=1, redundancy=1, vendor_id=vendor.id)
    row = session.get_one(Order, order.id)
    row.external_ref = str(project)
    item_id = session.scalars(select(Item.id).where(Item.order_id == order.id)).one()
    session.flush()
    return order.id, item_id


def _annotation_payload(project: int, item_id: int) -> dict[str, Any]:
    result = {"from_name": "label", "to_name": "item", "type": "choices"}
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project},
        "annotation": {
            "id": 31,
            "result": [result | {"value": {"choices": ["negative"]}}],
            "completed_by": 5,
            "lead_time": 12,
        },
        "task": {"id": 9, "data": {"text": "so bad", "credits_item": str(item_id)}},
    }


def test_a_label_studio_webhook_with_the_secret_records_its_annotation_once(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    order_id, item_id = _label_studio_order(session, world, project=42)
    settings = load_settings(label_studio_webhook_secret=WEBHOOK_SECRET)
    client = create_app(settings, session_factory=joined_session_factory).test_client()
    payload = _annotation_payload(42, item_id)
    secret = {"X-Credits-Webhook-Secret": WEBHOOK_SECRET}

    no_secret = client.post(WEBHOOK, json=payload)
    wrong = client.post(WEBHOOK, json=payload, headers={"X-Credits-Webhook-Secret": "guess"})
    assert session.scalar(select(func.count(Annotation.id))) == 0
    first = client.post(WEBHOOK, json=payload, headers=secret)
    again = client.post(WEBHOOK, json=payload, headers=secret)
    other = client.post(WEBHOOK, json={"action": "PROJECT_UPDATED"}, headers=secret)
    unknown = client.post(WEBHOOK, json=_annotation_payload(43, item_id), headers=secret)

    assert no_secret.status_code == 401 and wrong.status_code == 401
    assert wrong.mimetype == PROBLEM
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {
        "action": "ANNOTATION_CREATED",
        "order_id": order_id,
        "recorded": True,
        "replayed": False,
    }
    assert again.get_json()["replayed"] is True
    assert other.status_code == 200 and other.get_json()["recorded"] is False
    assert unknown.status_code == 404
    assert session.scalar(select(func.count(Annotation.id))) == 1
    assert get_order(session, world.pi, order_id=order_id).captured_micro == CREDIT


def test_without_a_configured_secret_every_webhook_is_refused(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    client = create_app(load_settings(), session_factory=joined_session_factory).test_client()

    refused = client.post(
        WEBHOOK, json={"action": "PROJECT_UPDATED"}, headers={"X-Credits-Webhook-Secret": ""}
    )

    assert refused.status_code == 401
