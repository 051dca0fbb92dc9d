"""The load side of the API benchmark (scripts/bench/api.py): keep-alive
``http.client`` connections in threads, an open loop on a fixed schedule and a
closed loop, latencies by operation, and the CPU each side used."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REQUEST_TIMEOUT_S = 30.0
OPEN_LOOP_THREADS = 32  # enough that a slow answer delays no scheduled send
SPREAD_TRIES_PER_CONNECTION = 50
SPREAD_FAILURES = 3  # consecutive failed asks of the worker route: the server is not right
WORKER_PATH = "/bench/worker"  # the answering worker's pid (api_bench_app.py)


class LoadError(Exception):
    """The load could not be set up as asked."""


# What to send for an operation: (op, the sender's number) -> the request.
RequestFor = Callable[[str, int], "Request"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]


@dataclass
class Samples:
    """Latencies (ms) by op, and failed requests, from every thread of a phase."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: str, ms: float, error: str | None) -> None:
        with self.lock:
            if error is not None:
                self.errors.append(f"{op}: {error}")
            else:
                self.latencies.setdefault(op, []).append(ms)


class Connection:
    """A keep-alive connection of one client thread, reopened after a failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)

    def send(self, request: Request) -> str | None:
        """Sends the request and reads the answer; the error, or None on a 2xx."""
        try:
            self.conn.request(request.method, request.path, request.body, request.headers)
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.conn.close()
            self.conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S
            )
            return f"{type(error).__name__}: {error}"
        if 200 <= response.status < 300:
            return None
        return f"HTTP {response.status}: {payload[:200]!r}"

    def worker_pid(self) -> int | None:
        """The pid of the gunicorn worker holding this connection, or None if the
        request failed."""
        try:
            self.conn.request("GET", WORKER_PATH)
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            return None
        if response.status != 200:
            return None
        try:
            return int(json.loads(payload)["pid"])
        except (ValueError, KeyError, TypeError):
            return None

    def close(self) -> None:
        self.conn.close()


@dataclass
class SpreadConnections:
    """Keep-alive connections, each known to be held by one gunicorn worker."""

    connections: list[Connection]
    per_worker: list[int]

    def describe(self) -> str:
        return "+".join(str(count) for count in sorted(self.per_worker, reverse=True))

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


def spread_connections(port: int, count: int, workers: int) -> SpreadConnections:
    """``count`` keep-alive connections spread as evenly over the ``workers``
    gunicorn workers as ``count`` allows: each worker holds ``count // workers``
    of them, and ``count % workers`` workers one more.

    A keep-alive connection stays with the worker that accepted it, and which
    worker accepts is a race between the workers' event loops: eight connections
    opened at once have landed 8 to 0, and the bare route then served 843
    requests/s against 1,996 at 4 to 4. Two phases whose connections fell
    differently would compare the draws rather than the routes, so each closed
    loop runs on an even spread: every new connection is asked which worker
    holds it, and one to a worker that has its share already is closed.
    """
    share, extra = divmod(count, workers)
    kept: dict[int, list[Connection]] = {}
    failures = 0
    for _ in range(count * SPREAD_TRIES_PER_CONNECTION):
        if sum(len(held) for held in kept.values()) == count:
            break
        connection = Connection(port)
        pid = connection.worker_pid()
        if pid is None:
            connection.close()
            failures += 1
            if failures >= SPREAD_FAILURES:
                break
            continue
        failures = 0
        if not _has_room(kept, pid, share=share, extra=extra, workers=workers):
            connection.close()
            continue
        kept.setdefault(pid, []).append(connection)
    per_worker = [len(held) for held in kept.values()]
    spread = SpreadConnections(
        [connection for held in kept.values() for connection in held],
        per_worker + [0] * (workers - len(per_worker)),
    )
    if len(spread.connections) < count:
        spread.close()
        raise LoadError(
            f"could not spread {count} connections over {workers} workers "
            f"(got {spread.describe()}{', the worker route failed' if failures else ''})"
        )
    return spread


def _has_room(
    kept: dict[int, list[Connection]], pid: int, *, share: int, extra: int, workers: int
) -> bool:
    """Whether the worker ``pid`` may hold one more connection of an even spread."""
    held = len(kept.get(pid, []))
    if pid not in kept and len(kept) == workers:
        return False
    if held < share:
        return True
    larger = sum(1 for connections in kept.values() if len(connections) > share)
    return held == share and larger < extra


def open_loop(port: int, request_for: RequestFor, *, ops: Sequence[str], rate: float) -> Samples:
    """``ops[n]`` sent at ``start + n / rate`` on a fixed schedule; each latency runs
    from its scheduled send time, so queueing behind a slow server counts."""
    total = len(ops)
    samples = Samples()
    start = time.perf_counter() + 0.2
    counter = itertools.count()  # next() on it is atomic in CPython

    def client(index: int) -> None:
        connection = Connection(port)
        try:
            while (n := next(counter)) < total:
                due = start + n / rate
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
                op = ops[n]
                request = request_for(op, n + index)
                error = connection.send(request)
                samples.add(op, (time.perf_counter() - due) * 1000.0, error)
        finally:
            connection.close()

    _run_threads(client, OPEN_LOOP_THREADS)
    return samples


def closed_loop(
    connections: Sequence[Connection], request_for: RequestFor, *, op: str, seconds: float
) -> Samples:
    """A thread per connection, each sending its next request when the last is
    answered; the connections stay open for the caller."""
    samples = Samples()
    end = time.perf_counter() + seconds

    def client(index: int) -> None:
        connection = connections[index]
        while time.perf_counter() < end:
            request = request_for(op, index)
            sent = time.perf_counter()
            error = connection.send(request)
            samples.add(op, (time.perf_counter() - sent) * 1000.0, error)

    _run_threads(client, len(connections))
    return samples


def _run_threads(target: Callable[[int], None], count: int) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --- CPU ------------------------------------------------------------------------------------


def _process_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0  # it ended while we looked
    return int(fields[11]) + int(fields[12])  # utime + stime


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == pid:
            found.append(int(entry.name))
    return found


def server_seconds(master_pid: int) -> float:
    """CPU seconds gunicorn's master and its live workers have used."""
    ticks = sum(_process_ticks(pid) for pid in [master_pid, *_children(master_pid)])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Phase:
    label: str
    op: str
    offered: float | None
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float
    samples: Samples
    spread: str | None = None  # connections per worker of a closed loop, e.g. "4+4"

    def per_s(self, op: str | None = None) -> float:
        return len(self.latencies(op)) / self.wall_s

    def percentile(self, q: float, op: str | None = None) -> float:
        values = sorted(self.latencies(op))
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))]

    def latencies(self, op: str | None) -> list[float]:
        if op is not None:
            return self.samples.latencies.get(op, [])
        return [ms for values in self.samples.latencies.values() for ms in values]


