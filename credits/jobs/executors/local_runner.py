"""Runs one attempt of a local job: ``python -m credits.jobs.executors.local_runner DIR``.

The local executor starts this in its own session, so a job outlives the web
server that launched it. The runner owns its attempt directory: it holds
``runner.lock`` for as long as it lives (an executor that finds the lock free
knows the runner is gone), runs the command in the sandbox of
:mod:`credits.jobs.executors.sandbox` (or, with the sandbox off, in a process
group of its own), enforces the max runtime, honours cancellation (SIGTERM,
or a ``cancel`` file for a signal that came too early) and platform stops (a
``stop`` file naming the grace and the reason, then SIGTERM: the job gets
SIGTERM, the grace, then SIGKILL, and ends PREEMPTED) and writes
``status.json`` when the command starts and when it ends.

The runner is the only source of truth for the attempt: the job writes only
its ``work/`` folder and the ``tmp/`` and ``shm/`` folders behind its ``/tmp``
and ``/dev/shm`` (the parts of the attempt its sandbox sees; the runner empties
the last two when the job is gone), and its output reaches ``output.log``
through a pipe the runner copies from, cutting the oldest half of the log when
it passes the policy's ``max_log_bytes``. The
runner records the end only once every process of the job is gone, so a GPU
slot is never handed on while the job still holds it. Status writes are
atomic, so a reader never sees half a file.

Only the standard library, ``base`` and ``sandbox`` are imported: the runner
should start fast and must not drag the web application into every job.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

from credits.jobs.executors.base import Phase
from credits.jobs.executors.local_output import CappedLog, open_private
from credits.jobs.executors.local_process import (
    POLL_S,
    JobProcess,
    read_sandbox_init,
    start_ticks,
)
from credits.jobs.executors.sandbox import (
    JOB_PATH,
    SETTING_NAME,
    WORK_MOUNT,
    SandboxPolicy,
    bwrap_command,
    drops_to,
    job_environment,
    limits_prefix,
)

REQUEST_FILE = "request.json"
STATUS_FILE = "status.json"
RUNNER_FILE = "runner.json"
LOCK_FILE = "runner.lock"
CANCEL_FILE = "cancel"
# A platform stop (a move): {"grace_s": ..., "reason": ...}, written before the SIGTERM.
STOP_FILE = "stop"
OUTPUT_FILE = "output.log"
RUNNER_LOG_FILE = "runner.log"
# The job's own writable folder, seen as /work.
WORK_DIR = "work"
# The folders behind the sandbox's /tmp and /dev/shm: on disk, emptied after the job.
TMP_DIR = "tmp"
SHM_DIR = "shm"
SCRATCH_DIRS = (TMP_DIR, SHM_DIR)
# How long a cancelled job may take to exit after SIGTERM before it gets SIGKILL.
STOP_GRACE_S = 5.0
PUMP_CHUNK = 64 * 1024
# After the job is gone, how long its output pipe may take to drain.
PUMP_DRAIN_S = 5.0
# An executor probing runner.lock holds it for microseconds; a starting runner
# waits this long before deciding another runner owns the attempt.
CLAIM_WAIT_S = 2.0


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


def private_file(path: Path) -> BinaryIO:
    """``path`` opened for appending, created readable by its owner alone: the
    attempt's folder lets others pass through, and requests hold the job's env."""
    return open_private(path)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Writes a temporary file and renames it over ``path``: readers see old or new."""
    # Unique per writer: two threads may record the same status at once.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with private_file(temporary) as handle:
        handle.truncate(0)
        handle.write(json.dumps(data, indent=1).encode())
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


@dataclass(frozen=True, slots=True)
class StopAsk:
    """How the runner was asked to stop the job: the phase it then ends in."""

    phase: Phase
    reason: str
    grace_s: float


def read_stop(attempt_dir: Path) -> StopAsk | None:
    """The platform stop asked of the attempt, None when none was (or it is unreadable)."""
    record = read_json(attempt_dir / STOP_FILE)
    if record is None:
        return None
    reason = str(record.get("reason") or "stopped by the platform")
    return StopAsk(Phase.PREEMPTED, reason, max(0.0, float(record.get("grace_s", 0))))


# Shells, prlimit and bwrap exit with these when the command cannot be run.
EXEC_FAILURES = {126: "cannot run the command", 127: "command not found"}


