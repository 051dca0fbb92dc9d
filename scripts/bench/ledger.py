"""Ledger throughput: holds, captures and voids per second through the service layer.

Each operation is one ``place_hold``, ``capture`` or ``void_hold`` in its own
transaction (``run_in_transaction``), at 1, 4 and 16 concurrent clients, on
SQLite and on PostgreSQL. Every run gets a fresh database, migrated, with one
funded allocation per client project; afterwards ``verify_ledger`` (what
``credits ledger verify`` runs) must pass, or the bench exits 1.
On PostgreSQL the services call migration 0017's functions (``path=functions``);
``--path both`` also runs the Python path (``path=python``) in the same run as
its baseline. With ``pgbench`` on PATH, PostgreSQL's own write rate
(``pgbench -N``) on the same server is the target's baseline, and at 16 clients
pgbench also calls ``ledger_place_hold_v1`` itself on the run's database
(``baseline=pgbench-ledger_place_hold_v1``): the function's own rate with no
Python in the way, the most the service path could reach on that server.
The clients are threads of one process by default (one engine and pool, as in
one gunicorn worker); ``--processes`` runs one process per client, and
``--processes N`` spreads the clients over N processes of threads, as gunicorn's
workers and threads (``workers=processes:N``).

    .venv/bin/python scripts/bench/ledger.py --quick
    .venv/bin/python scripts/bench/ledger.py --seconds 10 --processes --path both

Each run prints one line per operation::

    backend=postgresql path=functions clients=16 workers=threads op=hold per_s=… p50_ms=… \
        p99_ms=… ops=… statements_per_op=…

then ``ratio`` lines, each figure against its baseline::

    ratio hold16/pgbench_N=0.64 target>=0.6
    ratio function_alone16/pgbench_N=0.39
    ratio hold16/function_alone=0.62
    ratio postgresql_hold16 functions/python=3.10
    ratio sqlite_hold16/before=1.02 target>=1.0

``statements_per_op`` counts what SQLAlchemy sends: on SQLite that includes
``BEGIN IMMEDIATE``; on PostgreSQL the driver's BEGIN and COMMIT and the
pool's pre-ping are not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from credits import migrate
from credits.db import make_engine, make_session_factory, run_in_transaction, session_scope
from credits.identity.actor import Actor
from credits.ledger import pg_ledger
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import system_account_id
from credits.ledger.service import capture, grant, open_account, place_hold, void_hold
from credits.ledger.verify import verify_ledger

ACTOR = Actor.system("bench")
GRANT_AMOUNT = 10**15  # micro-credits per client: holds never run out
SETUP_HOLD_AMOUNT = 10**12  # the set-up hold alone covers 10**9 captures
HOLD_AMOUNT = 1_000_000
CAPTURE_AMOUNT = 1_000
PGBENCH_CLIENTS = 16
PGBENCH_SCALE = 16
QUICK_SECONDS = 1.0
QUICK_BUDGET_S = 30.0
BARRIER_TIMEOUT_S = 300.0
TPS_PATTERN = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
HOLD_TARGET = 0.6  # hold at 16 clients against pgbench -N: the SQL-only ledger's ratio
# SQLite holds per second before migration 0017 (commit 8701409, threads, 3 s per
# operation, this project's 2-core machine shared with other work): the path is
# unchanged there, so today's figure must be no worse.
SQLITE_HOLDS_BEFORE = {1: 739.9, 4: 700.6, 16: 532.4}


class BenchError(Exception):
    """The benchmark could not run or the ledger failed verification."""


class Barrier(Protocol):
    """``threading.Barrier`` or a multiprocessing one."""

    def wait(self, timeout: float | None = None) -> int: ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class RunSpec:
    """One (backend, clients) run; picklable so processes can receive it."""

    backend: str
    url: str
    clients: int
    seconds: float
    run_id: str
    path: str = "functions"


@dataclass
class Phase:
    """One client's timings for one operation."""

    latencies_ms: list[float] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    statements: int = 0


