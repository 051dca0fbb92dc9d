"""What a local job's attempt folder says of it: its :class:`Observation`.

The runner's ``status.json`` is the truth while the runner lives; a runner gone
without a final status is recorded as lost here (FAILED, or CANCELLED or
PREEMPTED when a cancel or a platform stop was asked), once, so every later read
gives the same answer. Split from :mod:`credits.jobs.executors.local`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from credits.jobs.executors.base import Observation, Phase
from credits.jobs.executors.local_process import process_alive
from credits.jobs.executors.local_runner import (
    CANCEL_FILE,
    LOCK_FILE,
    REQUEST_FILE,
    RUNNER_FILE,
    STATUS_FILE,
    lock_is_held,
    read_json,
    read_stop,
    utc_now_iso,
    write_json_atomic,
)

ORPHAN_WAIT_STEPS = 20
LOST_REASON = "runner lost"


def observe_attempt(attempt_dir: Path) -> Observation:
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
        alive = process_alive(int(runner["pid"]))
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
    if not (attempt_dir / RUNNER_FILE).exists():
        if (attempt_dir / CANCEL_FILE).exists():
            return Observation(job_id, attempt, Phase.CANCELLED, reason="cancelled")
        if (stop := read_stop(attempt_dir)) is not None:
            return Observation(job_id, attempt, stop.phase, reason=stop.reason)
    return Observation(job_id, attempt, Phase.PENDING)


def _record_lost(attempt_dir: Path, status: dict[str, Any] | None) -> Observation:
    record = read_json(attempt_dir / REQUEST_FILE) or {}
    phase, reason = Phase.FAILED, LOST_REASON
    if (attempt_dir / CANCEL_FILE).exists():
        phase, reason = Phase.CANCELLED, "cancelled"
    elif (stop := read_stop(attempt_dir)) is not None:
        phase, reason = stop.phase, stop.reason  # it was being stopped anyway
    lost = {
        "job_id": record.get("job_id", 0),
        "attempt": record.get("attempt", 0),
        "started_at": None,
        **(status or {}),
        "phase": phase.value,
        "finished_at": _lost_at(status),
        "exit_code": None,
        "reason": reason,
    }
    if status is not None and status.get("child_pid") and _orphan_survives(status):
        # Its GPU slot stays taken until the orphan is really gone; ask again later.
        return _from_status(status)
    write_json_atomic(attempt_dir / STATUS_FILE, lost)
    return _from_status(lost)


def _lost_at(status: dict[str, Any] | None) -> str:
    """When a lost runner ended, as near as the host can tell. One that started
    before the host last booted died with it, at the latest then: a platform down
    for hours after a reboot must not charge its jobs for those hours. Otherwise,
    now, when it is noticed (within a reconcile interval of a runner killed while
    the platform ran)."""
    started = _parse_time((status or {}).get("started_at"))
    booted = host_boot_time()
    if started is not None and booted is not None and started < booted:
        return booted.isoformat()
    return utc_now_iso()


def host_boot_time() -> datetime | None:
    """When the host last booted (Linux's ``btime``); None where it cannot be read."""
    try:
        with Path("/proc/stat").open(encoding="ascii") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return datetime.fromtimestamp(int(line.split()[1]), UTC)
    except (OSError, ValueError):
        return None
    return None


def _orphan_survives(status: dict[str, Any]) -> bool:
    """Kills a dead runner's command if it still runs (nobody else would stop it);
    whether it is still there after a moment.

    Only a process with the recorded pid *and* start time is hit, so a pid reused
    by an unrelated process never is. A sandboxed job dies with its runner anyway
    (bwrap's --die-with-parent); this covers jobs run with the sandbox off.
    """
    child_pid, ticks = int(status["child_pid"]), status.get("child_start_ticks")
    ticks = None if ticks is None else int(ticks)
    for _ in range(ORPHAN_WAIT_STEPS):
        if not process_alive(child_pid, ticks):
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child_pid, signal.SIGKILL)
        time.sleep(0.05)
    return process_alive(child_pid, ticks)


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
