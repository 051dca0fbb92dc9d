"""How a local job's process is confined: the command line that runs it.

With bubblewrap (``bwrap``) a job sees a read-only system (``/usr``, ``/etc``,
``/opt`` and the ``/bin``, ``/lib`` links), its own writable work folder at
``/work`` (and, when checkpointable, its job's checkpoint folder at
``/checkpoint``, kept across attempts), a private ``/tmp`` and ``/dev/shm``
(folders of the attempt on disk, not tmpfs: a tmpfs's pages are host memory
that no ``RLIMIT_DATA`` counts), and the GPU device nodes. The platform's
``var/``, database, key, storage and every other job's folder are not mounted
at all; a platform path under a system folder is covered by a read-only empty
mount. Everything else (the root, ``/dev``) is read-only. It gets its own PID,
IPC, UTS and user namespaces (it cannot see or signal its runner or the
server), no capabilities, no new privileges, no nested user namespaces, and no
network when its flavour is offline. ``prlimit`` inside the sandbox caps its
memory (``RLIMIT_DATA``), processes and open files; the process count is per
sandbox because each sandbox has a user namespace of its own.

When the platform runs as root, the sandbox is started as an unprivileged user
(``nobody`` by default), so a job is never root on the host.

Only the standard library is imported: the runner uses this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BWRAP = "bwrap"
PRLIMIT = "prlimit"
WORK_MOUNT = "/work"
# A checkpointable job's folder that outlives its attempts (CREDITS_CHECKPOINT_DIR).
CHECKPOINT_MOUNT = "/checkpoint"
# The sandbox's own, backed by the attempt's tmp/ and shm/ folders.
TMP_MOUNT = "/tmp"  # noqa: S108
SHM_MOUNT = "/dev/shm"  # noqa: S108
# The most of a job's output its output.log keeps (CREDITS_LOCAL_JOB_MAX_LOG_MB).
DEFAULT_MAX_LOG_BYTES = 2**30
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"
SYSTEM_PATHS = ("/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SETTING_NAME = "CREDITS_LOCAL_SANDBOX"


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot confine jobs on this host; the message is one line."""


class WorkFolderUnreachable(SandboxUnavailable):
    """The job's user cannot reach the work folders; the message says what to do."""


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """What confines one job: recorded in its request, applied by its runner."""

    enabled: bool
    network: bool
    memory_bytes: int
    max_processes: int
    max_open_files: int
    # The user and group the job runs as; None keeps the platform's own (not root).
    uid: int | None = None
    gid: int | None = None
    # Platform paths that must not be visible even when under a system folder.
    hidden_paths: tuple[str, ...] = field(default_factory=tuple)
    # Past this, the runner cuts the oldest half of output.log (the tail stays).
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SandboxPolicy:
        return cls(
            enabled=bool(record["enabled"]),
            network=bool(record["network"]),
            memory_bytes=int(record["memory_bytes"]),
            max_processes=int(record["max_processes"]),
            max_open_files=int(record["max_open_files"]),
            uid=None if record.get("uid") is None else int(record["uid"]),
            gid=None if record.get("gid") is None else int(record["gid"]),
            hidden_paths=tuple(str(path) for path in record.get("hidden_paths", ())),
            # Requests written before the cap existed get the default.
            max_log_bytes=int(record.get("max_log_bytes", DEFAULT_MAX_LOG_BYTES)),
        )

    def summary(self) -> str:
        """One line for the job page: how the job is confined."""
        limits = (
            f"memory {self.memory_bytes // 2**20} MiB, {self.max_processes} processes, "
            f"{self.max_open_files} open files"
        )
        if not self.enabled:
            return f"no sandbox ({SETTING_NAME}=off); {limits}"
        network = "network on" if self.network else "no network"
        return f"bubblewrap sandbox, {network}; {limits}"


def job_environment(job_env: Mapping[str, str], slots: Sequence[str], home: str) -> dict[str, str]:
    """The job's whole environment: never anything of the platform's."""
    base = {
        "PATH": JOB_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        # Python jobs' output reaches the log as it is printed, unless the job says otherwise.
        "PYTHONUNBUFFERED": "1",
    }
    # The platform's name wins: a job may not pick GPUs it was not given.
    return base | dict(job_env) | {"CUDA_VISIBLE_DEVICES": ",".join(slots)}


def limits_prefix(policy: SandboxPolicy) -> list[str]:
    """``prlimit`` with the policy's limits, soft and hard, before the job's argv."""
    return [
        PRLIMIT,
        f"--data={policy.memory_bytes}",
        f"--nproc={policy.max_processes}",
        f"--nofile={policy.max_open_files}",
        "--core=0",
        "--",
    ]


