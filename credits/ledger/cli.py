"""``credits ledger``: balances, verification and ops adjustments."""

from __future__ import annotations

import json
import uuid

import click
from rich.console import Console
from rich.table import Table

from credits.cli_support import (
    cli_transaction,
    fail,
    format_credits,
    parse_credits,
    reports_errors,
)
from credits.identity.service import actor_for_email
from credits.ledger import queries, service
from credits.ledger.verify import verify_ledger


@click.group()
def ledger() -> None:
    """Balances, verification and adjustments of the credit ledger."""


@ledger.command()
@click.option("--account", "account_id", type=int, help="Account id.")
@click.option("--code", help="Account code, e.g. system:usage_sink:gpu.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def balance(account_id: int | None, code: str | None, as_json: bool) -> None:
    """Show one account's balance in credits (and micro-credits with --json)."""
    if (account_id is None) == (code is None):
        fail("name the account with --account ID or --code CODE")
    with cli_transaction() as session:
        if code is not None:
            account = queries.get_account_by_code(session, code=code)
        else:
            account = queries.get_account(session, account_id=int(account_id or 0))
        figures = queries.get_balance(session, account_id=account.id)
    if as_json:
        click.echo(
            json.dumps(
                {"account": account.model_dump(mode="json"), **figures.model_dump(mode="json")}
            )
        )
        return
    title = f"account {account.id} {account.code} ({account.currency.value}, {account.status})"
    table = Table(title=title)
    for column in ("posted", "held", "incoming", "available"):
        table.add_column(column, justify="right")
    table.add_row(
        *(
            format_credits(getattr(figures, name))
            for name in ("posted", "held", "incoming", "available")
        )
    )
    Console().print(table)


@ledger.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@reports_errors
def verify(as_json: bool) -> None:
    """Check counters, holds and audit hashes against the journal; exit 1 on any mismatch."""
    with cli_transaction() as session:
        report = verify_ledger(session)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(
            f"checked {report.accounts_checked} accounts, {report.transfers_checked} transfers, "
            f"{report.hold_parts_checked} hold parts, {report.audit_events_checked} audit events"
        )
        for problem in report.problems:
            click.echo(f"MISMATCH {problem}")
        click.echo(
            "ledger OK" if report.ok else f"ledger FAILED: {len(report.problems)} problem(s)"
        )
    if not report.ok:
        raise SystemExit(1)


@ledger.command()
@click.option("--account", "account_id", type=int, required=True, help="Account id.")
@click.option("--amount", required=True, help="Credits to add; negative removes (e.g. -2.5).")
@click.option("--reason", required=True, help="Why; kept in the journal and the audit log.")
@click.option("--as", "as_email", required=True, help="Email of the ops user making the change.")
@click.option("--key", help="Idempotency key; a random one is used when omitted.")
@reports_errors
def adjust(account_id: int, amount: str, reason: str, as_email: str, key: str | None) -> None:
    """Add or remove credits on an account (ops only, with a reason)."""
    micro = parse_credits(amount)
    with cli_transaction() as session:
        actor = actor_for_email(session, as_email)
        result = service.adjust(
            session,
            key=key or f"cli-adjust:{uuid.uuid4()}",
            account_id=account_id,
            amount=micro,
            actor=actor,
            reason=reason,
        )
    transfer = result.transfers[0]
    note = " (replayed)" if result.replayed else ""
    click.echo(
        f"transfer {transfer.id}: {format_credits(micro)} credits on account {account_id}{note}"
    )
