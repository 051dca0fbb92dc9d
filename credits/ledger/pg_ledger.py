"""Hold, capture, void and transfer in one statement on PostgreSQL.

Migration 0017 installs PL/pgSQL functions that do on the server what
:mod:`credits.ledger.holds`, :mod:`credits.ledger.settle` and
``service.grant`` do in Python: the same locks in the same order, the same
checks in the same order, the same rows and audit events. The services validate
their arguments and hash the request in Python, then hand the rest to one
function call here: one round trip instead of six.

A function answers a refusal with a row whose ``refusal`` column says what went
wrong; it is turned back into the exception the Python path raises, worded the
same (the builders live in :mod:`credits.ledger.journal`). Returning instead of
raising keeps the caller's transaction usable, as a refusal on the Python path
does. SQLite always takes the Python path; ``python_path()`` makes PostgreSQL
take it too (the differential tests compare both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from credits.errors import CreditsError
from credits.identity.actor import Actor
from credits.ledger import journal
from credits.ledger.models import Currency, HoldStatus, TransferKind
from credits.ledger.schemas import HoldOut, HoldPartOut, TransferOut, TransferResult

# Off: every backend takes the Python path (an escape hatch, and how a bench
# measures the Python path on PostgreSQL in the same run).
ENABLED = True
_python_only: ContextVar[bool] = ContextVar("ledger_python_only", default=False)
# SQLSTATE of a broken invariant raised by the functions (an overdraft guard
# that trips after the checks passed).
GUARD_TRIPPED = "LDG99"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@contextmanager
def python_path() -> Iterator[None]:
    """Within the block (this thread or task), the services take the Python path."""
    token = _python_only.set(True)
    try:
        yield
    finally:
        _python_only.reset(token)


def server_side(session: Session) -> Connection | None:
    """The session's connection when the functions serve this call, else None."""
    if not ENABLED or _python_only.get():
        return None
    connection = journal.connection(session)
    return connection if connection.dialect.name == "postgresql" else None


# The position of place_hold's ``replayed`` column.
_HOLD_REPLAYED = 7
# Plain SQL with positional parameters, sent with ``exec_driver_sql``: no statement
# compilation or bind processing per call (with the models built unvalidated below,
# about 9% less client CPU per hold). psycopg prepares a statement on the server once
# it has run it ``prepare_threshold`` times (5), so each later call binds and executes.
_PLACE_HOLD = (
    "SELECT transfer_id, part, account_id, amount, captured, voided, status, replayed, refusal"
    " FROM ledger_place_hold_v1(%s::text, %s::text, %s::text, %s::bigint, %s::bigint,"
    " %s::bigint, %s::bigint, %s::text, %s::text, %s::timestamptz, %s::text)"
)
# The transfer columns of every settle and transfer function, refusal last.
_TRANSFER_COLUMNS = (
    "SELECT id, idempotency_key, part, kind, currency, debit_account_id, credit_account_id,"
    " amount, pending, pending_id, reference, actor, reason, created_at, replayed, refusal"
)
_CAPTURE = (
    _TRANSFER_COLUMNS + " FROM ledger_capture_v1(%s::text, %s::text, %s::text, %s::bigint,"
    " %s::text, %s::text, %s::timestamptz, %s::text)"
)
_VOID = (
    _TRANSFER_COLUMNS + " FROM ledger_void_v1(%s::text, %s::text, %s::text, %s::text,"
    " %s::text, %s::timestamptz, %s::text)"
)
_TRANSFER = (
    _TRANSFER_COLUMNS + " FROM ledger_transfer_v1(%s::text, %s::text, %s::text, %s::bigint,"
    " %s::bigint, %s::bigint, %s::text, %s::text, %s::text, %s::timestamptz, %s::text)"
)


def place_hold(
    connection: Connection,
    *,
    key: str,
    digest: str,
    currency: Currency,
    amount: int,
    project_id: int | None,
    account_id: int | None,
    sink_account_id: int | None,
    reference: str | None,
    actor: Actor,
    now: datetime,
) -> HoldOut:
    """``holds.place_hold`` after its argument checks, as one statement."""
    rows = _call(
        connection,
        _PLACE_HOLD,
        (
            key,
            digest,
            currency.value,
            amount,
            project_id,
            account_id,
            sink_account_id,
            reference,
            *_who_and_when(actor, now),
        ),
    )
    # The rows are typed by the function's result columns: building the models
    # without validating them again saves most of what pydantic costs here.
    parts = [
        HoldPartOut.model_construct(
            transfer_id=transfer_id,
            part=part,
            account_id=account,
            amount=held,
            captured=captured,
            voided=voided,
            status=HoldStatus(status),
        )
        for transfer_id, part, account, held, captured, voided, status, _, _ in rows
    ]
    return HoldOut.model_construct(
        hold_key=key, currency=currency, parts=parts, replayed=bool(rows[0][_HOLD_REPLAYED])
    )


