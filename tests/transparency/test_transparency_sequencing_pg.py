"""Commit-ordered sequencing on PostgreSQL, with real transactions (issue 15, item 2).

Audit ids are taken at INSERT; a transaction holding a low id open commits after
higher ids did. The integrator must give every committed row exactly one log
index, gapless, and only once no older transaction can still commit.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from racing import committing_factory
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from credits.audit.models import AuditEvent
from credits.audit.service import leaf_hash as hex_leaf_hash
from credits.audit.service import record_event
from credits.db import session_scope
from credits.settings import load_settings
from credits.transparency.checkpoint import open_checkpoint
from credits.transparency.integrator import Integration, integrate
from credits.transparency.log_check import check_log
from credits.transparency.note import Signer, generate_signer
from credits.transparency.service import latest_checkpoint
from credits.transparency.stores import MemoryTileStore

pytestmark = pytest.mark.postgres
ORIGIN = "credits.test/log"
WRITERS = 16
TRANSACTIONS_PER_WRITER = 12
# A snapshot's xmin is cluster-wide: another test worker's long transaction can
# hold every row back for the whole of a short race. Writers then go on past
# their quota until the integrator has indexed rows mid-race, up to this long.
RACE_EXTENSION_S = 60.0


@pytest.fixture(scope="module")
def factory() -> Iterator[sessionmaker[Session]]:
    yield from committing_factory(pool_size=WRITERS + 4)


@dataclass
class Log:
    signer: Signer
    store: MemoryTileStore


@pytest.fixture(scope="module")
def log() -> Log:
    """One log for the module's database: its checkpoints build on each other."""
    return Log(generate_signer(ORIGIN), MemoryTileStore())


def _run(factory: sessionmaker[Session], log: Log) -> Integration:
    with session_scope(factory) as session:
        return integrate(session, store=log.store, signer=log.signer, origin=ORIGIN)


def _write(session: Session, writer: int, number: int, count: int) -> None:
    for n in range(count):
        record_event(
            session,
            event_type="test.race",
            actor="system:test",
            subject_type="writer",
            subject_id=f"{writer}",
            data={"transaction": number, "n": n},
        )
    session.flush()


def _writer(
    factory: sessionmaker[Session], writer: int, integrated_mid_race: threading.Event
) -> int:
    """Transactions of 1 to 3 rows; some stay open a while, some roll back.
    At least TRANSACTIONS_PER_WRITER of them, and more until the integrator
    has indexed rows while writers still write. Returns how many rows committed."""
    rng = random.Random(writer)  # noqa: S311 - timings, not secrets
    committed = 0
    deadline = time.monotonic() + RACE_EXTENSION_S
    number = -1
    while True:
        number += 1
        if number >= TRANSACTIONS_PER_WRITER and (
            integrated_mid_race.is_set() or time.monotonic() > deadline
        ):
            break
        count = rng.randint(1, 3)
        session = factory()
        try:
            _write(session, writer, number, count)
            # Held open while others insert (higher ids) and commit past it.
            time.sleep(rng.choice([0, 0, 0.005, 0.02, 0.15]))
            if rng.random() < 0.1:
                session.rollback()
                continue
            session.commit()
            committed += count
        finally:
            session.close()
    return committed


def _waiting(factory: sessionmaker[Session]) -> int:
    with session_scope(factory) as session:
        return (
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.log_index.is_(None))
            )
            or 0
        )


def _drain(factory: sessionmaker[Session], log: Log, timeout_s: float = 90) -> list[Integration]:
    """Integrations until no row waits. A snapshot's xmin is cluster-wide: a
    transaction open in another database (another test worker's) holds rows
    back until it ends, which is slow but never wrong."""
    runs = [_run(factory, log)]
    deadline = time.monotonic() + timeout_s
    while _waiting(factory) and time.monotonic() < deadline:
        time.sleep(0.05)
        runs.append(_run(factory, log))
    return runs


def _txids(factory: sessionmaker[Session], start: int, end: int) -> list[int]:
    with session_scope(factory) as session:
        return list(
            session.scalars(
                select(AuditEvent.txid).where(
                    AuditEvent.log_index >= start, AuditEvent.log_index < end
                )
            )
        )


