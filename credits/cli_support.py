"""What every CLI command shares: settings, one transaction, errors as one line."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import wraps
from itertools import islice
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from credits import formatting as fmt
from credits.db import make_engine, make_session_factory, session_scope
from credits.errors import CreditsError
from credits.id_text import MAX_ID_DIGITS, id_from_text
from credits.secret_key_file import SECRET_KEY_FILE
from credits.settings import Settings, SettingsError, load_settings

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 1; a var folder this invocation made and
    left unused goes again (see :func:`_forget_an_unused_var_dir`)."""
    _forget_an_unused_var_dir()
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turns a refusal into ``error: <detail>`` and exit 1, never a traceback.

    Besides the services' refusals: a request model refusing what was typed (pydantic's
    ValidationError, its first problem), and a number or time too big for the database
    or for UTC (OverflowError) where an option does not bound it itself.
    """

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (CreditsError, SettingsError) as error:
            fail(str(error))
        except ValidationError as error:
            fail(first_problem(error))
        except OverflowError as error:
            fail(f"a number or time is out of range ({error})")

    return wrapper


def first_problem(error: ValidationError) -> str:
    """A model's refusal in one line: the first field it refuses and why."""
    problems = error.errors(include_url=False)
    if not problems:
        return str(error).splitlines()[0]
    where = ".".join(map(str, problems[0]["loc"])) or "input"
    return f"{where}: {problems[0]['msg']}"


# Row ids as people type them, bounded as the API's are (credits.api.converters.MAX_ID):
# ASCII digits only, so a longer number is refused here rather than overflowing BIGINT.
MAX_ID = 10**MAX_ID_DIGITS - 1


class RowId(click.ParamType[int, object]):
    """A row id from 1 to :data:`MAX_ID` (at most 18 ASCII digits)."""

    name = "id"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            found: int | None = value if value <= MAX_ID else None
        else:
            found = id_from_text(value) if isinstance(value, str) else None
        if found is None or found < 1:
            self.fail(f"{value!r} is not an id (a whole number from 1 to {MAX_ID})", param, ctx)
        return found


ROW_ID = RowId()


def all_pages(fetch: Callable[[int | None], tuple[list[T], int | None]]) -> Iterator[T]:
    """Every item of a keyset-paged listing: ``fetch(cursor)`` gives one page and its
    ``next_cursor``, followed to the end so a listing never hides its newest rows."""
    cursor: int | None = None
    while True:
        items, cursor = fetch(cursor)
        yield from items
        if cursor is None:
            return


LIMIT_OPTION = click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="At most this many, oldest first (every one when not given).",
)


def at_most(items: Iterator[T], limit: int | None) -> list[T]:
    """The first ``limit`` of ``items`` (all when None), reading no page past them."""
    return list(items if limit is None else islice(items, limit))


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
        obj[_NEW_VAR_DIR] = _var_dir_if_absent()
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


# The var folder, when it did not exist before this invocation read its settings
# (the embedded profile then makes it and a key file in it).
_NEW_VAR_DIR = "new_var_dir"
_HINT = (
    "run `credits db upgrade` to create or migrate it, run credits from the checkout "
    "that holds it, or set CREDITS_VAR_DIR or CREDITS_DATABASE_URL"
)
_HINT_SERVER = "run `credits db upgrade` to migrate it, or set CREDITS_DATABASE_URL"


def require_migrated_database() -> None:
    """Refuses in one line, exit 1, unless the database is migrated (its
    ``alembic_version`` names a revision). One query; a missing SQLite file is not
    created.

    A database a test placed in ``obj`` is its own, migrated by its fixtures.
    """
    obj = _context_object()
    if "session_factory" in obj:
        return
    try:
        problem = _database_problem(cli_settings())
    except SettingsError as error:
        fail(str(error))
    if problem is None:
        return
    factory = obj.pop("session_factory", None)
    bind = factory.kw.get("bind") if factory is not None else None
    if isinstance(bind, Engine):
        bind.dispose()
    fail(problem)


def requires_migrated_database(command: Callable[P, R]) -> Callable[P, R]:
    """Runs :func:`require_migrated_database` before the command."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        require_migrated_database()
        return command(*args, **kwargs)

    return wrapper


def shown_database(url: str) -> str:
    """The database as an error names it: a SQLite file's path, else the URL
    without its password or query (which may carry one)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "CREDITS_DATABASE_URL"
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return parsed.set(query={}).render_as_string(hide_password=True)


class _Unusable(Exception):
    """The database cannot be read at all: the message says why, in one line."""


