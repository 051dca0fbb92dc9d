"""What a sandboxed local job can fill on the host: its /tmp and /dev/shm are the
attempt's folders on disk (never tmpfs, whose pages are host memory its limits do
not count), every other mount is read-only, its output.log keeps its newest part
under a cap, and the secret files that settings name are covered even under /etc."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from credits.jobs.executors import sandbox
from credits.jobs.executors.base import LaunchRequest, NodeSlice, Observation
from credits.jobs.executors.local import LocalExecutor, LocalSandboxConfig
from credits.jobs.executors.local_output import CappedLog
from credits.jobs.executors.sandbox import JOB_PATH, SandboxPolicy, bwrap_command
from credits.jobs.logtail import cut_marker
from credits.jobs.runtime import _platform_paths
from credits.settings import load_settings

DEADLINE_S = 10.0
MiB = 2**20
# The sandbox's own, on the attempt's folders: never the host's.
SANDBOX_TMP = "/tmp"  # noqa: S108
SANDBOX_SHM = "/dev/shm"  # noqa: S108


def request(job_id: int, code: str, *, memory_mb: int = 1024) -> LaunchRequest:
    return LaunchRequest(
        job_id=job_id,
        attempt=1,
        project_id=1,
        name=f"job-{job_id}",
        image="ignored:latest",
        command=("python3", "-c", code),
        args=(),
        env={},
        working_dir=None,
        flavour="local-gpu",
        node_label_value="local-gpu",
        gpus=1,
        cpu_millicores=1000,
        memory_mb=memory_mb,
        max_runtime_seconds=60,
        placement=(NodeSlice("local", 1),),
    )


def executor_with(tmp_path: Path, config: LocalSandboxConfig) -> LocalExecutor:
    return LocalExecutor(tmp_path / "local", flavour="local-gpu", slots=["0"], sandbox=config)


def attempt_dir(tmp_path: Path, job_id: int) -> Path:
    return tmp_path / "local" / "jobs" / str(job_id) / "attempt-1"


def wait_final(executor: LocalExecutor, job_id: int) -> Observation:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        seen = executor.observe([job_id])[job_id]
        if seen.phase.is_final:
            return seen
        time.sleep(0.05)
    pytest.fail(f"job {job_id} not final in time")


def wait_for_size(path: Path, size: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not (path.exists() and path.stat().st_size >= size):
        if time.monotonic() > deadline:
            pytest.fail(f"{path} never reached {size} bytes")
        time.sleep(0.05)


def wait_gone(path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path} never went")
        time.sleep(0.05)


# Writes more than its memory limit to /tmp and /dev/shm, says which folders they
# are, then waits (for the test to look at the host) until /work/done appears.
FILL = """
import os, time
chunk = b"x" * 2**20
for folder in ("/tmp", "/dev/shm"):
    with open(folder + "/fill", "wb") as handle:
        for _ in range({mib}):
            handle.write(chunk)
    info = os.stat(folder)
    print(folder, info.st_dev, info.st_ino, flush=True)
while not os.path.exists("/work/done"):
    time.sleep(0.02)
"""


def test_a_jobs_tmp_and_shm_are_folders_of_its_attempt_on_disk(tmp_path: Path) -> None:
    executor = executor_with(tmp_path, LocalSandboxConfig())
    folder = attempt_dir(tmp_path, 1)
    executor.launch(request(1, FILL.format(mib=80), memory_mb=64))

    # Past the job's 64 MiB memory limit, on the host's disk, not in its memory.
    wait_for_size(folder / "shm" / "fill", 80 * MiB)
    assert (folder / "tmp" / "fill").stat().st_size == 80 * MiB
    host = {name: (folder / name).stat() for name in ("tmp", "shm")}
    (folder / "work" / "done").touch()
    wait_final(executor, 1)

    seen = {line.split()[0]: line.split()[1:] for line in executor.logs(1).splitlines()}
    for mount, name in ((SANDBOX_TMP, "tmp"), (SANDBOX_SHM, "shm")):
        assert seen[mount] == [str(host[name].st_dev), str(host[name].st_ino)]
    # Emptied once the end is recorded, as a tmpfs would have been.
    wait_gone(folder / "tmp")
    wait_gone(folder / "shm")


WRITE_EVERYWHERE = """
import os
for folder in ("/etc/ssl", "/dev", "/", "/tmp", "/dev/shm", "/work"):
    try:
        with open(os.path.join(folder, "written"), "w") as handle:
            handle.write("x")
        print(folder, "written")
    except OSError as error:
        print(folder, type(error).__name__, error.errno)
