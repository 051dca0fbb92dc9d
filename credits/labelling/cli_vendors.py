"""``credits labelling vendors`` and ``prices``: who labels, and at what price (ops).

Prices are typed and shown in credits (``2.5``); ``--json`` prints what the API
answers, in micro-credits.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import click
from rich.console import Console
from rich.table import Table

from credits import formatting as fmt
from credits.cli_support import cli_transaction, fail, reports_errors
from credits.identity.people import people_in_labels
from credits.identity.service import actor_for_email
from credits.labelling import vendors
from credits.labelling.cli_common import (
    AS_OPTION,
    JSON_OPTION,
    ListByDefault,
    parse_model,
)
from credits.labelling.label_schema import SchemaKind
from credits.labelling.models import Adapter, PriceUnit
from credits.labelling.schemas import PriceSheetIn, PriceSheetOut, VendorIn, VendorOut
from credits.money import parse_credits

__all__ = ["price_text", "prices", "vendors_group"]


# Vendors.


@click.group("vendors", cls=ListByDefault)
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
            price_text(vendor.price),
            "yes" if vendor.active else "retired",
        )
    Console(width=160).print(table)


def price_text(sheet: PriceSheetOut | None) -> str:
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
    vendor = parse_model(
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


@click.group("prices", cls=ListByDefault)
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
    sheet = parse_model(
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
    click.echo(f"price {added.id}: {price_text(added)} from {fmt.when(added.effective_from)}")


# Orders.
