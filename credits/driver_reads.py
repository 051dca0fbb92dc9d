"""SELECTs of the hottest read routes run straight on the driver's cursor.

SQLAlchemy's execution path (an execution context, a cursor result, a result
processor per value) costs about as much CPU as the rest of a job listing. For a
statement built once and run on every request, :class:`DriverRead` compiles it
once, runs the SQL text on the psycopg cursor of the SQLAlchemy connection and
returns plain tuples. It takes that path only where it gives what SQLAlchemy
would: on PostgreSQL, when no bind value needs converting or expanding (an IN
list is rendered by SQLAlchemy as it runs) and every column
either needs no converting or is a :class:`credits.db.UtcDateTime` (turned to
UTC here, unless the session's time zone is UTC already). Anything else,
SQLite included, runs through SQLAlchemy as usual.

A driver error is handed back as SQLAlchemy would raise it: a lost connection
invalidates the pool's connection and raises ``DBAPIError`` with
``connection_invalidated`` set, so a read route still runs once more on a fresh
connection (credits/api/read_retry.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.types import TypeEngine

from credits.db import UtcDateTime, as_utc


class DriverRead:
    """One SELECT, compiled once per dialect, run on the driver's cursor where that
    gives SQLAlchemy's answer."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self.names = tuple(str(column.key) for column in statement.selected_columns)
        self._compiled: dict[str, tuple[str, dict[str, Any], tuple[int, ...]] | None] = {}

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """The statement's rows with ``params`` bound, as tuples in ``names`` order."""
        plan = self._plan(connection.dialect)
        if plan is None:
            return connection.execute(self.statement, dict(params)).all()
        sql, defaults, utc_positions = plan
        values = defaults | dict(params)
        driver_connection = connection.connection.driver_connection
        try:
            rows: list[Sequence[Any]] = driver_connection.execute(  # type: ignore[union-attr]
                sql, values
            ).fetchall()
        except connection.dialect.loaded_dbapi.Error as error:
            raise _as_sqlalchemy_error(connection, sql, values, error) from error
        if utc_positions and not _always_utc(driver_connection.info.timezone):  # type: ignore[union-attr]
            rows = [_in_utc(row, utc_positions) for row in rows]
        return rows

    def _plan(self, dialect: Dialect) -> tuple[str, dict[str, Any], tuple[int, ...]] | None:
        if dialect.name not in self._compiled:
            self._compiled[dialect.name] = _plan_for(self.statement, dialect)
        return self._compiled[dialect.name]


def _plan_for(
    statement: Select[Any], dialect: Dialect
) -> tuple[str, dict[str, Any], tuple[int, ...]] | None:
    """(SQL, the statement's own bound values, the UTC columns' positions), or None
    where only SQLAlchemy's path converts values as they must be."""
    if dialect.name != "postgresql" or dialect.paramstyle != "pyformat":
        return None
    compiled = statement.compile(dialect=dialect)
    # Values SQLAlchemy converts, or renders into the SQL only as it runs (an IN
    # list, a literal_execute value), are its to handle.
    if (
        any(compiled._bind_processors.values())
        or compiled.post_compile_params
        or compiled.literal_execute_params
    ):
        return None
    utc_positions = []
    for position, column in enumerate(statement.selected_columns):
        if isinstance(column.type, UtcDateTime):
            utc_positions.append(position)
        elif _converts_results(column.type, dialect):
            return None
    return compiled.string, dict(compiled.params), tuple(utc_positions)


def _converts_results(column_type: TypeEngine[Any], dialect: Dialect) -> bool:
    """Whether SQLAlchemy converts this type's values as they are read; a type that
    cannot say without the driver's column type (a Numeric) counts as converting."""
    try:
        return column_type.dialect_impl(dialect).result_processor(dialect, None) is not None
    except Exception:
        return True


def _always_utc(zone: tzinfo) -> bool:
    """True for a session time zone that is UTC at every moment (PostgreSQL's default
    Etc/UTC): the driver's times then mean and print what UTC times do."""
    return zone.utcoffset(None) == timedelta(0)


def _in_utc(row: Sequence[Any], positions: tuple[int, ...]) -> tuple[Any, ...]:
    values = list(row)
    for position in positions:
        moment = values[position]
        if isinstance(moment, datetime):
            values[position] = as_utc(moment)
    return tuple(values)


def _as_sqlalchemy_error(
    connection: Connection, sql: str, values: dict[str, Any], error: Any
) -> StatementError:
    """The error SQLAlchemy would raise for ``error``, the pool's connection
    invalidated first when the error says the connection is gone."""
    dbapi_connection = connection.connection.dbapi_connection
    lost = connection.dialect.is_disconnect(error, dbapi_connection, None)
    if lost:
        connection.invalidate(error)
    wrapped: StatementError = DBAPIError.instance(
        sql,
        values,
        error,
        connection.dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=connection.dialect,
    )
    return wrapped
