"""Runs one attempt of a local job: ``python -m credits.jobs.executors.local_runner DIR``.

The local executor starts this in its own session, so a job outlives the web
server that launched it. The runner owns its attempt directory: it holds
``runner.lock`` for as long as it lives (an executor that finds the lock free
knows the runner is gone), runs the command in the sandbox of
:mod:`credits.jobs.executors.sandbox` (or, with the sandbox off, in a process
group of its own), enforces the max runtime, honours cancellation (SIGTERM,
or a ``cancel`` file for a signal that came too early) and writes
``status.json`` when the command starts and when it ends.

The runner is the only source of truth for the attempt: the job writes only
its ``work/`` folder (the one part of the attempt its sandbox sees) and its
output reaches ``output.log`` through a pipe the runner copies from. The
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
import select
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

from credits.jobs.executors.base import Phase
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
OUTPUT_FILE = "output.log"
RUNNER_LOG_FILE = "runner.log"
# The job's own writable folder: the only part of the attempt its sandbox sees.
WORK_DIR = "work"
# How long a stopped job may take to exit after SIGTERM before it gets SIGKILL.
STOP_GRACE_S = 5.0
POLL_S = 0.1
PUMP_CHUNK = 64 * 1024
# After the job is gone, how long its output pipe may take to drain.
PUMP_DRAIN_S = 5.0
# How long bwrap may take to report its sandbox's PID 1.
INFO_WAIT_S = 10.0
# An executor probing runner.lock holds it for microseconds; a starting runner
# waits this long before deciding another runner owns the attempt.
CLAIM_WAIT_S = 2.0


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


def private_file(path: Path) -> BinaryIO:
    """``path`` opened for appending, created readable by its owner alone: the
    attempt's folder lets others pass through, and requests hold the job's env."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")


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


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


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
        if self._cancelled():
            self.finish(Phase.CANCELLED, None, "cancelled")
            return
        if not self.policy.enabled:
            sys.stderr.write(
                f"warning: job {self.request['job_id']} runs without a sandbox "
                f"({SETTING_NAME}=off): it can read and change everything this user can\n"
            )
        with private_file(self.dir / OUTPUT_FILE) as output:
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

    def _cancelled(self) -> bool:
        return self.cancel_requested or (self.dir / CANCEL_FILE).exists()

    def _start(self, output: BinaryIO) -> tuple[_JobProcess, threading.Thread] | None:
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
            "child_start_ticks": _start_ticks(job.child.pid),
            "started_at": utc_now_iso(),
        }
        self._write(Phase.RUNNING)
        return job, pump

    def _spawn(self, argv: list[str], output: BinaryIO) -> tuple[_JobProcess, threading.Thread]:
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

    def _spawn_sandboxed(self, argv: list[str], output_fd: int) -> _JobProcess:
        env = job_environment(self.request["env"], self.request["slots"], WORK_MOUNT)
        work_fd = os.open(self.dir / WORK_DIR, os.O_RDONLY | os.O_DIRECTORY)
        info_read, info_write = os.pipe()
        try:
            command = bwrap_command(
                self.policy,
                argv,
                env,
                work_fd=work_fd,
                info_fd=info_write,
                working_dir=self.request["working_dir"],
            )
            child = subprocess.Popen(  # noqa: S603 - running the job's command is the point
                command,
                stdin=subprocess.DEVNULL,
                stdout=output_fd,
                stderr=output_fd,
                start_new_session=True,
                pass_fds=(work_fd, info_write),
                env={"PATH": os.environ.get("PATH", JOB_PATH)},
                **drops_to(self.policy),
            )
        except OSError:
            os.close(info_read)
            raise
        finally:
            os.close(work_fd)
            os.close(info_write)
        return _JobProcess(child, _read_sandbox_init(info_read))

    def _spawn_plain(self, argv: list[str], output_fd: int) -> _JobProcess:
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
        return _JobProcess(child, None)

    def _supervise(self, job: _JobProcess) -> tuple[Phase, int | None, str | None]:
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
            if self._cancelled():
                job.stop()
                return Phase.CANCELLED, None, "cancelled"
            if time.monotonic() >= deadline:
                job.stop()
                return Phase.TIMED_OUT, None, f"max runtime {max_runtime} s reached"

    def finish(self, phase: Phase, exit_code: int | None, reason: str | None) -> None:
        self.status |= {"exit_code": exit_code, "reason": reason, "finished_at": utc_now_iso()}
        self._write(phase)

    def _write(self, phase: Phase) -> None:
        self.status["phase"] = phase.value
        write_json_atomic(self.dir / STATUS_FILE, self.status)


def _pump(read_end: int, output: BinaryIO) -> None:
    """Copies the job's output from its pipe into output.log until the pipe closes."""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(PUMP_CHUNK):
            output.write(chunk)
            output.flush()


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, it names
    one process for good, even after the pid is reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return int(fields[19])


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether the process exists, is not a zombie and (if given) started when recorded."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    if fields[0] in {"Z", "X"}:
        return False
    return start_ticks is None or int(fields[19]) == start_ticks


def _descendants(root: int) -> list[int]:
    """Every live process below ``root``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def _signal_pids(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


class _JobProcess:
    """The job's processes: bwrap and its sandbox, or a plain process group."""

    def __init__(self, child: subprocess.Popen[bytes], sandbox_init: int | None) -> None:
        self.child = child
        self.sandboxed = sandbox_init is not None
        # The sandbox's PID 1 (bwrap's reaper): every job process is below it, and
        # once it is gone the kernel has killed them all.
        self.init_pid = sandbox_init
        self.init_ticks = None if sandbox_init is None else _start_ticks(sandbox_init)

    def terminate(self) -> None:
        """SIGTERM to the job's processes, so they may save their work.

        In a sandbox, not to bwrap itself: it dies of SIGTERM at once and takes
        the sandbox with it, leaving the job no grace.
        """
        if self.init_pid is not None:
            _signal_pids(_descendants(self.init_pid), signal.SIGTERM)
        else:
            _signal_group(self.child.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL; a sandbox's PID 1 takes every process of its namespace with it."""
        if self.init_pid is not None and self._init_alive():
            _signal_pids([self.init_pid], signal.SIGKILL)
        _signal_group(self.child.pid, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.wait(timeout=STOP_GRACE_S)
        self.kill()
        self.child.wait()

    def wait_until_gone(self) -> None:
        """Returns once no process of the job is left, so its GPU slot is really free.

        An unsandboxed job that left its process group escapes this: one reason
        the sandbox exists.
        """
        while self._any_left():
            self.kill()
            time.sleep(POLL_S)

    def _any_left(self) -> bool:
        if self.sandboxed:
            return self._init_alive()
        try:
            os.killpg(self.child.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _init_alive(self) -> bool:
        return self.init_pid is not None and process_alive(self.init_pid, self.init_ticks)


def _read_sandbox_init(info_read: int) -> int | None:
    """The host pid of the sandbox's PID 1, from bwrap's ``--info-fd`` JSON; None
    when bwrap ended before writing it."""
    data = b""
    with os.fdopen(info_read, "rb", buffering=0) as info:
        while select.select([info], [], [], INFO_WAIT_S)[0] and (chunk := info.read(4096)):
            data += chunk
            try:
                pid = json.loads(data).get("child-pid")
            except ValueError:
                continue  # not the whole document yet
            return int(pid) if isinstance(pid, int) else None
    return None


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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