def measured(
    label: str,
    op: str,
    offered: float | None,
    master_pid: int,
    run: Callable[[], Samples],
    *,
    spread: str | None = None,
) -> Phase:
    # The scan of /proc first, so that neither clock counts it.
    server = server_seconds(master_pid)
    wall, cpu = time.perf_counter(), time.process_time()
    samples = run()
    return Phase(
        label=label,
        op=op,
        offered=offered,
        wall_s=time.perf_counter() - wall,
        client_cpu_s=time.process_time() - cpu,
        server_cpu_s=server_seconds(master_pid) - server,
        samples=samples,
        spread=spread,
    )


def combined(slices: Sequence[Phase]) -> Phase:
    """One phase out of slices of the same kind: their times summed, their samples
    pooled."""
    samples = Samples()
    for part in slices:
        samples.errors.extend(part.samples.errors)
        for op, values in part.samples.latencies.items():
            samples.latencies.setdefault(op, []).extend(values)
    spreads = sorted({part.spread for part in slices if part.spread is not None})
    first = slices[0]
    return Phase(
        label=first.label,
        op=first.op,
        offered=first.offered,
        wall_s=sum(part.wall_s for part in slices),
        client_cpu_s=sum(part.client_cpu_s for part in slices),
        server_cpu_s=sum(part.server_cpu_s for part in slices),
        samples=samples,
        spread=",".join(spreads) if spreads else None,
    )


def report(phase: Phase, mixed: Sequence[str]) -> None:
    """One line for the phase, and one per op of a mixed phase."""
    offered = f" offered_per_s={phase.offered:.0f}" if phase.offered is not None else ""
    spread = f" spread={phase.spread}" if phase.spread is not None else ""
    ops: list[str | None] = [None] if phase.op != "mixed" else [None, *mixed]
    for op in ops:
        n = len(phase.latencies(op))
        print(
            f"phase={phase.label} op={op or phase.op}{offered} per_s={phase.per_s(op):.1f} "
            f"p50_ms={phase.percentile(0.50, op):.1f} p99_ms={phase.percentile(0.99, op):.1f} "
            f"n={n} errors={len(phase.samples.errors) if op is None else '-'} "
            f"client_cpu={100 * phase.client_cpu_s / phase.wall_s:.0f}% "
            f"server_cpu={100 * phase.server_cpu_s / phase.wall_s:.0f}%{spread}",
            flush=True,
        )