def bwrap_command(
    policy: SandboxPolicy,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    work_fd: int,
    tmp_fd: int,
    shm_fd: int,
    working_dir: str | None,
    info_fd: int | None = None,
    checkpoint_fd: int | None = None,
) -> list[str]:
    """bwrap's argv. The work folder, the folders behind ``/tmp`` and ``/dev/shm``
    (and a checkpointable job's checkpoint folder) come as open descriptors (passed
    to bwrap with ``pass_fds``): bwrap, as the unprivileged user, could not reach
    them by their paths under ``var/``."""
    command = [
        BWRAP,
        "--unshare-all",
        "--unshare-user",
        *(["--share-net"] if policy.network else []),
        "--die-with-parent",
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--hostname",
        "credits-job",
        "--clearenv",
        *(["--info-fd", str(info_fd)] if info_fd is not None else []),
    ]
    for name, value in env.items():
        command += ["--setenv", name, value]
    command += _system_mounts()
    command += ["--proc", "/proc", "--dev", "/dev"]
    command += _gpu_devices()
    command += _hidden(policy.hidden_paths)
    if checkpoint_fd is not None:
        command += ["--bind-fd", str(checkpoint_fd), CHECKPOINT_MOUNT]
    command += ["--bind-fd", str(work_fd), WORK_MOUNT, "--chdir", working_dir or WORK_MOUNT]
    # The sandbox's own empty /tmp and /dev/shm, not the host's, and on disk: a tmpfs
    # would hold what the job writes in host memory, uncounted by its limits.
    command += ["--bind-fd", str(tmp_fd), TMP_MOUNT, "--bind-fd", str(shm_fd), SHM_MOUNT]
    # The root and /dev are tmpfs mounts the job owns (remounts are not recursive);
    # read-only, the job can write only /work, /tmp, /dev/shm (and /checkpoint).
    command += ["--remount-ro", "/dev", "--remount-ro", "/"]
    return [*command, "--", *limits_prefix(policy), *argv]


def _system_mounts() -> list[str]:
    mounts: list[str] = []
    for name in SYSTEM_PATHS:
        path = Path(name)
        if path.is_symlink():
            mounts += ["--symlink", str(path.readlink()), name]
        elif path.is_dir():
            mounts += ["--ro-bind", name, name]
    return mounts


def _gpu_devices() -> list[str]:
    """NVIDIA device nodes (CUDA_VISIBLE_DEVICES picks among them) and the /sys
    that NVML and CUDA read; nothing on a host without them."""
    devices = sorted(str(path) for path in Path("/dev").glob("nvidia*") if not path.is_dir())
    if not devices:
        return []
    mounts = ["--ro-bind", "/sys", "/sys"]
    for device in devices:
        mounts += ["--dev-bind", device, device]
    return mounts


def _hidden(paths: Sequence[str]) -> list[str]:
    """Covers platform paths that a system mount would otherwise show, read-only:
    a writable tmpfs there would be host memory the job could fill."""
    mounts: list[str] = []
    for path in paths:
        if not _under(path, SYSTEM_PATHS):
            continue  # not mounted in the sandbox at all
        if _under(path, [other for other in paths if other != path and Path(other).is_dir()]):
            # Already covered by an empty folder above it (var/maildir under var/),
            # where no mount point could be made once that folder is read-only.
            continue
        if Path(path).is_dir():
            mounts += ["--tmpfs", path, "--remount-ro", path]
        elif Path(path).exists():
            mounts += ["--ro-bind", "/dev/null", path]
    return mounts


def _under(path: str, folders: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``folders`` or lies below one."""
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def drops_to(policy: SandboxPolicy) -> dict[str, Any]:
    """``subprocess.Popen`` arguments that start the job as the policy's user."""
    if policy.uid is None:
        return {}
    return {"user": policy.uid, "group": policy.gid, "extra_groups": []}


def check_available(policy: SandboxPolicy) -> None:
    """Runs ``true`` in a sandbox as jobs will run; SandboxUnavailable when it fails."""
    for program in (BWRAP, PRLIMIT):
        if shutil.which(program) is None:
            raise SandboxUnavailable(f"{program} is not installed")
    with tempfile.TemporaryDirectory(prefix="credits-sandbox-probe-") as probe_dir:
        work = Path(probe_dir)
        if policy.uid is not None:
            os.chown(work, policy.uid, policy.gid if policy.gid is not None else -1)
        fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        # One folder stands in for /work, /tmp and /dev/shm (the probe writes nothing),
        # under three descriptors: bwrap closes each one it binds.
        fds = (fd, os.dup(fd), os.dup(fd))
        argv = bwrap_command(
            policy,
            ["true"],
            {"PATH": JOB_PATH},
            work_fd=fds[0],
            tmp_fd=fds[1],
            shm_fd=fds[2],
            working_dir=None,
        )
        try:
            result = subprocess.run(  # noqa: S603 - our own fixed command line
                argv,
                pass_fds=fds,
                capture_output=True,
                timeout=30,
                check=False,
                env={"PATH": os.environ.get("PATH", JOB_PATH)},
                **drops_to(policy),
            )
        finally:
            for each in fds:
                os.close(each)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise SandboxUnavailable(lines[-1] if lines else f"bwrap exited {result.returncode}")