@dataclass
class ClientResult:
    hold: Phase
    capture: Phase
    void: Phase


@dataclass(frozen=True)
class Summary:
    op: str
    ops: int
    per_s: float
    p50_ms: float
    p99_ms: float
    statements_per_op: float


class StatementCounter:
    """Counts statements per thread through SQLAlchemy's ``before_cursor_execute``."""

    def __init__(self, engine: Engine) -> None:
        self._counts: dict[int, int] = {}
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args: Any) -> None:
        ident = threading.get_ident()
        self._counts[ident] = self._counts.get(ident, 0) + 1

    def mine(self) -> int:
        return self._counts.get(threading.get_ident(), 0)


# --- one client ------------------------------------------------------------------------------


def _project_id(client: int) -> int:
    """Client 0 owns project 1: a project id of 0 would read as "none" too easily."""
    return client + 1


def _setup_hold_key(spec: RunSpec, client: int) -> str:
    return f"bench:{spec.run_id}:setup-hold:{client}"


def _timed_loop(
    seconds: float,
    counter: StatementCounter,
    operation: Callable[[int], None],
    limit: int | None = None,
) -> Phase:
    """Runs ``operation(0)``, ``operation(1)``, … until the deadline (or ``limit`` calls)."""
    phase = Phase(started=time.monotonic())
    deadline = phase.started + seconds
    before = counter.mine()
    n = 0
    while time.monotonic() < deadline and (limit is None or n < limit):
        began = time.perf_counter()
        operation(n)
        phase.latencies_ms.append((time.perf_counter() - began) * 1000)
        n += 1
    phase.ended = time.monotonic()
    phase.statements = counter.mine() - before
    return phase


def run_client(
    spec: RunSpec,
    client: int,
    factory: sessionmaker[Session],
    counter: StatementCounter,
    barrier: Barrier,
) -> ClientResult:
    """Holds until the deadline, captures from the holds it placed, round-robin, then
    voids them one by one (until the deadline or the last hold)."""
    project_id = _project_id(client)
    hold_keys = [_setup_hold_key(spec, client)]

    def hold(n: int) -> None:
        key = f"bench:{spec.run_id}:hold:{client}:{n}"
        run_in_transaction(
            factory,
            lambda session: place_hold(
                session,
                key=key,
                currency=Currency.GPU,
                amount=HOLD_AMOUNT,
                actor=ACTOR,
                project_id=project_id,
            ),
        )
        hold_keys.append(key)

    def take(n: int) -> None:
        hold_key = hold_keys[n % len(hold_keys)]
        run_in_transaction(
            factory,
            lambda session: capture(
                session,
                key=f"bench:{spec.run_id}:capture:{client}:{n}",
                hold_key=hold_key,
                amount=CAPTURE_AMOUNT,
                actor=ACTOR,
            ),
        )

    def void(n: int) -> None:
        hold_key = hold_keys[n]
        run_in_transaction(
            factory,
            lambda session: void_hold(
                session,
                key=f"bench:{spec.run_id}:void:{client}:{n}",
                hold_key=hold_key,
                actor=ACTOR,
            ),
        )

    path = pg_ledger.python_path() if spec.path == "python" else contextlib.nullcontext()
    try:
        with path:
            barrier.wait(BARRIER_TIMEOUT_S)
            holds = _timed_loop(spec.seconds, counter, hold)
            barrier.wait(BARRIER_TIMEOUT_S)
            captures = _timed_loop(spec.seconds, counter, take)
            barrier.wait(BARRIER_TIMEOUT_S)
            voids = _timed_loop(spec.seconds, counter, void, limit=len(hold_keys))
    except BaseException:
        barrier.abort()  # the other clients stop waiting for this one
        raise
    return ClientResult(hold=holds, capture=captures, void=voids)


# --- workers: threads sharing one engine, or processes of threads -------------------------


