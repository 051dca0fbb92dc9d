"""A backup is only as good as its restore: a PostgreSQL database with a funded
project and ledger activity, dumped with pg_dump and restored with pg_restore into
a new database, passes ``credits ledger verify`` there with the same balances,
journal, audit log and migration revision (docs/operations.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import (
    create_migrated_postgres_database,
    create_postgres_database,
    drop_postgres_database,
    missing_service,
)
from grants_helpers import allocation, new_project, person
from sqlalchemy import text
from sqlalchemy.engine import make_url

from credits.cli import main
from credits.db import make_engine, make_session_factory, session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import service as ledger

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SYSTEM = Actor.system("backup-test")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing_service(f"{name} is not installed (Debian's postgresql-client)")
    return found


def _libpq(url: str) -> str:
    """The URL as libpq's tools read it (no SQLAlchemy driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """(a migrated source database, an empty target database), both dropped after."""
    source, admin_url = create_migrated_postgres_database()
    target, _ = create_postgres_database()
    try:
        yield source, target
    finally:
        drop_postgres_database(source, admin_url)
        drop_postgres_database(target, admin_url)


def _seed(url: str) -> None:
    """A funded project with a captured, a voided and a still-open hold."""
    engine = make_engine(url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            pi = person(session, "pi@uni.edu", Role.RESEARCHER)
            project = new_project(session, pi)
            allocation(session, project.id, amount=50_000_000)
            allocation(session, project.id, amount=20_000_000)
            for index, amount in enumerate((30_000_000, 5_000_000, 8_000_000)):
                ledger.place_hold(
                    session, key=f"h{index}", currency="gpu", amount=amount,
                    project_id=project.id, actor=SYSTEM,
                )  # fmt: skip
            ledger.capture(session, key="c0", hold_key="h0", amount=12_345_678, actor=SYSTEM)
            ledger.capture(session, key="c0b", hold_key="h0", amount=1, actor=SYSTEM)
            ledger.void_hold(session, key="v0", hold_key="h0", actor=SYSTEM)
            ledger.void_hold(session, key="v1", hold_key="h1", actor=SYSTEM)
            ledger.capture(session, key="c2", hold_key="h2", amount=2_000_000, actor=SYSTEM)
    finally:
        engine.dispose()


def _figures(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {
                "accounts": connection.execute(
                    text(
                        "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted"
                        " FROM ledger_accounts ORDER BY id"
                    )
                ).all(),
                "transfers": connection.execute(
                    text("SELECT id, kind, amount FROM ledger_transfers ORDER BY id")
                ).all(),
                "audit": connection.execute(
                    text("SELECT count(*), max(id) FROM audit_events")
                ).one(),
                "revision": connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).all(),
            }
    finally:
        engine.dispose()


def _verify(url: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main, ["ledger", "verify", "--json"], env={"CREDITS_DATABASE_URL": url}
    )
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.output)
    return report


def test_a_dumped_database_restores_into_a_new_one_that_passes_ledger_verify(
    databases: tuple[str, str], tmp_path: Path
) -> None:
    source, target = databases
    _seed(source)
    before = _figures(source)
    assert len(before["transfers"]) >= 8

    dump = tmp_path / "credits.dump"
    subprocess.run(
        [_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={dump}", _libpq(source)],
        check=True,
        timeout=300,
    )
    subprocess.run(
        [
            _tool("pg_restore"), "--no-owner", "--exit-on-error", "--single-transaction",
            f"--dbname={_libpq(target)}", str(dump),
        ],
        check=True,
        timeout=300,
    )  # fmt: skip

    assert _figures(target) == before
    report = _verify(target)
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["transfers_checked"] == len(before["transfers"])
    assert report["accounts_checked"] == len(before["accounts"])
    assert report["audit_events_checked"] == before["audit"][0] > 0
