"""``credits allocations``: list, run the expiry sweep, adjust (ops).

One transaction and one service call per command, like :mod:`credits.grants.cli`.
"""

from __future__ import annotations

import json
import uuid

import click
from rich.console import Console
from rich.table import Table

from credits import formatting as fmt
from credits.cli_support import ROW_ID, cli_transaction, reports_errors
from credits.grants.allocations import adjust_allocation_replayed, expire_allocations
from credits.grants.queries import MAX_PAGE
from credits.grants.schemas import AllocationOut
from credits.identity.access import CLI_READER
from credits.identity.access_proposals import list_allocations_for_actor
from credits.identity.actor import Actor
from credits.identity.service import actor_for_email
from credits.money import parse_credits

SWEEPER = Actor.system("allocations-sweep")


def _print(found: list[AllocationOut], title: str | None = None) -> None:
    table = Table(title=title)
    headers = ["id", "project", "program", "currency", "awarded", "available", "starts", "expires"]
    for header in [*headers, "status"]:
        table.add_column(header)
    for a in found:
        table.add_row(
            str(a.id),
            str(a.project_id),
            str(a.program_id),
            f"{fmt.currency_name(a.currency)} credits",
            fmt.exact_number(a.awarded_micro),
            fmt.exact_number(a.available_micro),
            fmt.from_day(a.starts_at),
            fmt.until_day(a.expires_at),
            fmt.status(a.status),
        )
    Console(width=160).print(table)


@click.group()
def allocations() -> None:
    """Awarded credits per project, currency and period: list, expire, adjust."""


@allocations.command("list")
@click.option("--project", "project_id", type=ROW_ID, help="Only this project's allocations.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (micro-credits) instead.")
@reports_errors
def list_command(project_id: int | None, as_json: bool) -> None:
    """List allocations by id, with what their ledger accounts hold."""
    found: list[AllocationOut] = []
    cursor: int | None = None
    with cli_transaction() as session:
        while True:
            page = list_allocations_for_actor(
                session, CLI_READER, project_id=project_id, cursor=cursor, limit=MAX_PAGE
            )
            found += page.items
            if (cursor := page.next_cursor) is None:
                break
    if as_json:
        click.echo(json.dumps([allocation.model_dump(mode="json") for allocation in found]))
        return
    _print(found)


@allocations.command("expire")
@click.option("--as", "as_email", help="Email of an ops user; the platform's sweeper by default.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (micro-credits) instead.")
@reports_errors
def expire_command(as_email: str | None, as_json: bool) -> None:
    """Move each ended allocation's unreserved remainder to the expiry sink (safe to re-run)."""
    with cli_transaction() as session:
        actor = actor_for_email(session, as_email) if as_email else SWEEPER
        swept = expire_allocations(session, actor=actor)
    if as_json:
        click.echo(json.dumps([allocation.model_dump(mode="json") for allocation in swept]))
        return
    click.echo(f"{len(swept)} allocation(s) expired")
    if swept:
        _print(swept)


@allocations.command("adjust")
@click.argument("allocation_id", type=ROW_ID)
@click.option("--amount", required=True, help="Credits to add (2.5) or remove (-2.5).")
@click.option("--reason", required=True, help="Why; kept in the journal and the audit log.")
@click.option("--as", "as_email", required=True, help="Email of an ops user.")
@click.option("--key", help="Idempotency key; a random one is used when omitted.")
@reports_errors
def adjust_command(
    *, allocation_id: int, amount: str, reason: str, as_email: str, key: str | None
) -> None:
    """Correct an allocation's balance through the ledger (ops, with a reason)."""
    micro = parse_credits(amount, signed=True)
    with cli_transaction() as session:
        allocation, replayed = adjust_allocation_replayed(
            session,
            allocation_id=allocation_id,
            amount=micro,
            actor=actor_for_email(session, as_email),
            reason=reason,
            key=key or f"cli:{uuid.uuid4()}",
        )
    note = " (replayed)" if replayed else ""
    click.echo(
        f"allocation {allocation.id}: {fmt.money(micro, allocation.currency, exact=True)}; "
        f"available {fmt.money(allocation.available_micro, allocation.currency, exact=True)}"
        f"{note}"
    )
