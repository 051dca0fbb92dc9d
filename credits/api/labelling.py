"""Labelling routes under /api/v1/labelling: vendors and their price sheets, orders.

Any token that may read sees the vendors and their prices; only ops, with a
token that may write, add vendors, retire or restore them and set prices.
Prices are integer micro-credits per unit, with a fee in basis points; times
are ISO 8601 with a timezone. Orders are their project's researchers' (and
ops'): created in draft from inline items, an uploaded CSV or JSON Lines text,
or a dataset version's file, with an ``Idempotency-Key`` (a replay answers 200
with the first order). What an order does next is in
:mod:`credits.api.labelling_orders`. Label Studio's webhook needs no token but
the shared secret.
"""

from __future__ import annotations

from flask import Blueprint, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from credits.api.auth import credits_extension, current_actor, session_factory
from credits.api.datasets import blob_store
from credits.api.openapi import operation
from credits.api.paging import next_page_link
from credits.api.parsing import NoInput, idempotency_key, json_body, optional_json_body
from credits.db import run_in_transaction, session_scope
from credits.errors import Unauthenticated
from credits.identity.access import require_actor, require_any_role, require_scope
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope
from credits.labelling import listing, queries, requests, vendors, webhooks
from credits.labelling.label_studio_format import WEBHOOK_SECRET_HEADER, verify_webhook
from credits.labelling.schemas import OrderOut, PriceSheetIn, PriceSheetOut, VendorIn, VendorOut

blueprint = Blueprint("labelling", __name__, url_prefix="/api/v1/labelling")


class VendorList(BaseModel):
    items: list[VendorOut]


class PriceSheetList(BaseModel):
    items: list[PriceSheetOut]


def caller(scope: Scope) -> Actor:
    """The caller, authenticated with a token that allows ``scope``."""
    actor = require_actor(current_actor())
    require_scope(actor, scope)
    return actor


def _operator() -> Actor:
    actor = caller(Scope.WRITE)
    require_any_role(actor, Role.OPS)
    return actor


@blueprint.get("/vendors")
@operation("List labelling vendors", response=VendorList, problems=(403,))
def list_vendors() -> ResponseReturnValue:
    """Every vendor by name, retired ones too (``active`` false), each with the price
    sheet in force now."""
    caller(Scope.READ)
    with session_scope(session_factory()) as session:
        found = vendors.list_vendors(session, include_retired=True)
    return VendorList(items=found).model_dump(mode="json")


@blueprint.get("/vendors/<int:vendor_id>")
@operation("Get a labelling vendor", response=VendorOut, problems=(403, 404))
def get_vendor(vendor_id: int) -> ResponseReturnValue:
    """One vendor: adapter, task kinds, quality control and the price in force now."""
    caller(Scope.READ)
    with session_scope(session_factory()) as session:
        vendor = vendors.get_vendor(session, vendor_id=vendor_id)
    return vendor.model_dump(mode="json")


@blueprint.post("/vendors")
@operation(
    "Add a labelling vendor",
    response=VendorOut,
    body=VendorIn,
    status=201,
    problems=(400, 403, 415, 422),
)
def add_vendor() -> ResponseReturnValue:
    """Ops only. The vendor takes no order until it has a price."""
    actor = _operator()
    body = json_body(VendorIn)
    with session_scope(session_factory()) as session:
        vendor = vendors.add_vendor(session, vendor=body, actor=actor)
    return (
        vendor.model_dump(mode="json"),
        201,
        {"Location": url_for(".get_vendor", vendor_id=vendor.id)},
    )


def _set_active(vendor_id: int, *, active: bool) -> ResponseReturnValue:
    actor = _operator()
    optional_json_body(NoInput)
    with session_scope(session_factory()) as session:
        vendor = vendors.set_vendor_active(session, vendor_id=vendor_id, active=active, actor=actor)
    return vendor.model_dump(mode="json")


@blueprint.post("/vendors/<int:vendor_id>/retire")
@operation(
    "Retire a labelling vendor",
    response=VendorOut,
    body=NoInput,
    body_required=False,
    problems=(403, 404),
)
def retire_vendor(vendor_id: int) -> ResponseReturnValue:
    """Ops only. A retired vendor takes no new orders; its open orders go on."""
    return _set_active(vendor_id, active=False)


@blueprint.post("/vendors/<int:vendor_id>/restore")
@operation(
    "Restore a retired labelling vendor",
    response=VendorOut,
    body=NoInput,
    body_required=False,
    problems=(403, 404),
)
def restore_vendor(vendor_id: int) -> ResponseReturnValue:
    """Ops only. The vendor takes new orders again."""
    return _set_active(vendor_id, active=True)


@blueprint.get("/vendors/<int:vendor_id>/prices")
@operation("List a vendor's price sheets", response=PriceSheetList, problems=(403, 404))
def list_prices(vendor_id: int) -> ResponseReturnValue:
    """Every price-sheet version of the vendor, newest effective_from first."""
    caller(Scope.READ)
    with session_scope(session_factory()) as session:
        sheets = vendors.list_price_sheets(session, vendor_id=vendor_id)
    return PriceSheetList(items=sheets).model_dump(mode="json")


