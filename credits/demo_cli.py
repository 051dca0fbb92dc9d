"""``credits demo seed``: the demo platform ``./scripts/up`` seeds on first start."""

from __future__ import annotations

import click

from credits.cli_support import cli_settings, cli_transaction, reports_errors
from credits.demo import local_pool, seed_demo


@click.group()
def demo() -> None:
    """A small demo platform for trying the portal."""


@demo.command()
@reports_errors
def seed() -> None:
    """Seed the demo once; prints the demo users' passwords only when it creates them."""
    flavour, gpus = local_pool(cli_settings())
    with cli_transaction() as session:
        result = seed_demo(session, flavour=flavour, gpus_per_node=gpus)
    if not result.created:
        click.echo(result.message)
        return
    click.echo(f"demo seeded: program {result.program_id}, project {result.project_id}, ", nl=False)
    click.echo(f"flavour {result.flavour} ({gpus} GPU slots)")
    click.echo("demo sign-ins (shown once; keep them):")
    for login in result.logins:
        click.echo(f"  {login.role:<10} {login.email:<32} {login.password}")
