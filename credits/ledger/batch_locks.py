"""What a settlement batch locks and reads before it plans: the hold parts it
captures from, every account it touches (in id order, one statement), and that
none of its keys was used before. Split from :mod:`credits.ledger.batch_settle`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, bindparam, or_, select, text, tuple_
from sqlalchemy.orm import Session

from credits.ledger import batch_write as bulk
from credits.ledger import journal
from credits.ledger.errors import IdempotencyKeyReused
from credits.ledger.holds import HOLD_PARTS
from credits.ledger.models import AccountKind
from credits.ledger.queries import project_sink_code, system_account_code

if TYPE_CHECKING:
    from credits.ledger.batch_settle import HoldCapture, ProjectSpend

_A = journal.ACCOUNTS.c
_T = journal.TRANSFERS.c
_P = HOLD_PARTS.c


def _parts_query(postgres: bool) -> Any:
    return (
        select(HOLD_PARTS, _T.debit_account_id, _T.credit_account_id, _T.currency)
        .join(journal.TRANSFERS, _T.id == _P.transfer_id)
        .where(bulk.one_of(_P.hold_key, "hold_keys", postgres=postgres))
        .order_by(_P.hold_key, _P.part)
        .with_for_update(of=HOLD_PARTS)
    )


_LOCK_PARTS = {postgres: _parts_query(postgres) for postgres in (False, True)}


def lock_parts(session: Session, hold_keys: list[str]) -> dict[str, list[Row[Any]]]:
    """The holds' parts with their transfer's accounts, locked, in part order."""
    by_hold: dict[str, list[Row[Any]]] = {}
    if not hold_keys:
        return by_hold
    statement = _LOCK_PARTS[bulk.is_postgres(session)]
    for part in journal.connection(session).execute(statement, {"hold_keys": sorted(hold_keys)}):
        by_hold.setdefault(part.hold_key, []).append(part)
    return by_hold


def lock_accounts(
    session: Session,
    account_ids: Iterable[int],
    captures: Sequence[HoldCapture],
    spends: Sequence[ProjectSpend],
    shortfalls: Sequence[int],
) -> dict[int, Row[Any]]:
    """Locks, in one statement and in id order, every account the batch may change:
    the holds' accounts, the spending projects' accounts, and the usage sinks and
    overage accounts that overage may need (locked only where it may)."""
    owing = [c for c, short in zip(captures, shortfalls, strict=True) if short] + list(spends)
    codes = {project_sink_code(r.project_id, r.currency) for r in owing}
    codes |= {system_account_code(AccountKind.OVERAGE, r.currency) for r in owing}
    pairs = sorted({(s.project_id, s.currency.value) for s in spends})
    ids = sorted(set(account_ids))
    if not (ids or codes or pairs):
        return {}
    postgres = bulk.is_postgres(session)
    parameters: dict[str, Any] = {"ids": ids, "codes": sorted(codes)}
    if postgres:
        parameters |= {
            "pair_projects": [p for p, _ in pairs],
            "pair_currencies": [c for _, c in pairs],
        }
    else:
        parameters["pairs"] = pairs
    rows = journal.connection(session).execute(_LOCK_ACCOUNTS[postgres], parameters)
    return {row.id: row for row in rows}


def _accounts_query(postgres: bool) -> Any:
    if postgres:
        projects: Any = text(
            "(ledger_accounts.project_id, ledger_accounts.currency) IN (SELECT * FROM"
            " unnest(CAST(:pair_projects AS BIGINT[]), CAST(:pair_currencies AS TEXT[])))"
        )
    else:
        projects = tuple_(_A.project_id, _A.currency).in_(bindparam("pairs", expanding=True))
    matches = or_(
        bulk.one_of(_A.id, "ids", postgres=postgres),
        bulk.one_of(_A.code, "codes", postgres=postgres),
        projects,
    )
    return select(journal.ACCOUNTS).where(matches).order_by(_A.id).with_for_update()


# Built once per dialect: building a statement per batch costs more than running it.
_LOCK_ACCOUNTS = {postgres: _accounts_query(postgres) for postgres in (False, True)}


def require_unused(session: Session, keys: list[str]) -> None:
    if not keys:
        return
    postgres = bulk.is_postgres(session)
    query = select(_T.idempotency_key).where(
        bulk.one_of(_T.idempotency_key, "keys", postgres=postgres)
    )
    used = set(journal.connection(session).execute(query, {"keys": keys}).scalars())
    if used:
        # Settlement derives its keys from records not yet settled; a key already
        # used means the ledger and the records disagree, so the batch stops whole.
        raise IdempotencyKeyReused(f"settlement keys already used: {sorted(used)[:5]}")
