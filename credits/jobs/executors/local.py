"""An executor that runs each job as a sandboxed process on this host.

There is no container image: ``image`` is ignored and the command runs with the
host's programs and libraries, read-only, in a bubblewrap sandbox
(:mod:`credits.jobs.executors.sandbox`) that shows it nothing of the platform.
With ``CREDITS_LOCAL_SANDBOX=off`` it runs as a plain process instead, which
suits only a machine whose every user is trusted.

Everything lives on disk under ``work_dir/jobs/{job_id}/attempt-{n}/``:
``request.json`` (the request, the GPU slots chosen and the sandbox policy),
``runner.json`` (the runner's pid, written by launch), ``status.json``
(written by the runner), ``output.log`` (the command's stdout and stderr,
copied by the runner), ``runner.log`` (the runner's own), ``cancel`` (a
marker), ``stop`` (a platform stop: its grace and reason), ``runner.lock``
(held by a live runner), ``work/``, the job's own folder, and ``tmp/`` and
``shm/``, its ``/tmp`` and ``/dev/shm`` (on disk, emptied by the runner when
the job ends). A checkpointable job also has
``work_dir/jobs/{job_id}/checkpoint/``, kept across its attempts, which it sees
as ``/checkpoint`` (``CREDITS_CHECKPOINT_DIR``); these are the only folders it
can see or write. A
detached runner (:mod:`credits.jobs.executors.local_runner`) supervises each
attempt, so jobs outlive a restart of the server, and a new executor on the
same ``work_dir`` picks up where the old one stopped. Nothing is kept in
memory; which GPU slots are free is read from disk on every launch, under a
lock, so several server processes may share one ``work_dir``.

POSIX only (process groups, flock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from credits.jobs import logtail
from credits.jobs.executors.base import (
    Capacity,
    ExecutorError,
    LaunchRequest,
    NodeCapacity,
    Observation,
    checkpoint_env,
)
from credits.jobs.executors.gpus import discover_gpu_slots
from credits.jobs.executors.local_runner import (
    CANCEL_FILE,
    LOCK_FILE,
    OUTPUT_FILE,
    REQUEST_FILE,
    RUNNER_FILE,
    RUNNER_LOG_FILE,
    SCRATCH_DIRS,
    STATUS_FILE,
    STOP_FILE,
    WORK_DIR,
    lock_is_held,
    private_file,
    read_json,
    utc_now_iso,
    write_json_atomic,
)
from credits.jobs.executors.local_status import observe_attempt
from credits.jobs.executors.sandbox import (
    CHECKPOINT_MOUNT,
    DEFAULT_MAX_LOG_BYTES,
    SETTING_NAME,
    SandboxPolicy,
    WorkFolderUnreachable,
    check_available,
)

__all__ = ["LocalExecutor", "LocalSandboxConfig", "discover_gpu_slots"]

logger = logging.getLogger(__name__)

RUNNER_MODULE = "credits.jobs.executors.local_runner"
# A checkpointable job's folder, beside its attempts: every attempt sees the same one.
CHECKPOINT_DIR = "checkpoint"
# The platform's own environment variables a runner keeps: enough to start Python.
RUNNER_ENV_NAMES = ("PATH", "LANG", "PYTHONPATH")


@dataclasses.dataclass(frozen=True, slots=True)
class LocalSandboxConfig:
    """How every job of a local executor is confined (from the settings)."""

    enabled: bool = True
    # Used only when the platform runs as root: jobs then run as this user.
    job_uid: int = 65534
    job_gid: int = 65534
    max_processes: int = 1024
    max_open_files: int = 4096
    offline_flavours: frozenset[str] = frozenset()
    # Platform paths to cover when a system folder the sandbox shows holds them.
    hidden_paths: tuple[str, ...] = ()
    # The most of a job's output its output.log keeps (the newest part).
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES

    def policy(self, *, flavour: str, memory_mb: int) -> SandboxPolicy:
        as_root = os.geteuid() == 0
        return SandboxPolicy(
            enabled=self.enabled,
            network=flavour not in self.offline_flavours,
            memory_bytes=memory_mb * 2**20,
            max_processes=self.max_processes,
            max_open_files=self.max_open_files,
            uid=self.job_uid if as_root and self.enabled else None,
            gid=self.job_gid if as_root and self.enabled else None,
            hidden_paths=self.hidden_paths,
            max_log_bytes=self.max_log_bytes,
        )


class LocalExecutor:
    """Runs jobs as sandboxed processes on this host, one GPU slot per GPU asked."""

    name = "local"

    def __init__(
        self,
        work_dir: Path,
        *,
        flavour: str,
        slots: Sequence[str],
        node_name: str = "local",
        sandbox: LocalSandboxConfig | None = None,
    ) -> None:
        """Raises SandboxUnavailable when the sandbox is on but cannot run here."""
        if len(set(slots)) != len(slots):
            raise ValueError(f"GPU slots must be distinct; got {list(slots)}")
        work_dir = work_dir.resolve()
        self._jobs_dir = work_dir / "jobs"
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = work_dir / "launch.lock"
        self._flavour = flavour
        self._slots = tuple(slots)
        self._node_name = node_name
        self._sandbox = dataclasses.replace(
            sandbox or LocalSandboxConfig(),
            hidden_paths=(*(sandbox.hidden_paths if sandbox else ()), str(work_dir)),
        )
        if self._sandbox.enabled:
            policy = self._sandbox.policy(flavour=flavour, memory_mb=1024)
            if policy.uid is not None:
                _check_reachable(self._jobs_dir, policy.uid)
            check_available(policy)

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
            policy = self._sandbox.policy(flavour=request.flavour, memory_mb=request.memory_mb)
            _make_attempt_dirs(attempt_dir, policy)
            checkpoint = _make_checkpoint_dir(attempt_dir.parent, request, policy)
            record = _request_record(request, slots, checkpoint, sandboxed=policy.enabled)
            record["sandbox"] = policy.to_record()
            write_json_atomic(attempt_dir / REQUEST_FILE, record)
            if not policy.enabled:
                logger.warning(
                    "job %s runs without a sandbox (%s=off)", request.job_id, SETTING_NAME
                )
            _start_runner(attempt_dir)

    def release(self, job_id: int) -> None:
        """A settled job needs nothing more; its logs and status stay on disk."""
        del job_id

    def cancel(self, job_id: int) -> None:
        """Marks every attempt cancelled and wakes its runner; unknown jobs are a no-op."""
        self._stop_attempts(job_id, before=None)

    def stop(self, job_id: int, grace_seconds: int, reason: str) -> None:
        """Writes a ``stop`` file (the grace and the reason) into each live attempt and
        wakes its runner: SIGTERM to the job's processes, the grace, then SIGKILL; the
        attempt ends PREEMPTED with the reason. Unknown or finished jobs are a no-op; a
        repeat, or a stop of an attempt being cancelled, changes nothing."""
        record = {"grace_s": max(0, grace_seconds), "reason": reason, "at": utc_now_iso()}
        for attempt_dir in self._attempt_dirs(job_id):
            if observe_attempt(attempt_dir).phase.is_final:
                continue
            if (attempt_dir / STOP_FILE).exists() or (attempt_dir / CANCEL_FILE).exists():
                continue
            write_json_atomic(attempt_dir / STOP_FILE, record)
            _signal_runner(attempt_dir)

    def observe(self, job_ids: Collection[int]) -> dict[int, Observation]:
        observations: dict[int, Observation] = {}
        for job_id in job_ids:
            attempts = self._attempt_dirs(job_id)
            if attempts:
                observations[job_id] = observe_attempt(attempts[-1])
        return observations

    def logs(self, job_id: int, *, tail_lines: int = 200) -> str:
        attempts = self._attempt_dirs(job_id)
        if not attempts:
            return ""
        return logtail.tail_lines(attempts[-1] / OUTPUT_FILE, tail_lines)

    def log_stream(self, job_id: int) -> Iterator[bytes]:
        attempts = self._attempt_dirs(job_id)
        if not attempts:
            return iter(())
        return logtail.iter_file_chunks(attempts[-1] / OUTPUT_FILE)

    def capacity(self) -> Capacity:
        return Capacity(nodes=(NodeCapacity(self._node_name, self._flavour, len(self._slots)),))

    def isolation(self, job_id: int) -> str | None:
        """How the job's latest attempt is confined, for its page; None before launch."""
        attempts = self._attempt_dirs(job_id)
        record = read_json(attempts[-1] / REQUEST_FILE) if attempts else None
        if record is None or "sandbox" not in record:
            return None
        return SandboxPolicy.from_record(record["sandbox"]).summary()

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
                if observe_attempt(attempt_dir).phase.is_final:
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
                if observe_attempt(attempt_dir).phase.is_final:
                    continue
                record = read_json(attempt_dir / REQUEST_FILE) or {}
                stopping = any((attempt_dir / name).exists() for name in (CANCEL_FILE, STOP_FILE))
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
            if observe_attempt(attempt_dir).phase.is_final:
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


