"""``credits pool``: GPU flavours and their effective-dated rates (ops)."""

from __future__ import annotations

from datetime import datetime

import click
from rich.console import Console
from rich.table import Table

from credits import formatting as fmt
from credits.cli_support import (
    cli_transaction,
    exact_duration,
    fail,
    reports_errors,
)
from credits.db import utcnow
from credits.identity.people import people_in_labels
from credits.identity.service import actor_for_email
from credits.money import parse_credits
from credits.pool import service
from credits.pool.models import DEFAULT_CHECKPOINT_GRACE_CAP_S
from credits.pool.schemas import FlavourList, RateList
from credits.schema_types import EARLIEST_YEAR, LATEST_YEAR


@click.group()
def pool() -> None:
    """GPU flavours in the pool and what a GPU-hour of each costs."""


@pool.group()
def flavours() -> None:
    """The kinds of GPU node a job may ask for."""


@pool.group()
def rates() -> None:
    """Effective-dated rates in credits per GPU-hour; history is never rewritten."""


@flavours.command("add")
@click.option("--name", required=True, help="Slug, e.g. a100-80gb.")
@click.option(
    "--node-label", "node_label_value", required=True, help="Node label value, e.g. NVIDIA-H100."
)
@click.option("--gpu-memory-gb", type=int, required=True, help="Memory of one GPU, in GB.")
@click.option("--gpus-per-node", type=int, required=True, help="GPUs on one node (1 to 64).")
@click.option("--description", help="What the flavour is for.")
@click.option(
    "--max-checkpoint-grace",
    "grace_cap",
    type=int,
    default=DEFAULT_CHECKPOINT_GRACE_CAP_S,
    show_default=True,
    help="Longest checkpoint grace (seconds) a checkpointable job may ask.",
)
@click.option("--as", "as_email", required=True, help="Email of the ops user making the change.")
@reports_errors
def add_flavour(
    *,
    name: str,
    node_label_value: str,
    gpu_memory_gb: int,
    gpus_per_node: int,
    description: str | None,
    grace_cap: int,
    as_email: str,
) -> None:
    """Add a GPU flavour (ops only); it has no rate until one is set."""
    with cli_transaction() as session:
        flavour = service.add_flavour(
            session,
            name=name,
            node_label_value=node_label_value,
            gpu_memory_gb=gpu_memory_gb,
            gpus_per_node=gpus_per_node,
            description=description,
            max_checkpoint_grace_seconds=grace_cap,
            actor=actor_for_email(session, as_email),
        )
    click.echo(
        f"flavour {flavour.name}: {flavour.gpus_per_node} x {flavour.gpu_memory_gb} GB GPUs "
        f"per node, node label value {flavour.node_label_value}"
    )


@flavours.command("set-checkpoint-grace")
@click.argument("name")
@click.argument("seconds", type=int)
@click.option("--as", "as_email", required=True, help="Email of the ops user making the change.")
@reports_errors
def set_checkpoint_grace(*, name: str, seconds: int, as_email: str) -> None:
    """Cap the checkpoint grace a job of flavour NAME may ask at SECONDS (ops only)."""
    with cli_transaction() as session:
        flavour = service.set_checkpoint_grace_cap(
            session,
            name=name,
            max_checkpoint_grace_seconds=seconds,
            actor=actor_for_email(session, as_email),
        )
    click.echo(
        f"flavour {flavour.name}: checkpoint grace at most "
        f"{exact_duration(flavour.max_checkpoint_grace_seconds)}"
    )


@flavours.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def list_flavours(as_json: bool) -> None:
    """List flavours with the rate in force now, in credits per GPU-hour."""
    with cli_transaction() as session:
        found = service.list_flavours(session)
        in_force = {rate.flavour: rate for rate in service.list_rates(session) if rate.in_force}
    if as_json:
        click.echo(FlavourList(items=found).model_dump_json(indent=2))
        return
    table = Table()
    columns = ("name", "node label value", "GPU GB", "GPUs/node", "grace cap")
    for column in (*columns, "GPU credits/GPU-hour now", "description"):
        right = column.startswith(("GPU", "grace"))
        table.add_column(column, justify="right" if right else "left")
    for flavour in found:
        rate = in_force.get(flavour.name)
        table.add_row(
            flavour.name,
            flavour.node_label_value,
            str(flavour.gpu_memory_gb),
            str(flavour.gpus_per_node),
            exact_duration(flavour.max_checkpoint_grace_seconds),
            "" if rate is None else fmt.exact_number(rate.micro_credits_per_gpu_hour),
            flavour.description or "",
        )
    Console(width=160).print(table)


def _parse_time(text: str | None) -> datetime:
    """An ISO 8601 time with a timezone, or now when none is given."""
    if text is None:
        return utcnow()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{text!r} is not an ISO 8601 time, e.g. 2030-01-01T00:00:00Z")
    if moment.utcoffset() is None:
        fail(f"{text!r} has no timezone; add Z or an offset such as +02:00")
    # The API's bounds (ApiTime): a year far out overflows when moved to UTC.
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        fail(f"{text!r}: the year must lie between {EARLIEST_YEAR} and {LATEST_YEAR}")
    return moment


@rates.command("set")
@click.option("--flavour", required=True, help="Flavour name, e.g. a100-80gb.")
@click.option("--credits-per-gpu-hour", "rate", required=True, help="Credits, e.g. 2.5.")
@click.option("--effective-from", help="ISO 8601 time with a timezone; default: now.")
@click.option("--reason", help="Why; kept with the rate and in the audit log.")
@click.option("--as", "as_email", required=True, help="Email of the ops user making the change.")
@reports_errors
def set_rate(
    flavour: str, rate: str, effective_from: str | None, reason: str | None, as_email: str
) -> None:
    """Set a flavour's rate from a time on (ops only); it may not start in the past."""
    micro = parse_credits(rate)
    starts = _parse_time(effective_from)
    with cli_transaction() as session:
        version = service.set_rate(
            session,
            flavour=flavour,
            credits_per_gpu_hour_micro=micro,
            effective_from=starts,
            reason=reason,
            actor=actor_for_email(session, as_email),
        )
    click.echo(
        f"rate {version.id}: {fmt.money(version.micro_credits_per_gpu_hour, exact=True)} per "
        f"GPU-hour on {version.flavour} from {fmt.when(version.effective_from)}"
    )


@rates.command("list")
@click.option("--flavour", help="Only this flavour's rates.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (micro-credits) instead.")
@reports_errors
def list_rates(flavour: str | None, as_json: bool) -> None:
    """Rate history, newest first; the version in force now is marked."""
    with cli_transaction() as session:
        found = service.list_rates(session, flavour=flavour)
        people = people_in_labels(session, [rate.actor for rate in found])
    if as_json:
        click.echo(RateList(items=found).model_dump_json(indent=2))
        return
    table = Table()
    for column in ("flavour", "effective from", "GPU credits/GPU-hour", "in force", "by", "reason"):
        table.add_column(column, justify="right" if column.startswith("GPU") else "left")
    for rate in found:
        table.add_row(
            rate.flavour,
            fmt.when(rate.effective_from),
            fmt.exact_number(rate.micro_credits_per_gpu_hour),
            "yes" if rate.in_force else "",
            fmt.person(rate.actor, people, with_email=True),
            rate.reason or "",
        )
    Console(width=160).print(table)


@pool.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def status(*, as_json: bool) -> None:
    """Capacity, GPUs in use and free, and the queue, per flavour."""
    from credits.jobs.cli import pool_status_command  # noqa: PLC0415 - executors load only here

    pool_status_command(as_json=as_json)
