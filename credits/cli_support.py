"""What every CLI command shares: settings, one transaction, errors as one line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from sqlalchemy.orm import Session, sessionmaker

from credits import formatting as fmt
from credits.db import make_engine, make_session_factory, session_scope
from credits.errors import CreditsError
from credits.settings import Settings, SettingsError, load_settings

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turns a refusal into ``error: <detail>`` and exit 1, never a traceback."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (CreditsError, SettingsError) as error:
            fail(str(error))

    return wrapper


def _context_object() -> dict[str, Any]:
    root = click.get_current_context().find_root()
    if root.obj is None:
        root.obj = {}
    obj: dict[str, Any] = root.obj
    return obj


def cli_settings() -> Settings:
    """The settings, read once per invocation (tests may place their own in ``obj``)."""
    obj = _context_object()
    if "settings" not in obj:
        obj["settings"] = load_settings()
    settings: Settings = obj["settings"]
    return settings


def cli_session_factory() -> sessionmaker[Session]:
    obj = _context_object()
    if "session_factory" not in obj:
        settings = cli_settings()
        obj["session_factory"] = make_session_factory(
            make_engine(
                settings.database_url.get_secret_value(),
                sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            )
        )
    factory: sessionmaker[Session] = obj["session_factory"]
    return factory


@contextmanager
def cli_transaction(*, snapshot: bool = False) -> Iterator[Session]:
    """One transaction for one command.

    ``snapshot`` reads everything from one consistent, read-only view
    (REPEATABLE READ on PostgreSQL; SQLite's BEGIN IMMEDIATE already gives one).
    """
    with session_scope(cli_session_factory()) as session:
        if snapshot and session.get_bind().dialect.name == "postgresql":
            session.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ",
                    "postgresql_readonly": True,
                }
            )
        yield session


def exact_duration(count: int) -> str:
    """A setting in seconds, every second kept: 90 → '1 min 30 s', 300 → '5 min',
    604800 → '7 days' (:func:`credits.formatting.duration` rounds down to minutes)."""
    whole, rest = divmod(count, 60)
    if whole == 0 or rest == 0:
        return fmt.duration(count)
    return f"{fmt.duration(whole * 60)} {rest} s"