def settle(
    connection: Connection,
    *,
    kind: str,
    key: str,
    digest: str,
    hold_key: str,
    amount: int | None,
    note: str | None,
    actor: Actor,
    now: datetime,
) -> TransferResult:
    """``settle.capture`` (``kind`` 'capture', with ``amount``) or ``settle.void_hold``
    ('void') after their argument checks, as one statement."""
    if kind == "capture":
        statement = _CAPTURE
        parameters: tuple[Any, ...] = (key, digest, hold_key, amount, note)
    else:
        statement = _VOID
        parameters = (key, digest, hold_key, note)
    return _transfers(_call(connection, statement, (*parameters, *_who_and_when(actor, now))))


def transfer(
    connection: Connection,
    *,
    key: str,
    digest: str,
    kind: str,
    from_account_id: int,
    to_account_id: int,
    amount: int,
    reason: str | None,
    reference: str | None,
    actor: Actor,
    now: datetime,
) -> TransferResult:
    """``service.grant`` after its argument checks, as one statement."""
    parameters = (key, digest, kind, from_account_id, to_account_id, amount, reason, reference)
    return _transfers(_call(connection, _TRANSFER, (*parameters, *_who_and_when(actor, now))))


def _who_and_when(actor: Actor, now: datetime) -> tuple[str, datetime, str]:
    # The audit event's "at" is Python's isoformat of the caller's time, zone and all.
    return actor.label, now, now.isoformat()


def _call(
    connection: Connection, statement: str, parameters: tuple[Any, ...]
) -> Sequence[Sequence[Any]]:
    """Runs one function; raises the refusal it answered with, if any (the last column)."""
    try:
        rows = connection.exec_driver_sql(statement, parameters).all()
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == GUARD_TRIPPED:
            raise journal.CounterGuardTripped(str(error.orig)) from error
        raise
    if rows and rows[0][-1] is not None:
        raise refusal(rows[0][-1])
    return rows


def _transfers(rows: Sequence[Sequence[Any]]) -> TransferResult:
    transfers = [
        TransferOut.model_construct(
            id=row[0],
            idempotency_key=row[1],
            part=row[2],
            kind=TransferKind(row[3]),
            currency=Currency(row[4]),
            debit_account_id=row[5],
            credit_account_id=row[6],
            amount=row[7],
            pending=row[8],
            pending_id=row[9],
            reference=row[10],
            actor=row[11],
            reason=row[12],
            created_at=row[13].astimezone(UTC),
        )
        for row in rows
    ]
    return TransferResult.model_construct(
        transfers=transfers, replayed=bool(rows) and bool(rows[0][14])
    )


def refusal(document: Mapping[str, Any]) -> CreditsError:
    """The exception the Python path raises for what a function refused."""
    build = _REFUSALS.get(document["refusal"])
    if build is None:
        raise ValueError(f"unknown ledger refusal {document!r}")
    return build(document)


def _moment(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)


def _not_active(document: Mapping[str, Any]) -> CreditsError:
    why = document["why"]
    if why == "status":
        return journal.not_active(document["account_id"], f"is {document['status']}")
    verb = "expired at" if why == "expired" else "starts at"
    return journal.not_active(
        document["account_id"], f"{verb} {_moment(document['at_us']).isoformat()}"
    )


def _insufficient(document: Mapping[str, Any]) -> CreditsError:
    required, available = document["required"], document["available"]
    if "account_id" in document:
        return journal.account_short(
            document["account_id"], required, available, document["currency"]
        )
    return journal.hold_short(required, available, Currency(document["currency"]))


_REFUSALS: dict[str, Callable[[Mapping[str, Any]], CreditsError]] = {
    "account_not_found": lambda d: journal.account_not_found(d["account_id"]),
    "currency_mismatch": lambda d: journal.currency_mismatch(
        d["account_id"], d["holds"], d["wanted"]
    ),
    "not_active": _not_active,
    "insufficient": _insufficient,
    "not_a_sink": lambda d: journal.not_a_sink(d["account_id"], d["kind"]),
    "foreign_sink": lambda d: journal.foreign_sink(d["account_id"]),
    "not_an_allocation": lambda d: journal.not_an_allocation(d["account_id"], d["kind"]),
    "key_reused": lambda d: journal.key_reused(d["key"]),
    "hold_not_found": lambda d: journal.hold_not_found(d["hold_key"]),
    "hold_closed": lambda d: journal.hold_closed(d["hold_key"], voided=d["voided"]),
    "capture_exceeds": lambda d: journal.capture_exceeds(
        d["hold_key"], d["requested"], d["remaining"]
    ),
}
