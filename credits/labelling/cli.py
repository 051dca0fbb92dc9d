"""``credits labelling``: vendors and their prices (ops), orders and what they do next.

Amounts are typed and shown in credits (``2.5``); ``--json`` prints what the
API answers, in micro-credits. Commands that change something name the user
they act as with ``--as EMAIL``, and are held to that user's rights.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from credits import formatting as fmt
from credits.cli_support import (
    LIMIT_OPTION,
    ROW_ID,
    all_pages,
    at_most,
    cli_transaction,
    fail,
    reports_errors,
)
from credits.identity.access import CLI_READER
from credits.identity.people import people_in_labels
from credits.identity.service import actor_for_email
from credits.labelling import listing, orders, queries, vendors
from credits.labelling.cli_label_studio import labelling
from credits.labelling.label_schema import SchemaKind
from credits.labelling.models import Adapter, OrderStatus, PriceUnit, Resolution
from credits.labelling.requests import OrderCreate, create_order
from credits.labelling.schemas import OrderOut, PriceSheetIn, PriceSheetOut, VendorIn, VendorOut
from credits.money import format_credits, parse_credits

__all__ = ["labelling"]

M = TypeVar("M", bound=BaseModel)
AS_OPTION = click.option(
    "--as", "as_email", required=True, help="Email of the user making the change."
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON (micro-credits).")


class ListByDefault(click.Group):
    """A group whose arguments go to its ``list`` command unless they name another."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def _model(model: type[M], values: dict[str, Any]) -> M:
    """``values`` as ``model``, or one line naming the first field it refuses."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"])) or "input"
        fail(f"{where}: {first['msg']}")


def _echo_json(model: BaseModel) -> None:
    click.echo(model.model_dump_json(indent=2))


# Vendors.


@labelling.group("vendors", cls=ListByDefault)
def vendors_group() -> None:
    """Labelling vendors: list (the default), add, retire, restore."""


@vendors_group.command("list")
@JSON_OPTION
@reports_errors
def list_vendors(*, as_json: bool) -> None:
    """Every vendor by name, retired ones too, with the price in force now."""
    with cli_transaction(snapshot=True) as session:
        found = vendors.list_vendors(session, include_retired=True)
    if as_json:
        click.echo(f"[{','.join(v.model_dump_json() for v in found)}]")
        return
    table = Table("id", "name", "adapter", "task kinds", "price now", "active")
    for vendor in found:
        table.add_row(
            str(vendor.id),
            vendor.name,
            fmt.status(vendor.adapter),
            ", ".join(fmt.status(kind) for kind in vendor.task_kinds),
            _price_text(vendor.price),
            "yes" if vendor.active else "retired",
        )
    Console(width=160).print(table)


def _price_text(sheet: PriceSheetOut | None) -> str:
    if sheet is None:
        return "none"
    fee = f" + {Decimal(sheet.fee_basis_points) / 100:g} %" if sheet.fee_basis_points else ""
    price = fmt.money(sheet.micro_credits_per_unit, "label", exact=True)
    return f"{price} per {fmt.status(sheet.unit)}{fee}"


@vendors_group.command("add")
@click.argument("name")
@click.option("--adapter", type=click.Choice([a.value for a in Adapter]), required=True)
@click.option(
    "--kinds",
    required=True,
    help=f"Task kinds it takes, comma-separated: {', '.join(k.value for k in SchemaKind)}.",
)
@click.option("--max-redundancy", type=int, default=5, show_default=True)
@click.option("--no-gold", is_flag=True, help="The vendor takes no gold items.")
@click.option("--description", default="")
@AS_OPTION
@reports_errors
def add_vendor(
    *,
    name: str,
    adapter: str,
    kinds: str,
    max_redundancy: int,
    no_gold: bool,
    description: str,
    as_email: str,
) -> None:
    """Add a vendor (ops only); it takes orders once it has a price."""
    vendor = _model(
        VendorIn,
        {
            "name": name,
            "adapter": adapter,
            "task_kinds": [kind.strip() for kind in kinds.split(",") if kind.strip()],
            "qc_options": {"gold_items": not no_gold, "max_redundancy": max_redundancy},
            "description": description,
        },
    )
    with cli_transaction() as session:
        added = vendors.add_vendor(session, vendor=vendor, actor=actor_for_email(session, as_email))
    click.echo(f"vendor {added.id}: {added.name} ({fmt.status(added.adapter)})")


def _set_active(vendor: str, as_email: str, *, active: bool) -> VendorOut:
    with cli_transaction() as session:
        return vendors.set_vendor_active(
            session,
            vendor_id=vendors.find_vendor_id(session, vendor),
            active=active,
            actor=actor_for_email(session, as_email),
        )


@vendors_group.command("retire")
@click.argument("vendor")
@AS_OPTION
@reports_errors
def retire_vendor(*, vendor: str, as_email: str) -> None:
    """Retire a vendor (ops only): no new orders; open orders go on."""
    done = _set_active(vendor, as_email, active=False)
    click.echo(f"vendor {done.id}: {done.name} retired")


@vendors_group.command("restore")
@click.argument("vendor")
@AS_OPTION
@reports_errors
def restore_vendor(*, vendor: str, as_email: str) -> None:
    """Bring a retired vendor back (ops only)."""
    done = _set_active(vendor, as_email, active=True)
    click.echo(f"vendor {done.id}: {done.name} restored")


# Prices.


@labelling.group(cls=ListByDefault)
def prices() -> None:
    """A vendor's price sheets: list (the default: prices VENDOR) or set one."""