def _request_record(
    request: LaunchRequest, slots: list[str], checkpoint: Path | None, *, sandboxed: bool
) -> dict[str, Any]:
    """What the runner reads; the image is recorded but ignored (no containers here).

    A checkpointable job is told its checkpoint folder as it sees it: ``/checkpoint``
    in the sandbox, the host path without one."""
    seen_as = CHECKPOINT_MOUNT if sandboxed else str(checkpoint)
    env = dict(request.env) | (checkpoint_env(request, seen_as) if checkpoint else {})
    return {
        "job_id": request.job_id,
        "attempt": request.attempt,
        "project_id": request.project_id,
        "name": request.name,
        "image": request.image,
        "command": list(request.command),
        "args": list(request.args),
        "env": env,
        "checkpoint_dir": None if checkpoint is None else str(checkpoint),
        "working_dir": request.working_dir,
        "max_runtime_seconds": request.max_runtime_seconds,
        "labels": dict(request.labels),
        "slots": slots,
    }


def _check_reachable(jobs_dir: Path, uid: int) -> None:
    """bwrap, started as the job's user, finds the work folder by its path: every
    folder above it must let that user pass (``o+x``)."""
    for folder in (jobs_dir, *jobs_dir.parents):
        mode = folder.stat()
        if not (mode.st_mode & stat.S_IXOTH or mode.st_uid == uid):
            raise WorkFolderUnreachable(
                f"local jobs run as uid {uid}, which cannot pass through {folder} to "
                f"their work folders: allow it with chmod o+x {folder}, or move "
                f"CREDITS_VAR_DIR"
            )