def run_threads(spec: RunSpec) -> list[ClientResult]:
    engine = make_engine(spec.url, pool_size=spec.clients)
    counter = StatementCounter(engine)
    factory = make_session_factory(engine)
    barrier = threading.Barrier(spec.clients)
    try:
        with ThreadPoolExecutor(max_workers=spec.clients) as pool:
            futures = [
                pool.submit(run_client, spec, client, factory, counter, barrier)
                for client in range(spec.clients)
            ]
            return [future.result() for future in futures]
    finally:
        engine.dispose()


def _process_main(
    spec: RunSpec, clients: list[int], barrier: Barrier, results: multiprocessing.Queue[Any]
) -> None:
    """Runs ``clients`` as threads of this process, sharing one engine and pool."""
    engine = make_engine(spec.url, pool_size=len(clients))
    try:
        counter = StatementCounter(engine)
        factory = make_session_factory(engine)
        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            futures = {
                client: pool.submit(run_client, spec, client, factory, counter, barrier)
                for client in clients
            }
            for client, future in futures.items():
                try:
                    results.put((client, future.result()))
                except Exception as error:  # reported to the parent, which fails the run
                    results.put((client, f"{type(error).__name__}: {error}"))
    finally:
        engine.dispose()


def run_processes(spec: RunSpec, processes: int = 0) -> list[ClientResult]:
    """The clients spread over ``processes`` spawned processes (0: one per client), each
    with its own engine, its clients its threads: as gunicorn's workers and threads."""
    count = min(processes or spec.clients, spec.clients)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(spec.clients)
    results: multiprocessing.Queue[Any] = context.Queue()
    workers = [
        context.Process(
            target=_process_main,
            args=(spec, list(range(index, spec.clients, count)), barrier, results),
        )
        for index in range(count)
    ]
    for worker in workers:
        worker.start()
    try:
        collected = dict(results.get(timeout=BARRIER_TIMEOUT_S) for _ in range(spec.clients))
    except queue.Empty:
        raise BenchError("a client process ended without a result") from None
    finally:
        for worker in workers:
            worker.join(timeout=30)
    failures = [f"client {c}: {r}" for c, r in collected.items() if isinstance(r, str)]
    if failures:
        raise BenchError("; ".join(failures))
    return [collected[client] for client in range(spec.clients)]


# --- databases ------------------------------------------------------------------------------