@blueprint.post("/vendors/<int:vendor_id>/prices")
@operation(
    "Set a vendor's price from a time on",
    response=PriceSheetOut,
    body=PriceSheetIn,
    status=201,
    problems=(400, 403, 404, 415, 422),
)
def set_price(vendor_id: int) -> ResponseReturnValue:
    """Ops only. Micro-credits per unit (item, label, annotator_hour or submission) and
    a fee in basis points; effective_from may not lie in the past. An order keeps the
    version it was quoted at."""
    actor = _operator()
    body = json_body(PriceSheetIn)
    with session_scope(session_factory()) as session:
        sheet = vendors.add_price_sheet(session, vendor_id=vendor_id, sheet=body, actor=actor)
    return sheet.model_dump(mode="json"), 201


@blueprint.post("/orders")
@operation(
    "Create a labelling order",
    response=OrderOut,
    body=requests.OrderCreate,
    status=201,
    idempotency_key=True,
    replay_status=200,
    problems=(400, 403, 404, 409, 415, 422),
)
def create_order() -> ResponseReturnValue:
    """A draft order of the project's, with its items: ``items`` inline, an ``upload``
    (a CSV or JSON Lines text) or a ``source`` (a dataset version's file, or its
    images for an image schema). A replay of the ``Idempotency-Key`` answers 200
    with the first order."""
    actor = caller(Scope.WRITE)
    key = idempotency_key("creating a labelling order")
    body = json_body(requests.OrderCreate)
    store = None if body.source is None else blob_store()
    order = run_in_transaction(
        session_factory(),
        lambda session: requests.create_order(session, actor, body, store=store, request_key=key),
    )
    headers = {"Location": url_for(".get_order", order_id=order.id)}
    return order.model_dump(mode="json"), 200 if order.replayed else 201, headers


@blueprint.get("/orders")
@operation(
    "List labelling orders",
    response=listing.OrderPage,
    query=listing.OrderQuery,
    problems=(403,),
)
def list_orders() -> ResponseReturnValue:
    """Orders of the projects the caller may see, by id, filtered by project, status
    and vendor; amounts in micro-credits."""
    actor = caller(Scope.READ)
    query = listing.OrderQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        page = listing.list_orders(session, actor, query)
    return page.model_dump(mode="json"), 200, next_page_link(query, cursor=page.next_cursor)


@blueprint.get("/orders/<int:order_id>")
@operation("Get a labelling order", response=OrderOut, problems=(403, 404))
def get_order(order_id: int) -> ResponseReturnValue:
    """The order with its quote, hold and what deliveries captured, in micro-credits."""
    actor = caller(Scope.READ)
    with session_scope(session_factory()) as session:
        order = queries.get_order(session, actor, order_id=order_id)
    return order.model_dump(mode="json")


@blueprint.get("/orders/<int:order_id>/items")
@operation(
    "List an order's items",
    response=listing.ItemPage,
    query=listing.PageQuery,
    problems=(403, 404),
)
def list_items(order_id: int) -> ResponseReturnValue:
    """The order's items by id, with how many annotations each has."""
    actor = caller(Scope.READ)
    query = listing.PageQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        page = listing.list_items(session, actor, order_id=order_id, query=query)
    headers = next_page_link(query, cursor=page.next_cursor)
    return page.model_dump(mode="json"), 200, headers


@blueprint.get("/orders/<int:order_id>/annotations")
@operation(
    "List an order's annotations",
    response=listing.AnnotationPage,
    query=listing.PageQuery,
    problems=(403, 404),
)
def list_annotations(order_id: int) -> ResponseReturnValue:
    """The delivered annotations by id; annotators by pseudonym only."""
    actor = caller(Scope.READ)
    query = listing.PageQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        page = listing.list_annotations(session, actor, order_id=order_id, query=query)
    headers = next_page_link(query, cursor=page.next_cursor)
    return page.model_dump(mode="json"), 200, headers


class WebhookIn(BaseModel):
    """A Label Studio webhook body: its action, and what Label Studio sends with it."""

    model_config = ConfigDict(extra="allow")

    action: str = Field(max_length=100)


class WebhookSecretRefused(Unauthenticated):
    slug = "webhook-secret-refused"
    title = "Webhook secret missing or wrong"


@blueprint.post("/webhooks/label-studio")
@operation(
    "Receive a Label Studio webhook",
    response=webhooks.WebhookOut,
    body=WebhookIn,
    authenticated=False,
    problems=(401, 404, 409, 415, 422),
)
def label_studio_webhook() -> ResponseReturnValue:
    """No token: Label Studio sends the shared secret (CREDITS_LABEL_STUDIO_WEBHOOK_SECRET)
    in the X-Credits-Webhook-Secret header, else 401. A created or updated annotation
    of an order's project is recorded as a delivery at once (once per annotation);
    other actions are acknowledged."""
    secret = credits_extension().settings.label_studio_webhook_secret
    if not verify_webhook(dict(request.headers), secret):
        raise WebhookSecretRefused(f"send the webhook secret in {WEBHOOK_SECRET_HEADER}")
    payload = json_body(WebhookIn).model_dump(mode="json")
    with session_scope(session_factory()) as session:
        answer = webhooks.receive_webhook(session, payload)
    return answer.model_dump(mode="json")
