"""The load side of the API benchmark (scripts/bench/api.py): keep-alive
``http.client`` connections in threads, an open loop on a fixed schedule and a
closed loop, latencies by operation, and the CPU each side used."""

from __future__ import annotations

import http.client
import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REQUEST_TIMEOUT_S = 30.0
OPEN_LOOP_THREADS = 32  # enough that a slow answer delays no scheduled send

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

    def close(self) -> None:
        self.conn.close()


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
    port: int, request_for: RequestFor, *, op: str, clients: int, seconds: float
) -> Samples:
    """``clients`` threads, each sending its next request when the last is answered."""
    samples = Samples()
    end = time.perf_counter() + seconds

    def client(index: int) -> None:
        connection = Connection(port)
        try:
            while time.perf_counter() < end:
                request = request_for(op, index)
                sent = time.perf_counter()
                error = connection.send(request)
                samples.add(op, (time.perf_counter() - sent) * 1000.0, error)
        finally:
            connection.close()

    _run_threads(client, clients)
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
    label: str, op: str, offered: float | None, master_pid: int, run: Callable[[], Samples]
) -> Phase:
    wall, cpu, server = time.perf_counter(), time.process_time(), server_seconds(master_pid)
    samples = run()
    return Phase(
        label=label,
        op=op,
        offered=offered,
        wall_s=time.perf_counter() - wall,
        client_cpu_s=time.process_time() - cpu,
        server_cpu_s=server_seconds(master_pid) - server,
        samples=samples,
    )


def report(phase: Phase, mixed: Sequence[str]) -> None:
    """One line for the phase, and one per op of a mixed phase."""
    offered = f" offered_per_s={phase.offered:.0f}" if phase.offered is not None else ""
    ops: list[str | None] = [None] if phase.op != "mixed" else [None, *mixed]
    for op in ops:
        n = len(phase.latencies(op))
        print(
            f"phase={phase.label} op={op or phase.op}{offered} per_s={phase.per_s(op):.1f} "
            f"p50_ms={phase.percentile(0.50, op):.1f} p99_ms={phase.percentile(0.99, op):.1f} "
            f"n={n} errors={len(phase.samples.errors) if op is None else '-'} "
            f"client_cpu={100 * phase.client_cpu_s / phase.wall_s:.0f}% "
            f"server_cpu={100 * phase.server_cpu_s / phase.wall_s:.0f}%",
            flush=True,
        )