@prices.command("list")
@click.argument("vendor")
@JSON_OPTION
@reports_errors
def list_prices(*, vendor: str, as_json: bool) -> None:
    """Every price-sheet version of VENDOR (id or name), newest first."""
    with cli_transaction(snapshot=True) as session:
        sheets = vendors.list_price_sheets(
            session, vendor_id=vendors.find_vendor_id(session, vendor)
        )
        people = people_in_labels(session, [sheet.actor for sheet in sheets])
    if as_json:
        click.echo(f"[{','.join(s.model_dump_json() for s in sheets)}]")
        return
    table = Table(
        "id", "effective from", "labelling credits per unit", "unit", "fee %", "by", "reason"
    )
    for sheet in sheets:
        table.add_row(
            str(sheet.id),
            fmt.when(sheet.effective_from),
            fmt.exact_number(sheet.micro_credits_per_unit),
            fmt.status(sheet.unit),
            f"{Decimal(sheet.fee_basis_points) / 100:g}",
            fmt.person(sheet.actor, people, with_email=True),
            sheet.reason or "",
        )
    Console(width=160).print(table)


def _basis_points(percent: str) -> int:
    try:
        points = Decimal(percent.strip()) * 100
    except InvalidOperation:
        fail(f"--fee-percent {percent!r} is not a number, e.g. 2.5")
    if not points.is_finite() or points != points.to_integral_value():
        fail(f"--fee-percent {percent!r} has more than two decimals")
    return int(points)


@prices.command("set")
@click.argument("vendor")
@click.option("--unit", type=click.Choice([u.value for u in PriceUnit]), required=True)
@click.option("--price", required=True, help="Credits per unit, e.g. 0.05.")
@click.option("--fee-percent", default="0", show_default=True, help="e.g. 2.5")
@click.option("--from", "starts", help="ISO 8601 time with a timezone; default: now.")
@click.option("--reason", help="Why; kept with the price and in the audit log.")
@AS_OPTION
@reports_errors
def set_price(
    *,
    vendor: str,
    unit: str,
    price: str,
    fee_percent: str,
    starts: str | None,
    reason: str | None,
    as_email: str,
) -> None:
    """Set VENDOR's price from a time on (ops only); it may not start in the past."""
    sheet = _model(
        PriceSheetIn,
        {
            "unit": unit,
            "micro_credits_per_unit": parse_credits(price),
            "fee_basis_points": _basis_points(fee_percent),
            "effective_from": starts,
            "reason": reason,
        },
    )
    with cli_transaction() as session:
        added = vendors.add_price_sheet(
            session,
            vendor_id=vendors.find_vendor_id(session, vendor),
            sheet=sheet,
            actor=actor_for_email(session, as_email),
        )
    click.echo(f"price {added.id}: {_price_text(added)} from {fmt.when(added.effective_from)}")


# Orders.


