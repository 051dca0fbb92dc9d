"""The processes of one local job, as its runner sees them: pure process handling.

A sandboxed job is bwrap and the sandbox's PID 1 (bwrap's reaper, every job
process below it); an unsandboxed one is a process group of its own. Stopping
it is SIGTERM to its processes (not to bwrap, which would take the sandbox down
at once and leave no grace), the grace, then SIGKILL. Split from
:mod:`credits.jobs.executors.local_runner`; only the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

POLL_S = 0.1
# How long bwrap may take to report its sandbox's PID 1.
INFO_WAIT_S = 10.0


def signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def start_ticks(pid: int) -> int | None:
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


class JobProcess:
    """The job's processes: bwrap and its sandbox, or a plain process group."""

    def __init__(self, child: subprocess.Popen[bytes], sandbox_init: int | None) -> None:
        self.child = child
        self.sandboxed = sandbox_init is not None
        # The sandbox's PID 1 (bwrap's reaper): every job process is below it, and
        # once it is gone the kernel has killed them all.
        self.init_pid = sandbox_init
        self.init_ticks = None if sandbox_init is None else start_ticks(sandbox_init)

    def terminate(self) -> None:
        """SIGTERM to the job's processes, so they may save their work.

        In a sandbox, not to bwrap itself: it dies of SIGTERM at once and takes
        the sandbox with it, leaving the job no grace.
        """
        if self.init_pid is not None:
            _signal_pids(_descendants(self.init_pid), signal.SIGTERM)
        else:
            signal_group(self.child.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL; a sandbox's PID 1 takes every process of its namespace with it."""
        if self.init_pid is not None and self._init_alive():
            _signal_pids([self.init_pid], signal.SIGKILL)
        signal_group(self.child.pid, signal.SIGKILL)

    def stop(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.wait(timeout=grace_s)
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


def read_sandbox_init(info_read: int) -> int | None:
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
