"""Runs one attempt of a local job: ``python -m credits.jobs.executors.local_runner DIR``.

The local executor starts this in its own session, so a job outlives the web
server that launched it. The runner owns its attempt directory: it holds
``runner.lock`` for as long as it lives (an executor that finds the lock free
knows the runner is gone), runs the command in a process group of its own,
enforces the max runtime, honours cancellation (SIGTERM, or a ``cancel`` file
for a signal that came too early) and writes ``status.json`` when the command
starts and when it ends. Status writes are atomic, so a reader never sees half
a file.

Only the standard library and ``base`` are imported: the runner should start
fast and must not drag the web application into every job.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from credits.jobs.executors.base import Phase

REQUEST_FILE = "request.json"
STATUS_FILE = "status.json"
RUNNER_FILE = "runner.json"
LOCK_FILE = "runner.lock"
CANCEL_FILE = "cancel"
OUTPUT_FILE = "output.log"
RUNNER_LOG_FILE = "runner.log"
HOST_ENV_NAMES = ("PATH", "HOME", "LANG")
# How long a stopped job may take to exit after SIGTERM before it gets SIGKILL.
STOP_GRACE_S = 5.0
POLL_S = 0.1
# An executor probing runner.lock holds it for microseconds; a starting runner
# waits this long before deciding another runner owns the attempt.
CLAIM_WAIT_S = 2.0


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Writes a temporary file and renames it over ``path``: readers see old or new."""
    # Unique per writer: two threads may record the same status at once.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    temporary.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's object, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lock_is_held(path: Path) -> bool:
    """Whether a live process holds the flock on ``path``."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock when this probe took it
    return False


def _claim(attempt_dir: Path) -> int | None:
    """Takes runner.lock for the life of this process; None when another runner has it."""
    fd = os.open(attempt_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)
        else:
            return fd


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _exit_outcome(code: int) -> tuple[Phase, int, str | None]:
    """The phase, exit code and reason of a command that ended on its own."""
    if code == 0:
        return Phase.SUCCEEDED, 0, None
    if code < 0:
        # Shells and Kubernetes report a death by signal N as 128 + N.
        return Phase.FAILED, 128 - code, f"killed by signal {signal.Signals(-code).name}"
    return Phase.FAILED, code, f"exit code {code}"


class _Runner:
    """Runs the command of one attempt directory and records what became of it."""

    def __init__(self, attempt_dir: Path, request: dict[str, Any]) -> None:
        self.dir = attempt_dir
        self.request = request
        self.cancel_requested = False
        self.status: dict[str, Any] = {
            "job_id": request["job_id"],
            "attempt": request["attempt"],
            "runner_pid": os.getpid(),
            "child_pid": None,
            "started_at": None,
        }

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self._cancelled():
            self.finish(Phase.CANCELLED, None, "cancelled")
            return
        with (self.dir / OUTPUT_FILE).open("ab") as output:
            child = self._start(output)
        if child is None:
            return
        phase, code, reason = self._supervise(child)
        self.finish(phase, code, reason)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        self.cancel_requested = True

    def _cancelled(self) -> bool:
        return self.cancel_requested or (self.dir / CANCEL_FILE).exists()

    def _start(self, output: Any) -> subprocess.Popen[bytes] | None:
        """Starts the command in a process group of its own; None when it cannot start."""
        argv = [*self.request["command"], *self.request["args"]]
        cwd = Path(self.request["working_dir"] or self.dir)
        problem = _start_problem(argv, cwd)
        if problem is None:
            try:
                child = subprocess.Popen(  # noqa: S603 - running the job's command is the point
                    argv,
                    cwd=cwd,
                    env=self._environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                problem = _popen_problem(argv[0], error)
        if problem is not None:
            output.write(f"credits: {problem}\n".encode())
            self.finish(Phase.FAILED, None, problem)
            return None
        self.status |= {"child_pid": child.pid, "started_at": utc_now_iso()}
        self._write(Phase.RUNNING)
        return child

    def _environment(self) -> dict[str, str]:
        host = {name: os.environ[name] for name in HOST_ENV_NAMES if name in os.environ}
        platform = {
            "CUDA_VISIBLE_DEVICES": ",".join(self.request["slots"]),
            "CREDITS_JOB_ID": str(self.request["job_id"]),
            "CREDITS_JOB_ATTEMPT": str(self.request["attempt"]),
        }
        # Python jobs' output reaches the log as it is printed, unless the job says otherwise.
        defaults = {"PYTHONUNBUFFERED": "1"}
        # The platform's names win: a job may not pick GPUs it was not given.
        return host | defaults | dict(self.request["env"]) | platform

    def _supervise(self, child: subprocess.Popen[bytes]) -> tuple[Phase, int | None, str | None]:
        max_runtime = int(self.request["max_runtime_seconds"])
        deadline = time.monotonic() + max_runtime
        while True:
            try:
                code = child.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            else:
                # Whatever the command left behind in its group goes with it.
                _signal_group(child.pid, signal.SIGKILL)
                return _exit_outcome(code)
            if self._cancelled():
                _stop(child)
                return Phase.CANCELLED, None, "cancelled"
            if time.monotonic() >= deadline:
                _stop(child)
                return Phase.TIMED_OUT, None, f"max runtime {max_runtime} s reached"

    def finish(self, phase: Phase, exit_code: int | None, reason: str | None) -> None:
        self.status |= {"exit_code": exit_code, "reason": reason, "finished_at": utc_now_iso()}
        self._write(phase)

    def _write(self, phase: Phase) -> None:
        self.status["phase"] = phase.value
        write_json_atomic(self.dir / STATUS_FILE, self.status)


def _start_problem(argv: list[str], cwd: Path) -> str | None:
    if not argv:
        return "the job has no command"
    if not cwd.is_dir():
        return f"working directory {cwd} does not exist"
    return None


def _popen_problem(program: str, error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return f"command not found: {program}"
    return f"cannot run {program}: {error.strerror or error}"


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's group, SIGKILL after the grace period."""
    _signal_group(child.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=STOP_GRACE_S)
    _signal_group(child.pid, signal.SIGKILL)
    child.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m credits.jobs.executors.local_runner ATTEMPT_DIR\n")
        return 2
    attempt_dir = Path(argv[1])
    if _claim(attempt_dir) is None:
        return 0  # another runner owns this attempt
    if (attempt_dir / STATUS_FILE).exists():
        return 0  # a runner already ran it; a second run would repeat the job
    request = read_json(attempt_dir / REQUEST_FILE)
    if request is None:
        sys.stderr.write(f"no readable {REQUEST_FILE} in {attempt_dir}\n")
        return 1
    runner = _Runner(attempt_dir, request)
    try:
        runner.run()
    except Exception as error:
        runner.finish(Phase.FAILED, None, f"runner error: {error}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