@labelling.command("orders")
@click.option("--project", type=ROW_ID, help="Only this project's orders.")
@click.option("--status", type=click.Choice([s.value for s in OrderStatus]))
@click.option("--vendor", help="Only this vendor's orders (id or name).")
@LIMIT_OPTION
@JSON_OPTION
@reports_errors
def list_orders(
    *,
    project: int | None,
    status: str | None,
    vendor: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Every order by id, oldest first (as ``programs list`` and ``allocations list``),
    or the first ``--limit`` of them."""
    with cli_transaction(snapshot=True) as session:
        query = listing.OrderQuery(
            project_id=project,
            status=None if status is None else OrderStatus(status),
            vendor_id=None if vendor is None else vendors.find_vendor_id(session, vendor),
            limit=listing.MAX_PAGE,
        )
        found = at_most(all_pages(partial(_orders_page, session, query)), limit)
        page = listing.OrderPage(items=found, next_cursor=None)
    if as_json:
        _echo_json(page)
        return
    headers = ("id", "project", "vendor", "title", "status", "quoted", "captured", "flag")
    table = Table(*headers, title="orders (labelling credits)")
    for order in page.items:
        table.add_row(
            str(order.id),
            str(order.project_id),
            order.vendor_name,
            order.title,
            fmt.status(order.status),
            fmt.exact_number(order.quoted_micro),
            fmt.exact_number(order.captured_micro),
            order.flag or "",
        )
    Console(width=160).print(table)


def _orders_page(
    session: Session, query: listing.OrderQuery, cursor: int | None
) -> tuple[list[OrderOut], int | None]:
    page = listing.list_orders(session, CLI_READER, query.model_copy(update={"cursor": cursor}))
    return page.items, page.next_cursor


@labelling.command("show")
@click.argument("order_id", type=ROW_ID)
@JSON_OPTION
@reports_errors
def show_order(*, order_id: int, as_json: bool) -> None:
    """One order, its figures in credits."""
    with cli_transaction(snapshot=True) as session:
        order = queries.get_order(session, CLI_READER, order_id=order_id)
    if as_json:
        _echo_json(order)
        return
    for label, value in _order_lines(order):
        click.echo(f"{label:<18}{value}")


def _order_lines(order: OrderOut) -> list[tuple[str, str]]:
    sheet = order.price_sheet
    lines = [
        ("order", f"{order.id}: {order.title}"),
        ("project", str(order.project_id)),
        ("vendor", f"{order.vendor_name} ({fmt.status(order.adapter)})"),
        ("status", fmt.status(order.status)),
        (
            "schema",
            f"{fmt.status(order.label_schema.kind)}: {', '.join(order.label_schema.labels)}",
        ),
        ("items", f"{order.items} ({order.gold_items} gold), {order.redundancy} per item"),
        ("annotations", str(order.annotations)),
        ("price", _price_text(sheet) + ("" if sheet is None else f" (sheet {sheet.id})")),
        ("units quoted", format_credits(order.quoted_units_micro, grouping=True)),
        ("units delivered", format_credits(order.delivered_units_micro, grouping=True)),
        ("quoted", f"{fmt.money(order.quoted_micro, 'label', exact=True)}"),
        ("captured", f"{fmt.money(order.captured_micro, 'label', exact=True)}"),
        ("frozen", f"{fmt.money(order.frozen_micro, 'label', exact=True)}"),
        ("overage", f"{fmt.money(order.overage_micro, 'label', exact=True)}"),
        ("refunded", f"{fmt.money(order.refunded_micro, 'label', exact=True)}"),
    ]
    optional = {
        "flag": order.flag,
        "dispute": order.dispute_reason,
        "resolution": None
        if order.resolution is None
        else f"{fmt.status(order.resolution)}: {order.resolution_note}",
    }
    lines += [(label, value) for label, value in optional.items() if value]
    return lines


def _summary(order: OrderOut) -> str:
    return (
        f"order {order.id}: {fmt.status(order.status)};"
        f" quoted {fmt.money(order.quoted_micro, 'label', exact=True)},"
        f" captured {fmt.money(order.captured_micro, 'label', exact=True)}"
    )


def _act(action: Callable[..., OrderOut], order_id: int, as_email: str, **extra: Any) -> None:
    """Runs one transition of the order as ``as_email`` and prints where it stands."""
    with cli_transaction() as session:
        done = action(session, order_id=order_id, actor=actor_for_email(session, as_email), **extra)
    click.echo(_summary(done))


@labelling.command("create")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--project", type=ROW_ID, required=True)
@click.option("--vendor", required=True, help="Vendor id or name.")
@click.option("--title", required=True)
@click.option("--kind", type=click.Choice([k.value for k in SchemaKind]), required=True)
@click.option("--labels", required=True, help="The labels, comma-separated.")
@click.option("--redundancy", type=int, default=1, show_default=True)
@click.option("--instructions", default="")
@click.option("--key", help="An idempotency key: the same key and file create one order.")
@AS_OPTION
@reports_errors
def create(
    *,
    file: Path,
    project: int,
    vendor: str,
    title: str,
    kind: str,
    labels: str,
    redundancy: int,
    instructions: str,
    key: str | None,
    as_email: str,
) -> None:
    """A draft order from FILE, a CSV (id, text, gold) or JSON Lines file of texts."""
    order = {
        "project_id": project,
        "title": title,
        "instructions": instructions,
        "label_schema": {"kind": kind, "labels": [x.strip() for x in labels.split(",")]},
        "redundancy": redundancy,
    }
    upload = {"file_name": file.name, "content": _read_text(file)}
    with cli_transaction() as session:
        order["vendor_id"] = vendors.find_vendor_id(session, vendor)
        request = _model(OrderCreate, {"order": order, "upload": upload})
        created = create_order(
            session, actor_for_email(session, as_email), request, store=None, request_key=key
        )
    click.echo(f"{_summary(created)}; {created.items} items")


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{file.name} is not UTF-8 text")


@labelling.command("quote")
@click.argument("order_id", type=ROW_ID)
@AS_OPTION
@reports_errors
def quote(*, order_id: int, as_email: str) -> None:
    """Price a draft at the vendor's price in force now."""
    _act(orders.quote_order, order_id, as_email)


@labelling.command("place")
@click.argument("order_id", type=ROW_ID)
@AS_OPTION
@reports_errors
def place(*, order_id: int, as_email: str) -> None:
    """Hold the quote on the project's labelling credits."""
    _act(orders.place_order, order_id, as_email)


@labelling.command("accept")
@click.argument("order_id", type=ROW_ID)
@AS_OPTION
@reports_errors
def accept(*, order_id: int, as_email: str) -> None:
    """Accept the delivered work; the rest of the hold is released."""
    _act(orders.accept_order, order_id, as_email)


@labelling.command("dispute")
@click.argument("order_id", type=ROW_ID)
@click.option("--reason", required=True)
@AS_OPTION
@reports_errors
def dispute(*, order_id: int, reason: str, as_email: str) -> None:
    """Freeze capture until ops resolve the dispute."""
    _act(orders.dispute_order, order_id, as_email, reason=reason)


@labelling.command("cancel")
@click.argument("order_id", type=ROW_ID)
@click.option("--reason")
@AS_OPTION
@reports_errors
def cancel(*, order_id: int, reason: str | None, as_email: str) -> None:
    """Cancel an order not yet delivered; what its hold has not captured is released."""
    _act(orders.cancel_order, order_id, as_email, reason=reason)


@labelling.command("resolve")
@click.argument("order_id", type=ROW_ID)
@click.option("--accept", "accept_", is_flag=True, help="Charge what was delivered.")
@click.option("--refund", help="Refund this many credits of what was charged.")
@click.option("--cancel", "cancel_", is_flag=True, help="Charge nothing frozen.")
@click.option("--note", required=True)
@AS_OPTION
@reports_errors
def resolve(
    *,
    order_id: int,
    accept_: bool,
    refund: str | None,
    cancel_: bool,
    note: str,
    as_email: str,
) -> None:
    """End a dispute (ops only): exactly one of --accept, --refund CREDITS, --cancel."""
    # Separate flags: with one shared destination, the last of two given would win
    # silently, and the order would settle one way when ops typed both.
    if [accept_, refund is not None, cancel_].count(True) != 1:
        fail("give exactly one of --accept, --refund CREDITS or --cancel")
    if refund is not None:
        resolution, refund_micro = Resolution.REFUNDED, parse_credits(refund)
    else:
        resolution = Resolution.ACCEPTED if accept_ else Resolution.CANCELLED
        refund_micro = 0
    with cli_transaction() as session:
        done = orders.resolve_dispute(
            session,
            order_id=order_id,
            resolution=resolution,
            note=note,
            refund_micro=refund_micro,
            actor=actor_for_email(session, as_email),
        )
    click.echo(f"{_summary(done)}, refunded {fmt.money(done.refunded_micro, 'label', exact=True)}")