"""


def test_a_job_can_write_only_its_own_folders_not_a_hidden_path_or_dev(tmp_path: Path) -> None:
    executor = executor_with(tmp_path, LocalSandboxConfig(hidden_paths=("/etc/ssl",)))
    executor.launch(request(1, WRITE_EVERYWHERE))
    wait_final(executor, 1)

    # EROFS (30) where the sandbox shows an empty mount or its own root.
    assert executor.logs(1).splitlines() == [
        "/etc/ssl OSError 30",
        "/dev OSError 30",
        "/ OSError 30",
        f"{SANDBOX_TMP} written",
        f"{SANDBOX_SHM} written",
        "/work written",
    ]


def test_output_past_the_log_cap_keeps_its_newest_part_behind_a_cut_marker(
    tmp_path: Path,
) -> None:
    executor = executor_with(tmp_path, LocalSandboxConfig(max_log_bytes=256 * 1024))
    code = "for n in range(200_000):\n    print(f'line {n}')\nprint('the end')"
    printed = "".join(f"line {n}\n" for n in range(200_000)) + "the end\n"
    executor.launch(request(1, code))
    wait_final(executor, 1)

    log = (attempt_dir(tmp_path, 1) / "output.log").read_text()
    marker, kept = log.split("\n", 1)
    assert len(log) <= 256 * 1024 + 64 * 1024  # the cap, and one pipe read past it
    assert marker == cut_marker(len(printed) - len(kept))
    assert printed.endswith(kept) and kept.startswith("line ")  # cut where a line starts
    assert executor.logs(1, tail_lines=2) == "line 199999\nthe end\n"


def test_a_capped_log_counts_every_cut_byte_and_never_splits_a_character(
    tmp_path: Path,
) -> None:
    path = tmp_path / "output.log"
    written = b""
    with CappedLog(path, max_bytes=1000) as log:
        for n in range(300):
            # No newlines at all: cuts fall at character boundaries.
            data = f"é{n:03}".encode()
            log.write(data)
            written += data

    marker, kept = path.read_bytes().split(b"\n", 1)
    assert written.endswith(kept) and len(kept) <= 1000
    assert kept.decode()  # strict: the kept part starts on a whole character
    assert marker.decode() == cut_marker(len(written) - len(kept))


@pytest.fixture
def etc() -> Iterator[Path]:
    """A folder to play /etc; not under /tmp, which the job's own /tmp covers."""
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="credits-etc-") as folder:
        yield Path(folder)


def test_secret_files_the_settings_name_are_covered_under_a_system_folder(
    tmp_path: Path, etc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (etc / "credits").mkdir(parents=True)
    key, kubeconfig = etc / "credits" / "transparency.key", etc / "credits" / "kubeconfig"
    key.write_text("signing key")
    kubeconfig.write_text("cluster token")
    settings = load_settings(
        var_dir=tmp_path / "var", transparency_key_file=key, kubernetes_kubeconfig=kubeconfig
    )
    # The temporary folder plays /etc: the sandbox shows it read-only, as it does /etc.
    monkeypatch.setattr(sandbox, "SYSTEM_PATHS", (*sandbox.SYSTEM_PATHS, str(etc)))
    code = f"""
for path in ({str(key)!r}, {str(kubeconfig)!r}, "/etc/hostname"):
    try:
        print(repr(open(path).read()[:6]))
    except OSError as error:
        print(type(error).__name__)
"""

    output = _run_in_sandbox(tmp_path, _platform_paths(settings), ["python3", "-c", code])

    hostname = Path("/etc/hostname").read_text()[:6]
    assert output.splitlines() == ["PermissionError", "PermissionError", repr(hostname)]


def test_a_var_folder_under_a_system_folder_is_covered_with_everything_in_it(
    tmp_path: Path, etc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    var = etc / "credits" / "var"  # as /opt/credits/var is, run from /opt/credits
    (var / "maildir").mkdir(parents=True)
    (var / "transparency.key").write_text("signing key")
    settings = load_settings(var_dir=var, transparency_key_file=var / "transparency.key")
    monkeypatch.setattr(sandbox, "SYSTEM_PATHS", (*sandbox.SYSTEM_PATHS, str(etc)))
    hidden = _platform_paths(settings)
    assert str(var / "maildir") in hidden  # nested in var/, which covers it already

    output = _run_in_sandbox(
        tmp_path, hidden, ["python3", "-c", f"import os; print(os.listdir({str(var)!r}))"]
    )

    assert output.splitlines() == ["[]"]


def _run_in_sandbox(tmp_path: Path, hidden: tuple[str, ...], argv: list[str]) -> str:
    """Runs ``argv`` in this process's sandbox command line (so a patched SYSTEM_PATHS
    counts), as the platform's own user; its output."""
    policy = SandboxPolicy(
        enabled=True,
        network=False,
        memory_bytes=2**30,
        max_processes=64,
        max_open_files=256,
        hidden_paths=hidden,
    )
    folders = [tmp_path / name for name in ("work", "tmp", "shm")]
    fds = []
    for folder in folders:
        folder.mkdir()
        fds.append(os.open(folder, os.O_RDONLY | os.O_DIRECTORY))
    try:
        command = bwrap_command(
            policy,
            argv,
            {"PATH": JOB_PATH},
            work_fd=fds[0],
            tmp_fd=fds[1],
            shm_fd=fds[2],
            working_dir=None,
        )
        done = subprocess.run(
            command, pass_fds=fds, capture_output=True, text=True, timeout=DEADLINE_S, check=False
        )
    finally:
        for fd in fds:
            os.close(fd)
    assert done.returncode == 0, done.stderr
    return done.stdout