def _exit_outcome(code: int) -> tuple[Phase, int, str | None]:
    """The phase, exit code and reason of a command that ended on its own."""
    if code == 0:
        return Phase.SUCCEEDED, 0, None
    if code < 0:
        # Shells and Kubernetes report a death by signal N as 128 + N.
        return Phase.FAILED, 128 - code, f"killed by signal {signal.Signals(-code).name}"
    if code in EXEC_FAILURES:
        return Phase.FAILED, code, f"exit code {code} ({EXEC_FAILURES[code]})"
    return Phase.FAILED, code, f"exit code {code}"


class _Runner:
    """Runs the command of one attempt directory and records what became of it.

    Everything the platform reads back (status, exit code, times, output) is
    written here, outside the job's sandbox: the job's output reaches
    ``output.log`` through a pipe, and the job cannot reach this directory.
    """

    def __init__(self, attempt_dir: Path, request: dict[str, Any]) -> None:
        self.dir = attempt_dir
        self.request = request
        self.policy = SandboxPolicy.from_record(request["sandbox"])
        self.cancel_requested = False
        self.status: dict[str, Any] = {
            "job_id": request["job_id"],
            "attempt": request["attempt"],
            "runner_pid": os.getpid(),
            "child_pid": None,
            "child_start_ticks": None,
            "started_at": None,
        }

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if (stop := self._stop_asked()) is not None:
            self.finish(stop.phase, None, stop.reason)
            return
        if not self.policy.enabled:
            sys.stderr.write(
                f"warning: job {self.request['job_id']} runs without a sandbox "
                f"({SETTING_NAME}=off): it can read and change everything this user can\n"
            )
        with CappedLog(self.dir / OUTPUT_FILE, self.policy.max_log_bytes) as output:
            started = self._start(output)
            if started is None:
                return
            job, pump = started
            phase, code, reason = self._supervise(job)
            job.wait_until_gone()
            pump.join(timeout=PUMP_DRAIN_S)
        self.finish(phase, code, reason)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        self.cancel_requested = True

    def _stop_asked(self) -> StopAsk | None:
        """A cancel (the file, or a SIGTERM with no stop file: someone else's) wins
        over a platform stop; None while neither was asked."""
        if (self.dir / CANCEL_FILE).exists():
            return StopAsk(Phase.CANCELLED, "cancelled", STOP_GRACE_S)
        stop = read_stop(self.dir)
        if stop is not None:
            return stop
        if self.cancel_requested:
            return StopAsk(Phase.CANCELLED, "cancelled", STOP_GRACE_S)
        return None

    def _start(self, output: CappedLog) -> tuple[JobProcess, threading.Thread] | None:
        """Starts the command, its output on a pipe; None when it cannot start."""
        argv = [*self.request["command"], *self.request["args"]]
        problem = _start_problem(argv, self.request["working_dir"], self.policy.enabled)
        job = None
        if problem is None:
            try:
                job, pump = self._spawn(argv, output)
            except OSError as error:
                problem = _popen_problem(argv[0], error)
        if problem is not None or job is None:
            output.write(f"credits: {problem}\n".encode())
            self.finish(Phase.FAILED, None, problem)
            return None
        self.status |= {
            "child_pid": job.child.pid,
            "child_start_ticks": start_ticks(job.child.pid),
            "started_at": utc_now_iso(),
        }
        self._write(Phase.RUNNING)
        return job, pump

    def _spawn(self, argv: list[str], output: CappedLog) -> tuple[JobProcess, threading.Thread]:
        read_end, write_end = os.pipe()
        try:
            if self.policy.enabled:
                job = self._spawn_sandboxed(argv, write_end)
            else:
                job = self._spawn_plain(argv, write_end)
        except OSError:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        pump = threading.Thread(target=_pump, args=(read_end, output), daemon=True)
        pump.start()
        return job, pump

    def _spawn_sandboxed(self, argv: list[str], output_fd: int) -> JobProcess:
        env = job_environment(self.request["env"], self.request["slots"], WORK_MOUNT)
        checkpoint = self.request.get("checkpoint_dir")
        info_read, info_write = os.pipe()
        try:
            with _folder_fds(self._mounted_folders()) as fds:
                command = bwrap_command(
                    self.policy,
                    argv,
                    env,
                    work_fd=fds[WORK_DIR],
                    tmp_fd=fds[TMP_DIR],
                    shm_fd=fds[SHM_DIR],
                    info_fd=info_write,
                    working_dir=self.request["working_dir"],
                    checkpoint_fd=fds[checkpoint] if checkpoint else None,
                )
                child = subprocess.Popen(  # noqa: S603 - running the job's command is the point
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output_fd,
                    stderr=output_fd,
                    start_new_session=True,
                    pass_fds=(info_write, *fds.values()),
                    env={"PATH": os.environ.get("PATH", JOB_PATH)},
                    **drops_to(self.policy),
                )
        except OSError:
            os.close(info_read)
            raise
        finally:
            os.close(info_write)
        return JobProcess(child, read_sandbox_init(info_read))

    def _mounted_folders(self) -> dict[str, Path]:
        """The folders the sandbox binds, by name: the attempt's work and scratch
        folders, and a checkpointable job's checkpoint folder under its own path."""
        folders = {name: self.dir / name for name in (WORK_DIR, *SCRATCH_DIRS)}
        if checkpoint := self.request.get("checkpoint_dir"):
            folders[checkpoint] = Path(checkpoint)
        return folders

    def _spawn_plain(self, argv: list[str], output_fd: int) -> JobProcess:
        work = self.dir / WORK_DIR
        child = subprocess.Popen(  # noqa: S603 - running the job's command is the point
            [*limits_prefix(self.policy), *argv],
            cwd=self.request["working_dir"] or work,
            env=job_environment(self.request["env"], self.request["slots"], str(work)),
            stdin=subprocess.DEVNULL,
            stdout=output_fd,
            stderr=output_fd,
            start_new_session=True,
        )
        return JobProcess(child, None)

    def _supervise(self, job: JobProcess) -> tuple[Phase, int | None, str | None]:
        max_runtime = int(self.request["max_runtime_seconds"])
        deadline = time.monotonic() + max_runtime
        while True:
            try:
                code = job.child.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            else:
                # Whatever the command left behind goes with it.
                job.kill()
                return _exit_outcome(code)
            if (stop := self._stop_asked()) is not None:
                job.stop(stop.grace_s)
                return stop.phase, None, stop.reason
            if time.monotonic() >= deadline:
                job.stop(STOP_GRACE_S)
                return Phase.TIMED_OUT, None, f"max runtime {max_runtime} s reached"

    def finish(self, phase: Phase, exit_code: int | None, reason: str | None) -> None:
        self.status |= {"exit_code": exit_code, "reason": reason, "finished_at": utc_now_iso()}
        self._write(phase)

    def _write(self, phase: Phase) -> None:
        self.status["phase"] = phase.value
        write_json_atomic(self.dir / STATUS_FILE, self.status)