def _bench_database_name() -> str:
    return f"credits_bench_{uuid.uuid4().hex[:12]}"


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A throwaway database on the server, dropped (WITH FORCE) however the block ends."""
    name = _bench_database_name()
    admin = make_engine(admin_url, pool_size=1).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.engine.dispose()


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="credits-bench-") as directory:
        yield f"sqlite:///{Path(directory) / 'ledger.db'}"


def fresh_database(backend: str, postgres_url: str | None) -> AbstractContextManager[str]:
    if backend == "sqlite":
        return sqlite_database()
    if postgres_url is None:
        raise BenchError("a PostgreSQL run needs --postgres-url")
    return postgres_database(postgres_url)


def set_up(spec: RunSpec) -> None:
    """Migrates, then gives every client project a funded allocation and one open hold."""
    migrate.upgrade(spec.url)
    engine = make_engine(spec.url)
    factory = make_session_factory(engine)
    try:
        for client in range(spec.clients):
            run_in_transaction(factory, partial(_fund, spec=spec, client=client))
    finally:
        engine.dispose()


def _fund(session: Session, spec: RunSpec, client: int) -> None:
    project_id = _project_id(client)
    account = open_account(
        session,
        code=f"bench:{spec.run_id}:allocation:{project_id}",
        currency=Currency.GPU,
        actor=ACTOR,
        project_id=project_id,
    )
    grant(
        session,
        key=f"bench:{spec.run_id}:grant:{client}",
        from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.GPU),
        to_account_id=account.id,
        amount=GRANT_AMOUNT,
        actor=ACTOR,
    )
    place_hold(
        session,
        key=_setup_hold_key(spec, client),
        currency=Currency.GPU,
        amount=SETUP_HOLD_AMOUNT,
        actor=ACTOR,
        project_id=project_id,
    )


def verify(url: str) -> int:
    """Runs ``verify_ledger``; returns the transfers checked or raises BenchError."""
    engine = make_engine(url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            report = verify_ledger(session)
    finally:
        engine.dispose()
    if not report.ok:
        raise BenchError(f"verify_ledger failed on {url}: " + "; ".join(report.problems))
    return report.transfers_checked


# --- figures --------------------------------------------------------------------------------


def summarise(op: str, phases: Sequence[Phase]) -> Summary:
    latencies = sorted(ms for phase in phases for ms in phase.latencies_ms)
    window = max(p.ended for p in phases) - min(p.started for p in phases)
    ops = len(latencies)
    statements = sum(phase.statements for phase in phases)
    if ops >= 2:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    else:
        p50 = p99 = latencies[0] if latencies else math.nan
    return Summary(
        op=op,
        ops=ops,
        per_s=ops / window if window > 0 else 0.0,
        p50_ms=p50,
        p99_ms=p99,
        statements_per_op=statements / ops if ops else math.nan,
    )


def line(spec: RunSpec, workers: str, summary: Summary) -> str:
    return (
        f"backend={spec.backend} path={spec.path} clients={spec.clients} workers={workers} "
        f"op={summary.op} "
        f"per_s={summary.per_s:.1f} p50_ms={summary.p50_ms:.2f} p99_ms={summary.p99_ms:.2f} "
        f"ops={summary.ops} statements_per_op={summary.statements_per_op:.1f}"
    )


# --- pgbench baseline -----------------------------------------------------------------------


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the environment that carries it."""
    parsed = make_url(url)
    environment = dict(os.environ)
    if parsed.password is not None:
        environment["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), environment


def pgbench_tps(admin_url: str, seconds: int) -> float:
    """``pgbench -N`` (no branch/teller updates) at 16 clients on its own throwaway database."""
    with postgres_database(admin_url) as url:
        uri, environment = _libpq(url)
        subprocess.run(
            # G: generate rows server-side, much faster than client-side at scale 16
            ["pgbench", "-i", "-s", str(PGBENCH_SCALE), "-I", "dtGvp", uri],
            env=environment,
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        completed = subprocess.run(
            ["pgbench", "-N", "-c", str(PGBENCH_CLIENTS), "-j", "2", "-T", str(seconds), "-n", uri],
            env=environment,
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
    found = TPS_PATTERN.search(completed.stdout)
    if found is None:
        raise BenchError(f"no tps in pgbench output: {completed.stdout!r}")
    return float(found.group(1))


# pgbench calling the hold function itself, with no Python in the way: the most the
# service path could reach on this server (a C client, prepared statements). Each
# client holds from its own project, as the bench's clients do. The key prefix and
# the actor travel as -D variables: a colon inside the script would read as one.
FUNCTION_SCRIPT = """\\set r random(1, 1000000000000000000)
\\set p :client_id + 1
SELECT * FROM ledger_place_hold_v1(:prefix || CAST(:p AS text) || '/' || CAST(:r AS text),
    'pgbench', 'gpu', 1000000, :p, NULL, NULL, NULL, :actor, now(), CAST(now() AS text));
"""


def function_tps(spec: RunSpec, seconds: int) -> float:
    """``ledger_place_hold_v1`` driven by pgbench at ``spec.clients`` on the run's database."""
    uri, environment = _libpq(spec.url)
    with tempfile.TemporaryDirectory(prefix="credits-bench-") as directory:
        script = Path(directory) / "hold.sql"
        script.write_text(FUNCTION_SCRIPT)
        completed = subprocess.run(
            [
                "pgbench", "-n", "-M", "prepared", "-f", str(script),
                "-D", f"prefix=bench:{spec.run_id}:pgbench:",
                "-D", f"actor={ACTOR.label}",
                "-c", str(spec.clients), "-j", "2", "-T", str(seconds), uri,
            ],
            env=environment,
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )  # fmt: skip
    found = TPS_PATTERN.search(completed.stdout)
    if found is None:
        raise BenchError(f"no tps in pgbench output: {completed.stdout!r}")
    return float(found.group(1))


# --- the whole benchmark --------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    backends: tuple[str, ...]
    postgres_url: str | None
    clients: tuple[int, ...]
    seconds: float
    workers: str
    quick: bool
    # With --processes: how many processes the clients spread over (0: one per client).
    processes: int = 0
    # PostgreSQL's paths to run ("python", "functions"); SQLite has only the Python path.
    paths: tuple[str, ...] = ("functions",)


def bench_backend(backend: str, path: str, options: Options) -> dict[int, Summary]:
    """Every client count on fresh databases; returns the hold figures by client count
    (and records the function's own rate under pgbench in ``FUNCTION_TPS``)."""
    holds: dict[int, Summary] = {}
    transfers = 0
    runner: Callable[[RunSpec], list[ClientResult]] = run_threads
    if options.workers != "threads":
        runner = partial(run_processes, processes=options.processes)
    for clients in options.clients:
        with fresh_database(backend, options.postgres_url) as url:
            spec = RunSpec(backend, url, clients, options.seconds, uuid.uuid4().hex[:8], path)
            set_up(spec)
            results = runner(spec)
            holds[clients] = summarise("hold", [r.hold for r in results])
            print(line(spec, options.workers, holds[clients]))
            for op in ("capture", "void"):
                phases = [getattr(result, op) for result in results]
                print(line(spec, options.workers, summarise(op, phases)))
            if _wants_function_tps(spec):
                tps = function_tps(spec, max(1, math.ceil(options.seconds)))
                FUNCTION_TPS[clients] = tps
                print(
                    f"baseline=pgbench-ledger_place_hold_v1 clients={clients} tps={tps:.1f}"
                    " (the function alone, driven by pgbench: no Python)"
                )
            # After pgbench's holds too: they must verify like the service's.
            transfers += verify(url)
    print(
        f"backend={backend} path={path} verify=ok databases={len(options.clients)}"
        f" transfers={transfers}"
    )
    return holds


Figures = dict[tuple[str, str], dict[int, Summary]]
# Holds per second of ledger_place_hold_v1 under pgbench, by client count.
FUNCTION_TPS: dict[int, float] = {}


def _wants_function_tps(spec: RunSpec) -> bool:
    return (
        spec.backend == "postgresql"
        and spec.path == "functions"
        and spec.clients == PGBENCH_CLIENTS
        and shutil.which("pgbench") is not None
    )


def ratios(options: Options, figures: Figures) -> None:
    """Each figure against its baseline: pgbench -N, the Python path, SQLite before 0017."""
    functions = figures.get(("postgresql", "functions"), {})
    python = figures.get(("postgresql", "python"), {})
    for clients in sorted(set(functions) & set(python)):
        ratio = _ratio(functions[clients].per_s, python[clients].per_s)
        print(f"ratio postgresql_hold{clients} functions/python={ratio}")
    for clients, summary in sorted(figures.get(("sqlite", "python"), {}).items()):
        if clients in SQLITE_HOLDS_BEFORE:
            ratio = _ratio(summary.per_s, SQLITE_HOLDS_BEFORE[clients])
            print(
                f"ratio sqlite_hold{clients}/before={ratio} target>=1.0"
                f" (before: {SQLITE_HOLDS_BEFORE[clients]:.1f}/s)"
            )
    ours = functions or python
    if options.postgres_url is None or not ours:
        return
    if shutil.which("pgbench") is None:
        print("note: pgbench is not on PATH; no baseline")
        return
    tps = pgbench_tps(options.postgres_url, max(1, math.ceil(options.seconds)))
    print(f"baseline=pgbench-N clients={PGBENCH_CLIENTS} tps={tps:.1f}")
    if PGBENCH_CLIENTS in ours:
        ratio = _ratio(ours[PGBENCH_CLIENTS].per_s, tps)
        print(f"ratio hold{PGBENCH_CLIENTS}/pgbench_N={ratio} target>={HOLD_TARGET}")
    if PGBENCH_CLIENTS in FUNCTION_TPS:
        alone = FUNCTION_TPS[PGBENCH_CLIENTS]
        # The ceiling: what the hold would reach if the Python around it cost nothing.
        print(f"ratio function_alone{PGBENCH_CLIENTS}/pgbench_N={_ratio(alone, tps)}")
        if PGBENCH_CLIENTS in functions:
            ratio = _ratio(functions[PGBENCH_CLIENTS].per_s, alone)
            print(f"ratio hold{PGBENCH_CLIENTS}/function_alone={ratio}")


def _ratio(ours: float, baseline: float) -> str:
    return f"{ours / baseline:.3f}" if baseline > 0 else "n/a"


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CREDITS_BENCH_POSTGRES_URL")
        or os.environ.get("CREDITS_TEST_POSTGRES_URL"),
        help="server to create throwaway databases on "
        "(default: $CREDITS_BENCH_POSTGRES_URL or $CREDITS_TEST_POSTGRES_URL)",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--sqlite-only", action="store_true")
    only.add_argument("--postgres-only", action="store_true")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated (default 1,4,16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per operation and run")
    parser.add_argument(
        "--processes",
        nargs="?",
        type=int,
        const=0,
        metavar="N",
        help="clients in N processes of threads (as gunicorn's workers); no N: one per client",
    )
    parser.add_argument(
        "--path",
        choices=("functions", "python", "both"),
        default="functions",
        help="PostgreSQL: migration 0017's functions, the Python path, or both in one run",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_SECONDS:g} s per operation and run"
    )
    args = parser.parse_args(argv)
    try:
        clients = tuple(int(part) for part in args.clients.split(","))
    except ValueError:
        parser.error(f"--clients must be comma-separated integers, got {args.clients!r}")
    if any(count < 1 for count in clients) or args.seconds <= 0:
        parser.error("--clients must be at least 1 and --seconds positive")
    if args.postgres_only and not args.postgres_url:
        parser.error("--postgres-only needs --postgres-url or $CREDITS_BENCH_POSTGRES_URL")
    backends = ("sqlite",) if args.sqlite_only else ("sqlite", "postgresql")
    if args.postgres_only:
        backends = ("postgresql",)
    return Options(
        backends=backends,
        postgres_url=args.postgres_url or None,
        clients=clients,
        seconds=QUICK_SECONDS if args.quick else args.seconds,
        workers=_workers_label(args.processes),
        processes=args.processes or 0,
        quick=args.quick,
        paths=("python", "functions") if args.path == "both" else (args.path,),
    )


def _workers_label(processes: int | None) -> str:
    if processes is None:
        return "threads"
    return f"processes:{processes}" if processes else "processes"


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    options = parse_options(argv)
    figures: Figures = {}
    try:
        for backend in options.backends:
            if backend == "postgresql" and options.postgres_url is None:
                print(
                    "note: no PostgreSQL URL (--postgres-url, CREDITS_BENCH_POSTGRES_URL or "
                    "CREDITS_TEST_POSTGRES_URL); PostgreSQL runs skipped"
                )
                continue
            for path in options.paths if backend == "postgresql" else ("python",):
                figures[backend, path] = bench_backend(backend, path, options)
        ratios(options, figures)
    except (BenchError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None) or ""
        print(f"error: {error} {detail}".strip(), file=sys.stderr)
        return 1
    wall = time.monotonic() - started
    budget = f" budget_s={QUICK_BUDGET_S:g}" if options.quick else ""
    print(f"wall_s={wall:.1f}{budget}")
    if options.quick and wall > QUICK_BUDGET_S:
        print(f"error: --quick took {wall:.1f} s, over its {QUICK_BUDGET_S:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
