"""An executor that runs each job as a plain process on this host.

There is no container: ``image`` is ignored, the command runs with the host's
Python, libraries and file system, as the user the platform runs as. It suits
a single workstation, demos and tests, not untrusted users.

Everything lives on disk under ``work_dir/jobs/{job_id}/attempt-{n}/``:
``request.json`` (the request and the GPU slots chosen), ``runner.json`` (the
runner's pid, written by launch), ``status.json`` (written by the runner),
``output.log`` (the command's stdout and stderr), ``runner.log`` (the runner's
own), ``cancel`` (a marker) and ``runner.lock`` (held by a live runner). A
detached runner (:mod:`credits.jobs.executors.local_runner`) supervises each
attempt, so jobs outlive a restart of the server, and a new executor on the
same ``work_dir`` picks up where the old one stopped. Nothing is kept in
memory; which GPU slots are free is read from disk on every launch, under a
lock, so several server processes may share one ``work_dir``.

POSIX only (process groups, flock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from credits.jobs.executors.base import (
    Capacity,
    ExecutorError,
    LaunchRequest,
    NodeCapacity,
    Observation,
    Phase,
)
from credits.jobs.executors.gpus import discover_gpu_slots
from credits.jobs.executors.local_runner import (
    CANCEL_FILE,
    LOCK_FILE,
    OUTPUT_FILE,
    REQUEST_FILE,
    RUNNER_FILE,
    RUNNER_LOG_FILE,
    STATUS_FILE,
    lock_is_held,
    read_json,
    utc_now_iso,
    write_json_atomic,
)

__all__ = ["LocalExecutor", "discover_gpu_slots"]

RUNNER_MODULE = "credits.jobs.executors.local_runner"
LOST_REASON = "runner lost"
_TAIL_BLOCK = 64 * 1024


class LocalExecutor:
    """Runs jobs as processes on this host, one GPU slot per GPU asked."""

    name = "local"

    def __init__(
        self, work_dir: Path, *, flavour: str, slots: Sequence[str], node_name: str = "local"
    ) -> None:
        if len(set(slots)) != len(slots):
            raise ValueError(f"GPU slots must be distinct; got {list(slots)}")
        self._jobs_dir = work_dir / "jobs"
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = work_dir / "launch.lock"
        self._flavour = flavour
        self._slots = tuple(slots)
        self._node_name = node_name

    def launch(self, request: LaunchRequest) -> None:
        """Starts a runner for the attempt unless one was started already.

        Earlier attempts of the job still running are cancelled: the new one
        replaces them. Raises ExecutorError when the placement is not this node
        or too few GPU slots are free (transient only when the missing slots
        belong to jobs that are stopping).
        """
        gpus = self._check_request(request)
        attempt_dir = self._attempt_dir(request.job_id, request.attempt)
        with self._launch_lock():
            if (attempt_dir / RUNNER_FILE).exists() or self._superseded(request):
                return
            self._stop_attempts(request.job_id, before=request.attempt)
            slots = self._pick_slots(gpus)
            attempt_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(attempt_dir / REQUEST_FILE, _request_record(request, slots))
            _start_runner(attempt_dir)

    def release(self, job_id: int) -> None:
        """A settled job needs nothing more; its logs and status stay on disk."""
        del job_id

    def cancel(self, job_id: int) -> None:
        """Marks every attempt cancelled and wakes its runner; unknown jobs are a no-op."""
        self._stop_attempts(job_id, before=None)

    def observe(self, job_ids: Collection[int]) -> dict[int, Observation]:
        observations: dict[int, Observation] = {}
        for job_id in job_ids:
            attempts = self._attempt_dirs(job_id)
            if attempts:
                observations[job_id] = _observe_attempt(attempts[-1])
        return observations

    def logs(self, job_id: int, *, tail_lines: int = 200) -> str:
        attempts = self._attempt_dirs(job_id)
        if not attempts:
            return ""
        return _tail(attempts[-1] / OUTPUT_FILE, tail_lines)

    def capacity(self) -> Capacity:
        return Capacity(nodes=(NodeCapacity(self._node_name, self._flavour, len(self._slots)),))

    # Internals.

    def _check_request(self, request: LaunchRequest) -> int:
        """The GPUs the request asks of this node; ExecutorError when it is not for us."""
        where = [part.node for part in request.placement]
        if where != [self._node_name]:
            raise ExecutorError(
                f"job {request.job_id}: placement {where} is not this node ({self._node_name})",
                transient=False,
            )
        if request.flavour != self._flavour:
            raise ExecutorError(
                f"job {request.job_id}: asks for {request.flavour}, this node is {self._flavour}",
                transient=False,
            )
        return request.placement[0].gpus

    def _pick_slots(self, gpus: int) -> list[str]:
        busy = self._busy_slots()
        free = [slot for slot in self._slots if slot not in busy]
        if len(free) >= gpus:
            return free[:gpus]
        stopping = sum(1 for slot in self._slots if busy.get(slot))
        raise ExecutorError(
            f"{gpus} GPUs asked, {len(free)} of {len(self._slots)} free on {self._node_name}",
            transient=len(free) + stopping >= gpus,
        )

    def slot_owners(self) -> dict[str, int]:
        """Which job each busy GPU slot belongs to, for attributing NVML telemetry."""
        owners: dict[str, int] = {}
        for job_dir in self._jobs_dir.iterdir():
            for attempt_dir in _attempt_dirs_in(job_dir):
                if not (attempt_dir / RUNNER_FILE).exists():
                    continue
                if _observe_attempt(attempt_dir).phase.is_final:
                    continue
                record = read_json(attempt_dir / REQUEST_FILE) or {}
                owners |= dict.fromkeys(record.get("slots", []), int(record["job_id"]))
        return owners

    def _busy_slots(self) -> dict[str, bool]:
        """Slots held by live attempts, each with whether its attempt is being stopped."""
        busy: dict[str, bool] = {}
        for job_dir in self._jobs_dir.iterdir():
            for attempt_dir in _attempt_dirs_in(job_dir):
                if not (attempt_dir / RUNNER_FILE).exists():
                    continue  # a launch that crashed before starting a runner holds nothing
                if _observe_attempt(attempt_dir).phase.is_final:
                    continue
                record = read_json(attempt_dir / REQUEST_FILE) or {}
                stopping = (attempt_dir / CANCEL_FILE).exists()
                busy |= dict.fromkeys(record.get("slots", []), stopping)
        return busy

    def _superseded(self, request: LaunchRequest) -> bool:
        """Whether a later attempt was launched; a late, older launch must not run."""
        attempts = self._attempt_dirs(request.job_id)
        return bool(attempts) and _attempt_number(attempts[-1]) > request.attempt

    def _stop_attempts(self, job_id: int, *, before: int | None) -> None:
        for attempt_dir in self._attempt_dirs(job_id):
            if before is not None and _attempt_number(attempt_dir) >= before:
                continue
            if _observe_attempt(attempt_dir).phase.is_final:
                continue
            # The marker covers a runner that has not yet set up its signal handler.
            (attempt_dir / CANCEL_FILE).touch()
            _signal_runner(attempt_dir)

    def _attempt_dir(self, job_id: int, attempt: int) -> Path:
        return self._jobs_dir / str(job_id) / f"attempt-{attempt}"

    def _attempt_dirs(self, job_id: int) -> list[Path]:
        return _attempt_dirs_in(self._jobs_dir / str(job_id))

    @contextlib.contextmanager
    def _launch_lock(self) -> Iterator[None]:
        """Serialises launches across threads and processes sharing this work_dir."""
        with self._lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _attempt_number(attempt_dir: Path) -> int:
    return int(attempt_dir.name.removeprefix("attempt-"))


def _attempt_dirs_in(job_dir: Path) -> list[Path]:
    """The job's launched attempts (those with a request), oldest first."""
    if not job_dir.is_dir():
        return []
    found = [
        path
        for path in job_dir.iterdir()
        if path.name.startswith("attempt-")
        and path.name.removeprefix("attempt-").isdigit()
        and (path / REQUEST_FILE).exists()
    ]
    return sorted(found, key=_attempt_number)