@contextlib.contextmanager
def _folder_fds(folders: dict[str, Path]) -> Iterator[dict[str, int]]:
    """Each folder opened as a descriptor for bwrap, all closed on the way out."""
    fds: dict[str, int] = {}
    try:
        for name, folder in folders.items():
            fds[name] = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)


def _pump(read_end: int, output: CappedLog) -> None:
    """Copies the job's output from its pipe into output.log until the pipe closes."""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(PUMP_CHUNK):
            output.write(chunk)


def clear_scratch(attempt_dir: Path) -> None:
    """Removes what the job left in its /tmp and /dev/shm once it is gone, as their
    tmpfs once did; /work stays. rmtree never follows the job's symlinks."""
    for name in SCRATCH_DIRS:
        shutil.rmtree(attempt_dir / name, ignore_errors=True)


def _start_problem(argv: list[str], working_dir: str | None, sandboxed: bool) -> str | None:
    if not argv:
        return "the job has no command"
    if working_dir is not None and not sandboxed and not Path(working_dir).is_dir():
        # In a sandbox the folder is looked up inside it; bwrap says if it is missing.
        return f"working directory {working_dir} does not exist"
    return None


def _popen_problem(program: str, error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return f"command not found: {program}"
    return f"cannot run {program}: {error.strerror or error}"


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
    finally:
        # After the end is recorded: a slow removal must not hold the job's GPU slots.
        clear_scratch(attempt_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
