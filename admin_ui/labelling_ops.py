"""Ops pages for labelling: vendors (add, retire, restore), their effective-dated price
sheets, and disputed orders to resolve.

Only ops reach them; everyone else gets the 404 page. Each form calls one
service in one transaction; a refusal is shown on the form and nothing is saved.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from admin_ui.ops import parse_moment
from admin_ui.web import login_required, render, require_role, transaction
from credits import formatting as fmt
from credits.errors import CreditsError, InvalidInput, NotFound
from credits.id_text import id_from_text
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.labelling import orders, vendors
from credits.labelling.label_schema import SchemaKind
from credits.labelling.models import BASIS_POINTS, Adapter, OrderStatus, PriceUnit, Resolution
from credits.labelling.queries import list_orders
from credits.labelling.schemas import PriceSheetIn, QcOptions, VendorIn
from credits.money import InvalidCreditsAmount, parse_credits

blueprint = Blueprint("ui_labelling_ops", __name__, url_prefix="/ops/labelling")
VENDOR_FIELDS = ("name", "adapter", "max_redundancy", "description")
PRICE_FIELDS = ("vendor_id", "unit", "credits_per_unit", "fee_percent", "effective_from", "reason")
RESOLVE_FIELDS = ("resolution", "refund", "note")
DISPUTES_SHOWN = 200


def _ops() -> Actor:
    return require_role(Role.OPS)


def _vendors_page(status: int = 200, **context: Any) -> ResponseReturnValue:
    with transaction() as db:
        listed = vendors.list_vendors(db, include_retired=True)
        prices = {v.id: vendors.list_price_sheets(db, vendor_id=v.id) for v in listed}
    return render(
        "ops/labelling_vendors.html",
        vendors=listed,
        prices=prices,
        adapters=[adapter.value for adapter in Adapter],
        kinds=[kind.value for kind in SchemaKind],
        units=[unit.value for unit in PriceUnit],
        vendor_form=context.pop("vendor_form", {}),
        vendor_errors=context.pop("vendor_errors", {}),
        price_form=context.pop("price_form", {}),
        price_errors=context.pop("price_errors", {}),
        **context,
    ), status


@blueprint.get("/vendors")
@login_required
def vendors_page() -> ResponseReturnValue:
    _ops()
    return _vendors_page()


@blueprint.post("/vendors")
@login_required
def add_vendor() -> ResponseReturnValue:
    me = _ops()
    form = {key: request.form.get(key, "") for key in VENDOR_FIELDS}
    kinds = request.form.getlist("task_kinds")
    errors: dict[str, str] = {}
    try:
        vendor = VendorIn(
            name=form["name"],
            adapter=form["adapter"],
            task_kinds=kinds,
            qc_options=QcOptions(
                gold_items=request.form.get("gold_items") == "on",
                max_redundancy=_whole(form["max_redundancy"] or "5"),
            ),
            description=form["description"],
        )
    except ValidationError as invalid:
        errors = _errors(invalid, (*VENDOR_FIELDS, "task_kinds"))
    except ValueError:
        errors = {"max_redundancy": "give a whole number from 1 to 20"}
    if not errors:
        try:
            with transaction() as db:
                added = vendors.add_vendor(db, vendor=vendor, actor=me)
        except CreditsError as error:
            errors["name"] = str(error)
    if errors:
        return _vendors_page(400, vendor_form=form | {"task_kinds": kinds}, vendor_errors=errors)
    flash(f"Vendor {added.name} added. Set its price before it can quote orders.")
    return redirect(url_for(".vendors_page"))


def _whole(text: str) -> int:
    return int(text.strip())


def _errors(invalid: ValidationError, fields: tuple[str, ...]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for problem in invalid.errors():
        location = [str(part) for part in problem.get("loc", ())]
        name = next((part for part in location if part in fields), "form")
        message = fmt.validation_message(problem)
        errors.setdefault(name, message)
    return errors


@blueprint.post("/vendors/<int:vendor_id>/retire")
@login_required
def retire(vendor_id: int) -> ResponseReturnValue:
    return _set_active(vendor_id, active=False)


@blueprint.post("/vendors/<int:vendor_id>/restore")
@login_required
def restore(vendor_id: int) -> ResponseReturnValue:
    return _set_active(vendor_id, active=True)


def _set_active(vendor_id: int, *, active: bool) -> ResponseReturnValue:
    me = _ops()
    try:
        with transaction() as db:
            vendor = vendors.set_vendor_active(db, vendor_id=vendor_id, active=active, actor=me)
    except NotFound:
        abort(404)
    flash(f"Vendor {vendor.name} {'takes new orders again' if active else 'is retired'}.")
    return redirect(url_for(".vendors_page"))


@blueprint.post("/prices")
@login_required
def add_price() -> ResponseReturnValue:
    me = _ops()
    form = {key: request.form.get(key, "") for key in PRICE_FIELDS}
    errors: dict[str, str] = {}
    vendor_id = id_from_text(form["vendor_id"])
    if vendor_id is None:
        errors["vendor_id"] = "choose a vendor"
    document: dict[str, Any] = {"unit": form["unit"], "reason": form["reason"] or None}
    try:
        document["micro_credits_per_unit"] = parse_credits(form["credits_per_unit"])
    except InvalidCreditsAmount as error:
        errors["credits_per_unit"] = error.detail
    try:
        document["fee_basis_points"] = _basis_points(form["fee_percent"])
    except ValueError as error:
        errors["fee_percent"] = str(error)
    try:
        document["effective_from"] = parse_moment(form["effective_from"])
    except ValueError:
        errors["effective_from"] = "give a date and time, or leave it blank for now"
    if vendor_id is not None and not errors:
        try:
            sheet = PriceSheetIn.model_validate(document)
            with transaction() as db:
                vendors.add_price_sheet(db, vendor_id=vendor_id, sheet=sheet, actor=me)
        except ValidationError as invalid:
            errors = _errors(invalid, ("unit", "reason", "effective_from"))
        except CreditsError as error:
            errors[_price_error_field(error)] = str(error)
    if errors:
        return _vendors_page(400, price_form=form, price_errors=errors)
    flash("New price recorded; orders quoted before keep the price they were quoted at.")
    return redirect(url_for(".vendors_page"))


def _price_error_field(error: CreditsError) -> str:
    """The form field a service's refusal of a price sheet belongs at."""
    if error.status == 404:
        return "vendor_id"
    return "reason" if error.extra.get("field") == "reason" else "effective_from"


