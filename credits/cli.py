"""The ``credits`` command: thin commands that open one transaction and call a service."""

from __future__ import annotations

import click

from credits.cli_db import db, serve
from credits.datasets.cli import datasets
from credits.demo_cli import demo
from credits.grants.allocations_cli import allocations
from credits.grants.cli import programs, projects
from credits.identity.cli import tokens, users
from credits.jobs.cli import jobs
from credits.labelling.cli import labelling
from credits.ledger.cli import ledger
from credits.notifications.cli import notifications
from credits.pool.cli import pool
from credits.reports.cli import reports
from credits.transparency.cli import transparency


@click.group()
@click.version_option(package_name="credits")
def main() -> None:
    """credits: GPU-hour and labelling credits for research funders."""


for _group in (
    db,
    serve,
    users,
    tokens,
    ledger,
    pool,
    programs,
    projects,
    allocations,
    notifications,
    jobs,
    reports,
    datasets,
    labelling,
    transparency,
    demo,
):
    main.add_command(_group)
