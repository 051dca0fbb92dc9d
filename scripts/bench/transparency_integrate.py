"""The integrator at a million audit rows: indexes given, tiles grown, checkpoints signed.

Writes ``--rows`` audit events (in chunks, through ``record_events``) into a
freshly migrated database, SQLite by default or PostgreSQL with
``--postgres URL`` (a throw-away database is created there and dropped), then
runs ``integrate`` in its own transactions, as the chores loop and Celery beat
do, until every row has its log index, into a folder tile store. Only the
integration is timed.

    .venv/bin/python scripts/bench/transparency_integrate.py
    .venv/bin/python scripts/bench/transparency_integrate.py --postgres postgresql://postgres@127.0.0.1:5432/postgres

Prints::

    op=integrate db=… rows=… runs=… seconds=… entries_per_s=… size=…

Target (issue 15): at least 20,000 entries integrated per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from credits.audit.service import record_events
from credits.db import make_engine, make_session_factory, session_scope
from credits.migrate import upgrade
from credits.transparency.checkpoint import open_checkpoint
from credits.transparency.integrator import integrate
from credits.transparency.note import generate_signer
from credits.transparency.stores import FolderTileStore

CHUNK = 5_000
ORIGIN = "bench.example.org/log"


def _events(start: int, count: int) -> list[dict[str, object]]:
    return [
        {
            "event_type": "ledger.capture",
            "actor": "system:bench",
            "subject_type": "ledger_transfer",
            "subject_id": str(n),
            "data": {"id": n, "amount": 1_000 + n % 977, "debit_account_id": 10 + n % 50},
        }
        for n in range(start, start + count)
    ]


def _database(postgres: str | None, folder: Path) -> tuple[str, str | None]:
    if postgres is None:
        return f"sqlite:///{folder / 'bench.db'}", None
    name = f"credits_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(postgres).set(database=name).render_as_string(hide_password=False), name


def _drop(postgres: str, name: str) -> None:
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=None)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        url, created = _database(options.postgres, folder)
        try:
            _run(url, folder, options.rows, "postgresql" if created else "sqlite")
        finally:
            if created and options.postgres:
                _drop(options.postgres, created)


def _run(url: str, folder: Path, rows: int, db: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    for start in range(0, rows, CHUNK):
        with session_scope(factory) as session:
            record_events(session, _events(start, min(CHUNK, rows - start)), occurred_at=at)
    store = FolderTileStore(folder / "tiles")
    signer = generate_signer(ORIGIN)
    runs, size, note = 0, 0, b""
    started = time.perf_counter()
    while size < rows:
        with session_scope(factory) as session:
            result = integrate(session, store=store, signer=signer, origin=ORIGIN)
        runs += 1
        size = result.size
        note = result.note or note
    seconds = time.perf_counter() - started
    checkpoint = open_checkpoint(note, origin=ORIGIN, verifiers=[signer.verifier])
    if checkpoint.checkpoint.size != rows:
        raise SystemExit(f"the checkpoint covers {checkpoint.checkpoint.size} of {rows} rows")
    print(
        f"op=integrate db={db} rows={rows} runs={runs} seconds={seconds:.2f}"
        f" entries_per_s={rows / seconds:.0f} size={checkpoint.checkpoint.size}"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