def _make_attempt_dirs(attempt_dir: Path, policy: SandboxPolicy) -> None:
    """The attempt's folder, the job's own work folder and the folders behind its
    /tmp and /dev/shm.

    Others may pass through the attempt's folder (the job's user must, to reach
    its folders) but not list it, and its files are the platform's alone.
    """
    attempt_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    attempt_dir.mkdir(exist_ok=True, mode=0o711)
    for name in (WORK_DIR, *SCRATCH_DIRS):
        folder = attempt_dir / name
        folder.mkdir(exist_ok=True, mode=0o700)
        if policy.uid is not None:
            os.chown(folder, policy.uid, policy.gid if policy.gid is not None else -1)


def _make_checkpoint_dir(
    job_dir: Path, request: LaunchRequest, policy: SandboxPolicy
) -> Path | None:
    """The job's checkpoint folder (made once, kept for every attempt and after the
    job: its owner may want the last checkpoint); None when it is not checkpointable.
    Private to the job's user like its work folder."""
    if not request.checkpointable:
        return None
    folder = job_dir / CHECKPOINT_DIR
    folder.mkdir(exist_ok=True, mode=0o700)
    if policy.uid is not None:
        os.chown(folder, policy.uid, policy.gid if policy.gid is not None else -1)
    return folder


def _start_runner(attempt_dir: Path) -> None:
    """Starts the runner in a session of its own, so it outlives this process.

    The runner gets none of the platform's settings (its key, its database URL):
    it needs only the attempt folder.
    """
    environment = {name: os.environ[name] for name in RUNNER_ENV_NAMES if name in os.environ}
    try:
        with private_file(attempt_dir / RUNNER_LOG_FILE) as log:
            runner = subprocess.Popen(  # noqa: S603 - our own module, with our own Python
                [sys.executable, "-m", RUNNER_MODULE, str(attempt_dir)],
                cwd=attempt_dir,
                env=environment,
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