def _basis_points(text: str) -> int:
    """'2.5' (per cent) → 250; blank is no fee."""
    if not text.strip():
        return 0
    try:
        percent = float(text.strip())
    except ValueError:
        raise ValueError("give a percentage, for example 2.5") from None
    # float() reads "inf", "nan" and "1e400" too; none of them rounds to basis points.
    if not math.isfinite(percent):
        raise ValueError("give a percentage from 0 to 100, to two decimals")
    points = round(percent * 100)
    if not 0 <= points <= BASIS_POINTS or abs(points - percent * 100) > 1e-6:
        raise ValueError("give a percentage from 0 to 100, to two decimals")
    return points


# Disputes.


def _resolve_field(error: CreditsError) -> str:
    if not isinstance(error, InvalidInput):
        return "form"
    return "refund" if "refund" in error.detail else "note"


def _disputes_page(status: int = 200, **context: Any) -> ResponseReturnValue:
    me = _ops()
    with transaction() as db:
        disputed = list_orders(db, me, status=OrderStatus.DISPUTED, limit=DISPUTES_SHOWN)
    return render(
        "ops/labelling_disputes.html",
        orders=disputed,
        resolutions=[resolution.value for resolution in Resolution],
        form=context.pop("form", {}),
        errors=context.pop("errors", {}),
        failed=context.pop("failed", None),
        **context,
    ), status


@blueprint.get("/disputes")
@login_required
def disputes() -> ResponseReturnValue:
    return _disputes_page()


@blueprint.post("/orders/<int:order_id>/resolve")
@login_required
def resolve(order_id: int) -> ResponseReturnValue:
    me = _ops()
    form = {key: request.form.get(key, "") for key in RESOLVE_FIELDS}
    errors: dict[str, str] = {}
    refund = 0
    try:
        resolution = Resolution(form["resolution"])
    except ValueError:
        errors["resolution"] = "choose accept, refund or cancel"
        resolution = Resolution.ACCEPTED
    if resolution is Resolution.REFUNDED and not errors:
        try:
            refund = parse_credits(form["refund"])
        except InvalidCreditsAmount as error:
            errors["refund"] = error.detail
    if not errors:
        try:
            with transaction() as db:
                orders.resolve_dispute(
                    db,
                    order_id=order_id,
                    resolution=resolution,
                    actor=me,
                    note=form["note"],
                    refund_micro=refund,
                )
        except NotFound:
            abort(404)
        except CreditsError as error:
            errors[_resolve_field(error)] = str(error)
    if errors:
        return _disputes_page(400, form=form, errors=errors, failed=order_id)
    flash(f"Dispute on order {order_id} resolved: {resolution.value}.")
    return redirect(url_for(".disputes"))
