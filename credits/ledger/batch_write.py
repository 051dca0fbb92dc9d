"""Writing many rows with a fixed number of statements, whatever their number.

PostgreSQL gets ``COPY`` for inserts and ``UPDATE ... FROM unnest(arrays)`` for
updates: a handful of parameters per statement, so neither the driver nor the
server parses a statement that grows with the batch. SQLite gets the driver's
``executemany``: it runs in-process, one prepared statement and no round trips.
Ids are taken before an insert, so rows can name each other (a capture its
hold, an audit event its transfer) without reading anything back.

Nothing here commits; every function runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from credits.audit.models import AuditEvent
from credits.audit.service import canonical_json, leaf_hash
from credits.ledger import journal
from credits.ledger.holds import HOLD_PARTS

AUDIT_EVENTS = cast(Table, AuditEvent.__table__)


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def one_of(column: Any, name: str, *, postgres: bool) -> ColumnElement[bool]:
    """``column IN (...)``; on PostgreSQL ``= ANY(array)``: one parameter, however many
    values, so the driver does not parse a statement of thousands of placeholders."""
    if postgres:
        return cast(
            ColumnElement[bool], column == func.any(bindparam(name, type_=ARRAY(column.type)))
        )
    return cast(ColumnElement[bool], column.in_(bindparam(name, expanding=True)))


def new_ids(session: Session, table: Table, count: int) -> list[int]:
    """Ids for ``count`` new rows of ``table`` (its primary key is ``id``)."""
    connection = session.connection()
    if is_postgres(session):
        return list(
            connection.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence(:table, 'id'))"
                    " FROM generate_series(1, :count)"
                ),
                {"table": table.name, "count": count},
            ).scalars()
        )
    # SQLite has one writer at a time and this transaction is it (BEGIN IMMEDIATE),
    # so the ids above the highest are free until it commits.
    highest = connection.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return list(range(highest + 1, highest + 1 + count))


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Inserts ``rows`` (each with the same keys, every column the table needs)."""
    if not rows:
        return
    connection = session.connection()
    if not is_postgres(session):
        connection.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("COPY needs the session's live connection")
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])


_P = HOLD_PARTS.c
_UPDATE_PART = (
    update(HOLD_PARTS)
    .where(_P.transfer_id == bindparam("part_id"))
    .values(captured=bindparam("captured"), status=bindparam("status"))
)
_PG_UPDATE_PARTS = text(
    "UPDATE ledger_hold_parts AS p SET captured = v.captured, status = v.status"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:captured AS BIGINT[]),"
    " CAST(:status AS TEXT[])) AS v(id, captured, status)"
    " WHERE p.transfer_id = v.id"
)


def update_hold_parts(session: Session, updates: Sequence[Mapping[str, Any]]) -> None:
    """Sets ``captured`` and ``status`` of hold parts (``part_id`` names each)."""
    if not updates:
        return
    connection = session.connection()
    if not is_postgres(session):
        connection.execute(_UPDATE_PART, list(updates))
        return
    connection.execute(
        _PG_UPDATE_PARTS,
        {
            "ids": [u["part_id"] for u in updates],
            "captured": [u["captured"] for u in updates],
            "status": [u["status"] for u in updates],
        },
    )


# The WHERE clause repeats the overdraft rule of journal's counter update, so a
# flagged account never goes below zero even if a caller skipped the row lock.
_PG_UPDATE_COUNTERS = text(
    "UPDATE ledger_accounts AS a SET"
    " debits_pending = a.debits_pending + v.dp, debits_posted = a.debits_posted + v.dpo,"
    " credits_pending = a.credits_pending + v.cp, credits_posted = a.credits_posted + v.cpo"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:dp AS BIGINT[]), CAST(:dpo AS BIGINT[]),"
    " CAST(:cp AS BIGINT[]), CAST(:cpo AS BIGINT[])) AS v(id, dp, dpo, cp, cpo)"
    " WHERE a.id = v.id AND (NOT a.no_overdraft"
    " OR a.credits_posted + v.cpo - a.debits_posted - v.dpo - a.debits_pending - v.dp >= 0)"
)


def apply_counters(session: Session, changes: Mapping[int, journal.CounterChange]) -> None:
    """Moves the counters of every account touched: one statement on PostgreSQL, one
    update per account on SQLite (journal.Counters). Raises CounterGuardTripped when
    a flagged account would go below zero."""
    if not changes:
        return
    if not is_postgres(session):
        counters = journal.Counters()
        for account_id, change in changes.items():
            counters[account_id].__dict__.update(vars(change))
        counters.apply(session)
        return
    ordered = sorted(changes.items())
    result = session.connection().execute(
        _PG_UPDATE_COUNTERS,
        {
            "ids": [account_id for account_id, _ in ordered],
            "dp": [c.debits_pending for _, c in ordered],
            "dpo": [c.debits_posted for _, c in ordered],
            "cp": [c.credits_pending for _, c in ordered],
            "cpo": [c.credits_posted for _, c in ordered],
        },
    )
    if result.rowcount != len(ordered):
        # Callers check balances under the row lock first: this is a bug, and it
        # must abort the transaction, never be caught and committed half-applied.
        raise journal.CounterGuardTripped(
            f"an overdraft guard refused one of {len(ordered)} counter updates"
        )


def audit_row(transfer: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The audit event journal.audit_transfers writes for a transfer row."""
    hidden = ("created_at", "actor", "request_hash")
    data = {key: value for key, value in transfer.items() if key not in hidden}
    event_type = f"ledger.{transfer['kind']}"
    subject = str(transfer["id"])
    document = {
        "type": event_type,
        "actor": transfer["actor"],
        "subject": {"type": "ledger_transfer", "id": subject},
        "at": now.isoformat(),
        "data": data,
    }
    canonical = canonical_json(document)
    return {
        "event_type": event_type,
        "actor": transfer["actor"],
        "subject_type": "ledger_transfer",
        "subject_id": subject,
        "occurred_at": now,
        "canonical_json": canonical,
        "leaf_hash": leaf_hash(canonical),
    }
