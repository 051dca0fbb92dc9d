"""Migration 0013 scrubs personal data from the audit rows written before it, with
their leaf hashes, so the log starts clean (issue 15, item 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import create_postgres_database, drop_postgres_database
from sqlalchemy import text

from credits import migrate
from credits.audit.service import canonical_json, leaf_hash
from credits.db import make_engine

BEFORE = "0012"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OLD_EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "user.created",
        {"email": "ada@uni.example", "roles": ["researcher"], "orcid": "0000-0002-1825-0097"},
    ),
    ("user.oidc_linked", {"email": "ada@uni.example", "issuer": "https://idp", "subject": "s-1"}),
    (
        "token.created",
        {"email": "ada@uni.example", "user_id": 1, "name": "Ada's laptop", "scopes": []},
    ),
    ("proposal.conflict_declared", {"reason": "Ada is my sister"}),
    ("project.member_added", {"user_id": 1, "email": "ada@uni.example", "role": "member"}),
    ("ledger.grant", {"id": 7, "amount": 5, "debit_account_id": 1, "credit_account_id": 2}),
]
SCRUBBED = [
    {"roles": ["researcher"]},
    {"issuer": "https://idp"},
    {"user_id": 1, "scopes": []},
    {},
    {"user_id": 1, "role": "member"},
    {"id": 7, "amount": 5, "debit_account_id": 1, "credit_account_id": 2},
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'before.db'}"
        return
    made, admin_url = create_postgres_database()
    yield made
    drop_postgres_database(made, admin_url)


def _document(number: int) -> str:
    kind, data = OLD_EVENTS[number]
    return canonical_json(
        {
            "type": kind,
            "actor": "system:test",
            "subject": {"type": "user", "id": str(number)},
            "at": AT.isoformat(),
            "data": data,
        }
    )


def _insert_old_events(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        for number, (kind, _) in enumerate(OLD_EVENTS):
            canonical = _document(number)
            connection.execute(
                text(
                    "INSERT INTO audit_events (event_type, actor, subject_type, subject_id,"
                    " occurred_at, canonical_json, leaf_hash) VALUES"
                    " (:kind, 'system:test', 'user', :id, :at, :json, :hash)"
                ),
                {
                    "kind": kind,
                    "id": str(number),
                    "at": AT,
                    "json": canonical,
                    "hash": leaf_hash(canonical),
                },
            )
    engine.dispose()


def test_old_rows_lose_personal_fields_and_get_their_leaf_hash_recomputed(url: str) -> None:
    migrate.upgrade(url, BEFORE)
    _insert_old_events(url)

    migrate.upgrade(url)

    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT canonical_json, leaf_hash, log_index FROM audit_events ORDER BY id")
        ).all()
    engine.dispose()
    mine = rows[-len(OLD_EVENTS) :]
    assert [json.loads(canonical)["data"] for canonical, _, _ in mine] == SCRUBBED
    assert all(leaf_hash(canonical) == stored for canonical, stored, _ in mine)
    assert all(index is None for _, _, index in mine)
    # A row with nothing personal keeps its exact bytes.
    assert mine[-1][0] == _document(len(OLD_EVENTS) - 1)
