"""The ``credits`` command: thin commands that open one transaction and call a service."""

from __future__ import annotations

import click

from credits.cli_db import db, serve
from credits.cli_support import requires_migrated_database
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


# Every command first checks that the database is migrated (one query), so one run
# in the wrong directory or against the wrong URL is refused in one line and makes
# nothing; but not these. ``db`` makes and migrates the database, ``init-key``
# writes a file, the witness runs away from the platform, and the jobs commands
# that drive the pool check once their executor has started, so that a pool which
# cannot start here is named first.
NO_DATABASE_CHECK_FIRST = frozenset(
    {
        ("db",),
        ("transparency", "init-key"),
        ("transparency", "witness"),
        ("transparency", "witness-key"),
        ("jobs", "schedule"),
        ("jobs", "reconcile"),
    }
)


def _require_migrated_database(command: click.Command, path: tuple[str, ...]) -> None:
    if path in NO_DATABASE_CHECK_FIRST:
        return
    if isinstance(command, click.Group):
        for name, subcommand in command.commands.items():
            _require_migrated_database(subcommand, (*path, name))
    elif command.callback is not None:
        command.callback = requires_migrated_database(command.callback)


_require_migrated_database(main, ())