def test_sixteen_writers_and_a_looping_integrator_give_gapless_indexes_once_each(
    factory: sessionmaker[Session], log: Log
) -> None:
    with session_scope(factory) as session:
        before = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    runs: list[Integration] = []
    done = threading.Event()
    integrated_mid_race = threading.Event()

    def integrator() -> None:
        while not done.is_set():
            run = _run(factory, log)
            runs.append(run)
            if run.integrated:
                integrated_mid_race.set()
            time.sleep(0.002)

    looping = threading.Thread(target=integrator)
    looping.start()
    results: list[int | Exception] = [0] * WRITERS

    def writer(index: int) -> None:
        try:
            results[index] = _writer(factory, index, integrated_mid_race)
        except Exception as error:  # every outcome is checked below
            results[index] = error

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120 + RACE_EXTENSION_S)
    done.set()
    looping.join(timeout=60)
    runs += _drain(factory, log)

    counts = [result for result in results if isinstance(result, int)]
    assert len(counts) == WRITERS, results
    committed = before + sum(counts)
    with session_scope(factory) as session:
        indexes = sorted(
            session.scalars(select(AuditEvent.log_index).where(AuditEvent.log_index.is_not(None)))
        )
        waiting = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.log_index.is_(None))
        )
    assert indexes == list(range(committed))  # gapless, none twice, none missed
    assert waiting == 0
    sizes = [run.size for run in runs if not run.busy]
    assert sizes == sorted(sizes) and sizes[-1] == committed
    assert sum(run.integrated for run in runs) == committed
    assert integrated_mid_race.is_set(), "the integrator never indexed rows mid-race"
    assert sum(1 for run in runs if run.integrated) > 1
    for run in runs:
        if run.integrated:
            assert run.xmin is not None
            txids = _txids(factory, run.size - run.integrated, run.size)
            assert all(txid is not None and txid < run.xmin for txid in txids)
    with session_scope(factory) as session:
        note = latest_checkpoint(session)
        assert note is not None
        signed = open_checkpoint(note, origin=ORIGIN, verifiers=[log.signer.verifier])
        assert signed.checkpoint.size == committed
        settings = load_settings(
            transparency_signer_key=log.signer.key_string(), transparency_origin=ORIGIN
        )
        assert check_log(session, settings, log.store).problem is None


def test_an_open_transaction_holds_back_every_younger_row_until_it_ends(
    factory: sessionmaker[Session], log: Log
) -> None:
    _run(factory, log)
    older = factory()
    _write(older, 0, 0, 1)  # the lower id, in a transaction left open
    with session_scope(factory) as younger:
        _write(younger, 1, 0, 1)

    held = _run(factory, log)
    older.commit()
    older.close()
    both = _drain(factory, log)

    assert held.integrated == 0
    assert sum(run.integrated for run in both) == 2
    with session_scope(factory) as session:
        last_two = session.execute(
            select(AuditEvent.subject_id, AuditEvent.log_index)
            .order_by(AuditEvent.log_index.desc())
            .limit(2)
        ).all()
    # Committed late, the older row still comes first: ids order the eligible rows.
    assert [subject for subject, _ in reversed(last_two)] == ["0", "1"]


def test_verify_catches_a_rewritten_row_on_postgresql(
    factory: sessionmaker[Session], log: Log
) -> None:
    with session_scope(factory) as session:
        _write(session, 99, 0, 2)
    _drain(factory, log)
    settings = load_settings(
        transparency_signer_key=log.signer.key_string(), transparency_origin=ORIGIN
    )
    session = factory()
    try:
        row_id = session.scalar(select(func.max(AuditEvent.id)))
        session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        forged = '{"forged":true}'
        session.execute(
            text("UPDATE audit_events SET canonical_json = :c, leaf_hash = :h WHERE id = :id"),
            {"c": forged, "h": hex_leaf_hash(forged), "id": row_id},
        )

        problem = check_log(session, settings, log.store).problem
    finally:
        session.rollback()
        session.close()

    assert problem is not None and f"(audit row {row_id})" in problem
