"""``credits transparency``: the signing key, the log's status, integration and a
full check of the database against the tiles and the signed checkpoint."""

from __future__ import annotations

import json
from datetime import datetime

import click

from credits import formatting as fmt
from credits.cli_support import (
    cli_session_factory,
    cli_settings,
    cli_transaction,
    fail,
    reports_errors,
)
from credits.transparency.integrator import integrate_all, summary
from credits.transparency.log_check import check_log
from credits.transparency.metrics import prometheus_text
from credits.transparency.service import init_key, log_status, tile_store
from credits.transparency.witness_cli import witness, witness_key


@click.group()
def transparency() -> None:
    """The public transparency log of audit events (docs/transparency.md)."""


@transparency.command(name="init-key")
@reports_errors
def init_key_command() -> None:
    """Make the Ed25519 key that signs checkpoints (mode 0600; never overwrites)."""
    settings = cli_settings()
    signer = init_key(settings)
    click.echo(f"wrote {settings.transparency_key_path}")
    click.echo(f"verifier key: {signer.verifier.key_string()}")


@transparency.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--prometheus", is_flag=True, help="Print Prometheus metrics (text format).")
@reports_errors
def status(as_json: bool, prometheus: bool) -> None:
    """Tree size, root, rows waiting, integration delay, verifier keys."""
    settings = cli_settings()
    with cli_transaction(snapshot=True) as session:
        report = log_status(session, settings)
    if prometheus:
        click.echo(prometheus_text(report).decode(), nl=False)
    elif as_json:
        click.echo(report.model_dump_json())
    else:
        for name, value in report.model_dump().items():
            click.echo(f"{_label(name)}: {_shown(value)}")


def _label(name: str) -> str:
    """'integration_delay_s' → 'integration delay'."""
    return name.removesuffix("_s").removesuffix("_at").replace("_", " ")


def _shown(value: object) -> str:
    if isinstance(value, list):
        return "\n  ".join(["", *map(str, value)])
    if isinstance(value, datetime):
        return fmt.when(value)
    if isinstance(value, float):
        return fmt.duration(value)
    return fmt.NOTHING if value is None else str(value)


@transparency.command()
@reports_errors
def integrate() -> None:
    """Integrate every eligible audit row now and sign a checkpoint."""
    result = summary(integrate_all(cli_session_factory(), cli_settings()))
    if result["busy"]:
        click.echo("another integrator is running; try again", err=True)
    click.echo(json.dumps(result))


@transparency.command()
@reports_errors
def verify() -> None:
    """Recompute the tree from the audit rows; compare tiles, root and signature."""
    settings = cli_settings()
    with cli_transaction(snapshot=True) as session:
        verdict = check_log(session, settings, tile_store(settings))
    if not verdict.ok:
        fail(f"transparency log at size {verdict.size}: {verdict.problem}")
    click.echo(f"ok: {verdict.size} entries, root {verdict.root_hash or '-'}")


# The witness runs away from the platform and needs no database: commands of its own.
transparency.add_command(witness)
transparency.add_command(witness_key)
