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

from sqlalchemy import Connection, Row, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from credits.errors import CreditsError
from credits.identity.actor import Actor
from credits.ledger import journal
from credits.ledger.models import Currency, HoldStatus
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


_PLACE_HOLD = text(
    "SELECT * FROM ledger_place_hold_v1(CAST(:key AS text), CAST(:digest AS text),"
    " CAST(:currency AS text), CAST(:amount AS bigint), CAST(:project_id AS bigint),"
    " CAST(:account_id AS bigint), CAST(:sink_account_id AS bigint),"
    " CAST(:reference AS text), CAST(:actor AS text), CAST(:now AS timestamptz),"
    " CAST(:at AS text))"
)
_CAPTURE = text(
    "SELECT * FROM ledger_capture_v1(CAST(:key AS text), CAST(:digest AS text),"
    " CAST(:hold_key AS text), CAST(:amount AS bigint), CAST(:note AS text),"
    " CAST(:actor AS text), CAST(:now AS timestamptz), CAST(:at AS text))"
)
_VOID = text(
    "SELECT * FROM ledger_void_v1(CAST(:key AS text), CAST(:digest AS text),"
    " CAST(:hold_key AS text), CAST(:note AS text), CAST(:actor AS text),"
    " CAST(:now AS timestamptz), CAST(:at AS text))"
)
_TRANSFER = text(
    "SELECT * FROM ledger_transfer_v1(CAST(:key AS text), CAST(:digest AS text),"
    " CAST(:kind AS text), CAST(:from_id AS bigint), CAST(:to_id AS bigint),"
    " CAST(:amount AS bigint), CAST(:reason AS text), CAST(:reference AS text),"
    " CAST(:actor AS text), CAST(:now AS timestamptz), CAST(:at AS text))"
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
        {
            "key": key,
            "digest": digest,
            "currency": currency.value,
            "amount": amount,
            "project_id": project_id,
            "account_id": account_id,
            "sink_account_id": sink_account_id,
            "reference": reference,
            **_who_and_when(actor, now),
        },
    )
    parts = [
        HoldPartOut(
            transfer_id=row.transfer_id,
            part=row.part,
            account_id=row.account_id,
            amount=row.amount,
            captured=row.captured,
            voided=row.voided,
            status=HoldStatus(row.status),
        )
        for row in rows
    ]
    return HoldOut(hold_key=key, currency=currency, parts=parts, replayed=rows[0].replayed)


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
    parameters = {
        "key": key,
        "digest": digest,
        "hold_key": hold_key,
        "note": note,
        "amount": amount,
        **_who_and_when(actor, now),
    }
    return _transfers(_call(connection, _CAPTURE if kind == "capture" else _VOID, parameters))


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
    parameters = {
        "key": key,
        "digest": digest,
        "kind": kind,
        "from_id": from_account_id,
        "to_id": to_account_id,
        "amount": amount,
        "reason": reason,
        "reference": reference,
        **_who_and_when(actor, now),
    }
    return _transfers(_call(connection, _TRANSFER, parameters))


def _who_and_when(actor: Actor, now: datetime) -> dict[str, Any]:
    # The audit event's "at" is Python's isoformat of the caller's time, zone and all.
    return {"actor": actor.label, "now": now, "at": now.isoformat()}


def _call(connection: Connection, statement: Any, parameters: Mapping[str, Any]) -> list[Row[Any]]:
    """Runs one function; raises the refusal it answered with, if any."""
    try:
        rows = list(connection.execute(statement, parameters).all())
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == GUARD_TRIPPED:
            raise journal.CounterGuardTripped(str(error.orig)) from error
        raise
    if rows and rows[0].refusal is not None:
        raise refusal(rows[0].refusal)
    return rows


def _transfers(rows: Sequence[Row[Any]]) -> TransferResult:
    transfers = [
        TransferOut.model_validate({**row._mapping, "created_at": row.created_at.astimezone(UTC)})
        for row in rows
    ]
    return TransferResult(transfers=transfers, replayed=bool(rows) and rows[0].replayed)


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