def _request_record(request: LaunchRequest, slots: list[str]) -> dict[str, Any]:
    """What the runner reads; the image is recorded but ignored (no containers here)."""
    return {
        "job_id": request.job_id,
        "attempt": request.attempt,
        "project_id": request.project_id,
        "name": request.name,
        "image": request.image,
        "command": list(request.command),
        "args": list(request.args),
        "env": dict(request.env),
        "working_dir": request.working_dir,
        "max_runtime_seconds": request.max_runtime_seconds,
        "labels": dict(request.labels),
        "slots": slots,
    }


def _start_runner(attempt_dir: Path) -> None:
    """Starts the runner in a session of its own, so it outlives this process."""
    try:
        with (attempt_dir / RUNNER_LOG_FILE).open("ab") as log:
            runner = subprocess.Popen(  # noqa: S603 - our own module, with our own Python
                [sys.executable, "-m", RUNNER_MODULE, str(attempt_dir)],
                cwd=attempt_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as error:
        raise ExecutorError(f"cannot start the job runner: {error}") from error
    write_json_atomic(attempt_dir / RUNNER_FILE, {"pid": runner.pid, "launched_at": utc_now_iso()})
    # Reap the runner when it exits, so it never lingers as a zombie that looks alive.
    threading.Thread(target=runner.wait, name=f"reap-runner-{runner.pid}", daemon=True).start()


def _signal_runner(attempt_dir: Path) -> None:
    """SIGTERM to a live runner's group; it then stops the command and records CANCELLED."""
    status = read_json(attempt_dir / STATUS_FILE)
    # Only a runner that wrote its status has its handler set; the lock proves it is
    # still that runner and not a process that reused its pid.
    if status is None or not lock_is_held(attempt_dir / LOCK_FILE):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(int(status["runner_pid"]), signal.SIGTERM)


def _observe_attempt(attempt_dir: Path) -> Observation:
    """The attempt as its files and its runner's liveness say.

    A runner gone without a final status is recorded as lost (FAILED, or
    CANCELLED when a cancel was asked), so later reads give the same answer.
    """
    status = read_json(attempt_dir / STATUS_FILE)
    if status is not None and Phase(status["phase"]).is_final:
        return _from_status(status)
    if status is None:
        runner = read_json(attempt_dir / RUNNER_FILE)
        if runner is None:
            return _unstarted(attempt_dir)
        alive = _pid_alive(int(runner["pid"]))
    else:
        alive = lock_is_held(attempt_dir / LOCK_FILE)
    if alive:
        return _from_status(status) if status is not None else _unstarted(attempt_dir)
    # The runner may have written its final status and exited since the first read.
    latest = read_json(attempt_dir / STATUS_FILE)
    if latest is not None and Phase(latest["phase"]).is_final:
        return _from_status(latest)
    return _record_lost(attempt_dir, latest)


def _unstarted(attempt_dir: Path) -> Observation:
    """An attempt whose runner has not written a status yet."""
    record = read_json(attempt_dir / REQUEST_FILE) or {}
    job_id, attempt = int(record.get("job_id", 0)), int(record.get("attempt", 0))
    if (attempt_dir / CANCEL_FILE).exists() and not (attempt_dir / RUNNER_FILE).exists():
        return Observation(job_id, attempt, Phase.CANCELLED, reason="cancelled")
    return Observation(job_id, attempt, Phase.PENDING)


def _record_lost(attempt_dir: Path, status: dict[str, Any] | None) -> Observation:
    record = read_json(attempt_dir / REQUEST_FILE) or {}
    cancelled = (attempt_dir / CANCEL_FILE).exists()
    lost = {
        "job_id": record.get("job_id", 0),
        "attempt": record.get("attempt", 0),
        "started_at": None,
        **(status or {}),
        "phase": (Phase.CANCELLED if cancelled else Phase.FAILED).value,
        "finished_at": utc_now_iso(),
        "exit_code": None,
        "reason": "cancelled" if cancelled else LOST_REASON,
    }
    if status is not None and status.get("child_pid"):
        _kill_orphan(int(status["child_pid"]), int(lost["job_id"]))
    write_json_atomic(attempt_dir / STATUS_FILE, lost)
    return _from_status(lost)


def _kill_orphan(child_pid: int, job_id: int) -> None:
    """Kills a dead runner's command if it still runs: nobody else would stop it.

    Only when /proc shows the process carries this job's id, so a pid reused by an
    unrelated process is never hit.
    """
    try:
        environ = Path(f"/proc/{child_pid}/environ").read_bytes()
    except OSError:
        return
    if f"CREDITS_JOB_ID={job_id}\0".encode() in environ:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child_pid, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (which os.kill cannot tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust os.kill
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _from_status(status: dict[str, Any]) -> Observation:
    exit_code = status.get("exit_code")
    return Observation(
        job_id=int(status["job_id"]),
        attempt=int(status["attempt"]),
        phase=Phase(status["phase"]),
        started_at=_parse_time(status.get("started_at")),
        finished_at=_parse_time(status.get("finished_at")),
        exit_code=None if exit_code is None else int(exit_code),
        reason=status.get("reason"),
    )


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of the file, read from its end; '' when it is missing."""
    if lines <= 0:
        return ""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return ""
    with handle:
        position = handle.seek(0, os.SEEK_END)
        data = b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(_TAIL_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    return b"".join(data.splitlines(keepends=True)[-lines:]).decode("utf-8", errors="replace")
