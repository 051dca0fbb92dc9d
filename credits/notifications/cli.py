"""``credits notifications``: run the sender once, list the outbox."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from credits import formatting as fmt
from credits.cli_support import (
    cli_session_factory,
    cli_settings,
    cli_transaction,
    reports_errors,
)
from credits.notifications.mail import make_mailer
from credits.notifications.service import list_notifications, send_pending


@click.group()
def notifications() -> None:
    """The notification outbox: e-mails waiting to be sent, and those sent."""


@notifications.command()
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@reports_errors
def send(limit: int) -> None:
    """Send due notifications once (SMTP, or the Maildir under var/ when embedded)."""
    settings = cli_settings()
    mailer = make_mailer(settings)
    # The sender runs its own short transactions: none is open while mail is sent.
    report = send_pending(
        cli_session_factory(), mailer=mailer, limit=limit, mail_from=settings.smtp_from
    )
    click.echo(f"sent {len(report.sent)}, failed {len(report.failed)}")
    if report.gave_up:
        click.echo(f"gave up on {', '.join(map(str, report.gave_up))}", err=True)


@notifications.command(name="list")
@click.option("--pending", is_flag=True, help="Only notifications not sent yet.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def list_(pending: bool, limit: int, as_json: bool) -> None:
    """List notifications, newest first."""
    with cli_transaction(snapshot=True) as session:
        rows = list_notifications(session, pending=pending, limit=limit)
    if as_json:
        click.echo(json.dumps([row.model_dump(mode="json") for row in rows]))
        return
    table = Table(title="notifications")
    for column in ("id", "kind", "to", "subject", "created", "sent", "attempts", "last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id),
            fmt.status(row.kind),
            row.recipient_email,
            row.subject,
            fmt.when(row.created_at),
            fmt.when(row.sent_at) if row.sent_at else "",
            str(row.attempts),
            row.last_error or "",
        )
    Console().print(table)