def _database_problem(settings: Settings) -> str | None:
    url = settings.database_url.get_secret_value()
    shown = shown_database(url)
    try:
        version = _stored_revision(url, shown, settings.sqlite_busy_timeout_ms)
    except _Unusable as unusable:
        return str(unusable)
    if version is None:
        hint = _HINT if url.startswith("sqlite") else _HINT_SERVER
        return f"the database at {shown} is not migrated; {hint}"
    # A revision this release does not know is a newer release's: its migrations only
    # expand the schema, so this one keeps working there (docs/operations.md, a rollback).
    return None


def _stored_revision(url: str, shown: str, busy_timeout_ms: int) -> str | None:
    """The revision in ``alembic_version``, None when there is none; one query.

    A SQLite file is read as it is: never created, and no pragma (WAL) written.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise _Unusable("CREDITS_DATABASE_URL is not a database URL; check it") from None
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path.startswith(":memory:"):
            return None
        if not Path(path).exists():
            raise _Unusable(f"no database at {shown}; {_HINT}")
        return _sqlite_revision(Path(path), shown, busy_timeout_ms)
    bind = cli_session_factory().kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("the CLI's session factory is bound to an engine")
    try:
        connection = bind.connect()
    except SQLAlchemyError as error:
        reason = _first_line(error, _passwords(parsed))
        raise _Unusable(
            f"cannot connect to the database at {shown}: {reason}; "
            "check CREDITS_DATABASE_URL and that the server is up"
        ) from None
    with connection:
        try:
            version = connection.scalar(text(_REVISION_QUERY))
        except ProgrammingError as error:
            if _sqlstate(error) == UNDEFINED_TABLE:
                return None
            reason = _first_line(error, _passwords(parsed))
            raise _Unusable(f"cannot read the database at {shown}: {reason}") from None
        except SQLAlchemyError as error:
            reason = _first_line(error, _passwords(parsed))
            raise _Unusable(f"cannot read the database at {shown}: {reason}") from None
    return None if version is None else str(version)


_REVISION_QUERY = "SELECT version_num FROM alembic_version"
# PostgreSQL's "undefined table": a database never migrated. Other programming errors
# (a role without the right to read the table) are not that, and say what they are.
UNDEFINED_TABLE = "42P01"


def _sqlstate(error: ProgrammingError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def _sqlite_revision(path: Path, shown: str, busy_timeout_ms: int) -> str | None:
    uri = f"{path.resolve().as_uri()}?mode=rw"  # mode=rw: a missing file is not created
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=busy_timeout_ms / 1000)
    except sqlite3.Error as error:
        raise _Unusable(f"cannot open the database at {shown}: {error}") from None
    try:
        row = connection.execute(_REVISION_QUERY).fetchone()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return None
        raise _Unusable(f"cannot read the database at {shown}: {error}") from None
    except sqlite3.DatabaseError as error:  # not a database file
        raise _Unusable(f"cannot read the database at {shown}: {error}") from None
    finally:
        connection.close()
    return None if row is None else str(row[0])


def _passwords(parsed: URL) -> list[str]:
    """The URL's password, and one given as a query parameter, to star out of errors."""
    in_query = parsed.query.get("password", ())
    found = [parsed.password, *([in_query] if isinstance(in_query, str) else in_query)]
    return [password for password in found if password]


def _first_line(error: SQLAlchemyError, secrets: list[str]) -> str:
    """The driver's first line, any password in it starred out."""
    cause = getattr(error, "orig", None) or error
    line = (str(cause).strip().splitlines() or [type(cause).__name__])[0].strip()
    for secret in secrets:
        line = line.replace(secret, "***")
    return line


def _var_dir_if_absent() -> Path | None:
    try:
        var_dir = Settings().var_dir
    except ValidationError:
        return None  # load_settings refuses these settings in one line
    return None if var_dir.exists() else var_dir


def _forget_an_unused_var_dir() -> None:
    """Removes the var folder this invocation made when it holds nothing but the key
    file and empty folders, so a refused command run in the wrong directory leaves
    nothing behind. A folder holding anything else stays as it is."""
    context = click.get_current_context(silent=True)
    obj = context.find_root().obj if context is not None else None
    var_dir = obj.get(_NEW_VAR_DIR) if isinstance(obj, dict) else None
    if not isinstance(var_dir, Path) or not var_dir.is_dir():
        return
    key = var_dir / SECRET_KEY_FILE
    folders = []
    for folder, _, files in os.walk(var_dir, topdown=False):
        if any(Path(folder, name) != key for name in files):
            return
        folders.append(folder)
    with suppress(OSError):  # something else wrote there meanwhile: it stays
        key.unlink(missing_ok=True)
        for folder in folders:
            Path(folder).rmdir()


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
