"""``credits labelling``: orders and what they do next; vendors and their prices
(ops) are in :mod:`credits.labelling.cli_vendors`.

Amounts are typed and shown in credits (``2.5``); ``--json`` prints what the
API answers, in micro-credits. Commands that change something name the user
they act as with ``--as EMAIL``, and are held to that user's rights.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import click
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
from credits.identity.service import actor_for_email
from credits.labelling import listing, orders, queries, vendors
from credits.labelling.cli_common import AS_OPTION, JSON_OPTION, echo_json, parse_model
from credits.labelling.cli_label_studio import labelling
from credits.labelling.cli_vendors import price_text, prices, vendors_group
from credits.labelling.label_schema import SchemaKind
from credits.labelling.models import OrderStatus, Resolution
from credits.labelling.requests import OrderCreate, create_order
from credits.labelling.schemas import OrderOut
from credits.money import format_credits, parse_credits

__all__ = ["labelling"]

labelling.add_command(vendors_group)
labelling.add_command(prices)


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
        echo_json(page)
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
        echo_json(order)
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
        ("price", price_text(sheet) + ("" if sheet is None else f" (sheet {sheet.id})")),
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
        request = parse_model(OrderCreate, {"order": order, "upload": upload})
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
