"""``credits ledger``: balances, verification and ops adjustments."""

from __future__ import annotations

import json
import uuid

import click
from rich.console import Console
from rich.table import Table

from credits import formatting as fmt
from credits.cli_support import (
    ROW_ID,
    cli_transaction,
    fail,
    reports_errors,
)
from credits.identity.service import actor_for_email
from credits.ledger import queries, service
from credits.ledger.models import AccountKind, AccountStatus, Currency
from credits.ledger.verify import verify_ledger
from credits.money import parse_credits


@click.group()
def ledger() -> None:
    """Balances, verification and adjustments of the credit ledger."""


@ledger.command()
@click.option("--account", "account_id", type=ROW_ID, help="Account id.")
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
    unit = f"{fmt.currency_name(account.currency)} credits"
    title = f"account {account.id} {account.code} ({unit}, {fmt.status(account.status)})"
    table = Table()
    for column in ("posted", "held", "incoming", "available"):
        table.add_column(column, justify="right")
    table.add_row(
        *(
            fmt.exact_number(getattr(figures, name))
            for name in ("posted", "held", "incoming", "available")
        )
    )
    Console().print(title)
    Console().print(table)


@ledger.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@reports_errors
def verify(as_json: bool) -> None:
    """Check counters, holds and audit hashes against the journal; exit 1 on any mismatch."""
    with cli_transaction(snapshot=True) as session:
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
@click.option("--account", "account_id", type=ROW_ID, required=True, help="Account id.")
@click.option("--amount", required=True, help="Credits to add; negative removes (e.g. -2.5).")
@click.option("--reason", required=True, help="Why; kept in the journal and the audit log.")
@click.option("--as", "as_email", required=True, help="Email of the ops user making the change.")
@click.option("--key", help="Idempotency key; a random one is used when omitted.")
@reports_errors
def adjust(account_id: int, amount: str, reason: str, as_email: str, key: str | None) -> None:
    """Add or remove credits on an account (ops only, with a reason)."""
    micro = parse_credits(amount, signed=True)
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
        f"transfer {transfer.id}: {fmt.money(micro, transfer.currency, exact=True)}"
        f" on account {account_id}{note}"
    )


@ledger.command()
@click.option("--project", "project_id", type=ROW_ID, help="Only this project's accounts.")
@click.option("--currency", type=click.Choice([c.value for c in Currency]))
@click.option("--kind", type=click.Choice([k.value for k in AccountKind]))
@reports_errors
def accounts(project_id: int | None, currency: str | None, kind: str | None) -> None:
    """List accounts with their balances in credits."""
    with cli_transaction() as session:
        rows = queries.list_accounts(session, project_id=project_id, currency=currency, kind=kind)
    table = Table()
    for column in (
        "id",
        "code",
        "kind",
        "currency",
        "status",
        "ends",
        "posted",
        "held",
        "available",
    ):
        table.add_column(
            column, justify="right" if column in {"posted", "held", "available"} else "left"
        )
    for account in rows:
        table.add_row(
            str(account.id),
            account.code,
            fmt.status(account.kind),
            f"{fmt.currency_name(account.currency)} credits",
            fmt.status(account.status),
            fmt.until_day(account.expires_at) if account.expires_at else "",
            fmt.exact_number(account.credits_posted - account.debits_posted),
            fmt.exact_number(account.debits_pending),
            fmt.exact_number(account.available),
        )
    Console(width=160).print(table)


@ledger.command("set-status")
@click.option("--account", "account_id", type=ROW_ID, required=True, help="Account id.")
@click.option(
    "--status",
    type=click.Choice([AccountStatus.ACTIVE.value, AccountStatus.SUSPENDED.value]),
    required=True,
)
@click.option("--reason", required=True, help="Why; kept in the audit log.")
@click.option("--as", "as_email", required=True, help="Email of the ops user making the change.")
@reports_errors
def set_status(account_id: int, status: str, reason: str, as_email: str) -> None:
    """Suspend an account (no new holds) or make it active again (ops only)."""
    with cli_transaction() as session:
        actor = actor_for_email(session, as_email)
        account = service.set_account_status(
            session, account_id=account_id, status=status, actor=actor, reason=reason
        )
    click.echo(f"account {account.id} {account.code} is {fmt.status(account.status)}")
