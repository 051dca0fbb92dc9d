"""Readers against writers on SQLite: the p99 of a balance read while 4 writers settle.

A fresh SQLite file (WAL) gets one funded project per writer and one for the
reader. Four writer processes capture usage from their projects' holds back to
back, each capture one ``run_in_transaction`` (what settlement does), for the
whole run. Meanwhile one reader reads its project's balance as the portal does
(``credits.ledger.availability.project_availability``, one transaction per
read) in two phases of the same run:

- ``before``: reads through the writers' sessions, which begin ``BEGIN
  IMMEDIATE`` and so queue behind every writer (the behaviour before issue 17);
- ``after``: reads through ``make_read_session_factory``, ``BEGIN DEFERRED``
  with ``PRAGMA query_only``, which read WAL's last commit without waiting.

Afterwards ``verify_ledger`` (what ``credits ledger verify`` runs) must pass, or
the bench exits 1; it exits 1 as well when a read saw a balance the writers
never left. It prints one line per phase, then the ratio and the target::

    phase=before reads=… p50_ms=… p99_ms=… max_ms=… captures_per_s=…
    phase=after reads=… p50_ms=… p99_ms=… max_ms=… captures_per_s=…
    ratio sqlite_read_p99 after/before=0.04 target p99<=50ms after_p99_ms=1.9 met

    .venv/bin/python scripts/bench/sqlite_readers.py --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from functools import partial
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

from ledger import (
    ACTOR,
    CAPTURE_AMOUNT,
    GRANT_AMOUNT,
    SETUP_HOLD_AMOUNT,
    BenchError,
    RunSpec,
    _project_id,
    _setup_hold_key,
    set_up,
    sqlite_database,
    verify,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.db import (
    make_engine,
    make_read_session_factory,
    make_session_factory,
    run_in_transaction,
    session_scope,
)
from credits.ledger.availability import project_availability
from credits.ledger.models import Currency, Transfer, TransferKind
from credits.ledger.service import capture

WRITERS = 4
READER = WRITERS  # the last funded client's project is only read
TARGET_P99_MS = 50.0
BUSY_TIMEOUT_MS = 30_000
STARTUP_TIMEOUT_S = 300.0


def writer(
    spec: RunSpec,
    client: int,
    ready: multiprocessing.Queue[int],
    stop: Event,
    done: multiprocessing.Queue[int],
) -> None:
    """Captures from the client's set-up hold until told to stop; says when its first
    capture is in, and at the end how many it made."""
    engine = make_engine(spec.url, sqlite_busy_timeout_ms=BUSY_TIMEOUT_MS, pool_size=1)
    factory = make_session_factory(engine)
    hold_key = _setup_hold_key(spec, client)
    count = 0
    while count == 0 or not stop.is_set():
        if count == 1:
            ready.put(client)
        key = f"bench:{spec.run_id}:capture:{client}:{count}"
        run_in_transaction(
            factory, partial(_capture, key=key, hold_key=hold_key, amount=CAPTURE_AMOUNT)
        )
        count += 1
    engine.dispose()
    done.put(count)


def _capture(session: Session, *, key: str, hold_key: str, amount: int) -> None:
    capture(session, key=key, hold_key=hold_key, amount=amount, actor=ACTOR)


def read_phase(factory: sessionmaker[Session], seconds: float) -> list[float]:
    """Reads the reader's balance back to back; the latency of each read in ms. Nothing
    spends from the reader's project, so every read must see the same balance."""
    latencies: list[float] = []
    expected = GRANT_AMOUNT - SETUP_HOLD_AMOUNT
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        started = time.perf_counter()
        with session_scope(factory) as session:
            found = project_availability(session, _project_id(READER))
        latencies.append((time.perf_counter() - started) * 1000)
        if found[Currency.GPU].now != expected:
            raise BenchError(f"a read saw {found[Currency.GPU].now}, not {expected}")
    return latencies


def _p(latencies: list[float], fraction: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(spec: RunSpec) -> dict[str, float]:
    """Both phases under the same writers; the p99 of each, in ms."""
    engine = make_engine(spec.url, sqlite_busy_timeout_ms=BUSY_TIMEOUT_MS, pool_size=2)
    writes = make_session_factory(engine)
    phases = {"before": writes, "after": make_read_session_factory(writes)}
    context = multiprocessing.get_context("spawn")
    ready, stop, done = context.Queue(), context.Event(), context.Queue()
    writers = [
        context.Process(target=writer, args=(spec, client, ready, stop, done))
        for client in range(WRITERS)
    ]
    for process in writers:
        process.start()
    p99: dict[str, float] = {}
    try:
        _wait_ready(ready, writers)
        for name, factory in phases.items():
            before = _captures(writes)
            latencies = read_phase(factory, spec.seconds)
            rate = (_captures(writes) - before) / spec.seconds
            p99[name] = _p(latencies, 0.99)
            print(
                f"phase={name} reads={len(latencies)} p50_ms={statistics.median(latencies):.2f}"
                f" p99_ms={p99[name]:.2f} max_ms={max(latencies):.2f}"
                f" captures_per_s={rate:.0f} writers={WRITERS}"
            )
    finally:
        stop.set()
        for process in writers:
            process.join(timeout=STARTUP_TIMEOUT_S)
        engine.dispose()
    if any(process.exitcode != 0 for process in writers):
        raise BenchError("a writer failed (its traceback is above)")
    captured = sum(done.get(timeout=STARTUP_TIMEOUT_S) for _ in writers)
    print(f"captures={captured}")
    return p99


def _wait_ready(ready: multiprocessing.Queue[int], writers: Sequence[BaseProcess]) -> None:
    """Until every writer has imported, connected and captured once."""
    waiting, gives_up = len(writers), time.monotonic() + STARTUP_TIMEOUT_S
    while waiting:
        try:
            ready.get(timeout=1.0)
            waiting -= 1
        except queue.Empty:
            if any(process.exitcode is not None for process in writers):
                raise BenchError("a writer stopped before its first capture") from None
            if time.monotonic() > gives_up:
                raise BenchError("the writers did not start in time") from None


def _captures(factory: sessionmaker[Session]) -> int:
    """Captures so far, read as a reader would (so the count itself never waits)."""
    captures = select(func.count()).where(Transfer.kind == TransferKind.CAPTURE.value)
    with session_scope(make_read_session_factory(factory)) as session:
        return int(session.scalar(captures) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    with sqlite_database() as url:
        # One funded project with an open hold per writer, and one more for the reader.
        spec = RunSpec("sqlite", url, WRITERS + 1, args.seconds, uuid.uuid4().hex[:8], "python")
        try:
            set_up(spec)
            p99 = run(spec)
            checked = verify(url)
        except BenchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    met = "met" if p99["after"] <= TARGET_P99_MS else "missed"
    ratio = p99["after"] / p99["before"] if p99["before"] > 0 else float("nan")
    print(f"verify=ok transfers_checked={checked}")
    print(
        f"ratio sqlite_read_p99 after/before={ratio:.3f} target p99<={TARGET_P99_MS:g}ms"
        f" after_p99_ms={p99['after']:.2f} before_p99_ms={p99['before']:.2f} {met}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
