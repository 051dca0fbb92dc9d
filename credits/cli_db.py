"""``credits db`` and ``credits serve``."""

from __future__ import annotations

import click

from credits import migrate
from credits.cli_support import cli_settings, reports_errors


@click.group()
def db() -> None:
    """Database migrations."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@reports_errors
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    settings = cli_settings()
    migrate.upgrade(settings.database_url.get_secret_value(), revision)
    click.echo(f"database at {revision}")


@db.command()
@click.option("--revision", required=True, help="Target revision, e.g. -1 or base.")
@reports_errors
def downgrade(revision: str) -> None:
    """Revert migrations down to REVISION."""
    migrate.downgrade(cli_settings().database_url.get_secret_value(), revision)
    click.echo(f"database at {revision}")


@db.command()
@reports_errors
def current() -> None:
    """Print the database's revision."""
    migrate.current(cli_settings().database_url.get_secret_value())


@click.command()
@reports_errors
def serve() -> None:
    """Serve the web app and API on CREDITS_HOST:CREDITS_PORT."""
    # The web stack loads only here.
    from credits.app import require_free_port  # noqa: PLC0415
    from credits.app import serve as serve_app  # noqa: PLC0415

    settings = cli_settings()
    # Said only once the port is known to be free: a second ./scripts/up gets the
    # one-line refusal alone, not "serving on" first.
    require_free_port(settings.host, settings.port)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    click.echo(f"serving on http://{host}:{settings.port} (Ctrl-C stops)")
    serve_app(settings)
