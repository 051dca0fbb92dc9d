"""``credits labelling sync-label-studio``: the Label Studio sweep, run by hand.

The embedded chores and Celery beat run the same sweep every two minutes;
this command is for ops who want it now, or for one order (``--order``).
"""

from __future__ import annotations

import click

from credits.cli_support import ROW_ID, cli_session_factory, cli_settings, fail, reports_errors
from credits.labelling.label_studio import label_studio_client_from_settings
from credits.labelling.label_studio_loop import SweepReport, sweep_with_settings


@click.command("sync-label-studio")
@click.option(
    "--order", "order_ids", type=ROW_ID, multiple=True, help="Only this order (repeatable)."
)
@reports_errors
def sync_label_studio(*, order_ids: tuple[int, ...]) -> None:
    """Place waiting orders in Label Studio and record completed annotations.

    Exits 1 when an order could not be placed or collected from (each named)."""
    settings = cli_settings()
    client = label_studio_client_from_settings(settings)
    if client is None:
        fail("Label Studio is not configured: set CREDITS_LABEL_STUDIO_URL and _TOKEN")
    report = sweep_with_settings(
        cli_session_factory(), client, settings, order_ids=list(order_ids) or None
    )
    _print(report)
    if report.failed:
        raise SystemExit(1)


def _print(report: SweepReport) -> None:
    for order_id, imported in report.placed.items():
        click.echo(f"order {order_id}: {imported} tasks imported")
    for order_id, recorded in report.recorded.items():
        click.echo(f"order {order_id}: {recorded} annotations recorded")
    for order_id, skipped in report.skipped.items():
        for annotation_id, why in skipped:
            click.echo(f"order {order_id}: annotation {annotation_id} not delivered: {why}")
    for order_id, why in report.failed.items():
        click.echo(f"order {order_id} failed: {why}", err=True)
    click.echo(
        f"{len(report.placed)} placed, {sum(report.recorded.values())} annotations recorded,"
        f" {len(report.failed)} failed"
    )


@click.group()
def labelling() -> None:
    """Labelling orders: vendors, prices, orders and their adapters."""


labelling.add_command(sync_label_studio)
