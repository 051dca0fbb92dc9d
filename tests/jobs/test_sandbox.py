"""The local executor's sandbox: limits, network, hidden paths, the refusal to
start without bubblewrap and the warning when the sandbox is off."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from credits.cli import main
from credits.jobs.executors.base import LaunchRequest, NodeSlice, Observation, Phase
from credits.jobs.executors.local import LocalExecutor, LocalSandboxConfig
from credits.jobs.executors.sandbox import SandboxPolicy, bwrap_command
from credits.jobs.runtime import make_executor
from credits.settings import SettingsError, load_settings

DEADLINE_S = 15.0


def request(
    job_id: int,
    code: str,
    *,
    flavour: str = "local-gpu",
    memory_mb: int = 1024,
    working_dir: str | None = None,
) -> LaunchRequest:
    return LaunchRequest(
        job_id=job_id,
        attempt=1,
        project_id=1,
        name=f"job-{job_id}",
        image="ignored:latest",
        command=("python3", "-c", code),
        args=(),
        env={},
        working_dir=working_dir,
        flavour=flavour,
        node_label_value=flavour,
        gpus=1,
        cpu_millicores=1000,
        memory_mb=memory_mb,
        max_runtime_seconds=60,
        placement=(NodeSlice("local", 1),),
    )


def run(executor: LocalExecutor, launch: LaunchRequest) -> tuple[Observation, str]:
    executor.launch(launch)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        seen = executor.observe([launch.job_id])[launch.job_id]
        if seen.phase.is_final:
            return seen, executor.logs(launch.job_id)
        time.sleep(0.05)
    pytest.fail(f"job {launch.job_id} not final in time")


def executor_with(tmp_path: Path, config: LocalSandboxConfig) -> LocalExecutor:
    return LocalExecutor(tmp_path / "local", flavour="local-gpu", slots=["0"], sandbox=config)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on the host's loopback that accepts connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


CONNECT = """
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    print("reached")
except OSError as error:
    print("unreachable", type(error).__name__)
"""


def test_jobs_reach_the_network_unless_their_flavour_is_offline(
    tmp_path: Path, listener: int
) -> None:
    online = executor_with(tmp_path / "on", LocalSandboxConfig())
    offline = executor_with(
        tmp_path / "off", LocalSandboxConfig(offline_flavours=frozenset({"local-gpu"}))
    )

    assert run(online, request(1, CONNECT.format(port=listener)))[1] == "reached\n"
    assert run(offline, request(1, CONNECT.format(port=listener)))[1].startswith("unreachable")
    assert offline.isolation(1) == (
        "bubblewrap sandbox, no network; memory 1024 MiB, 1024 processes, 4096 open files"
    )


def test_a_job_gets_its_memory_process_and_open_file_limits(tmp_path: Path) -> None:
    executor = executor_with(tmp_path, LocalSandboxConfig(max_processes=64, max_open_files=256))
    code = (
        "import resource as r\n"
        "print([r.getrlimit(k) for k in (r.RLIMIT_DATA, r.RLIMIT_NPROC, r.RLIMIT_NOFILE)])\n"
        "try:\n    bytearray(400 * 2**20)\nexcept MemoryError:\n    print('refused')\n"
    )

    seen, output = run(executor, request(1, code, memory_mb=128))

    limits = [(128 * 2**20,) * 2, (64, 64), (256, 256)]
    assert (seen.phase, output) == (Phase.SUCCEEDED, f"{limits}\nrefused\n")
    assert executor.isolation(1) == (
        "bubblewrap sandbox, network on; memory 128 MiB, 64 processes, 256 open files"
    )


def test_a_platform_path_under_a_system_folder_is_covered(tmp_path: Path) -> None:
    hidden_file, hidden_folder = "/etc/hostname", "/etc/ssl"
    assert Path(hidden_file).read_text().strip() and list(Path(hidden_folder).iterdir())
    executor = executor_with(
        tmp_path, LocalSandboxConfig(hidden_paths=(hidden_file, hidden_folder))
    )
    code = (
        "import os\n"
        f"try:\n    print(repr(open({hidden_file!r}).read()))\n"
        "except OSError as error:\n    print(type(error).__name__)\n"
        f"print(os.listdir({hidden_folder!r}))"
    )

    assert run(executor, request(1, code))[1] == "PermissionError\n[]\n"


def test_a_missing_working_directory_fails_the_job_with_the_reason_in_its_log(
    tmp_path: Path,
) -> None:
    executor = executor_with(tmp_path, LocalSandboxConfig())

    seen, output = run(executor, request(1, "print('never')", working_dir="/no/such/folder"))

    assert seen.phase is Phase.FAILED
    assert "/no/such/folder" in output and "never" not in output


def test_bwrap_command_shares_no_platform_path_and_runs_the_job_under_its_limits() -> None:
    policy = SandboxPolicy(
        enabled=True,
        network=False,
        memory_bytes=2**30,
        max_processes=100,
        max_open_files=200,
        hidden_paths=("/srv/credits/var",),
    )

    command = bwrap_command(
        policy, ["train.py"], {"A": "1"}, work_fd=7, tmp_fd=8, shm_fd=9, working_dir=None
    )

    assert "--share-net" not in command
    assert "/srv/credits/var" not in command  # not under a mounted system folder
    assert command[command.index("--bind-fd") : command.index("--bind-fd") + 3] == [
        "--bind-fd",
        "7",
        "/work",
    ]
    assert command[command.index("--") :] == [
        "--",
        "prlimit",
        f"--data={2**30}",
        "--nproc=100",
        "--nofile=200",
        "--core=0",
        "--",
        "train.py",
    ]


def test_the_local_executor_refuses_to_start_where_bwrap_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(SettingsError) as refused:
        make_executor(load_settings())
    result = CliRunner().invoke(main, ["jobs", "reconcile"])

    assert "bwrap is not installed" in str(refused.value)
    assert "CREDITS_LOCAL_SANDBOX=off" in str(refused.value)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "CREDITS_LOCAL_SANDBOX=off" in result.output


def test_with_the_sandbox_off_a_job_runs_and_every_start_logs_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CREDITS_LOCAL_SANDBOX", "off")
    monkeypatch.setenv("CREDITS_LOCAL_GPU_SLOTS", "1")
    executor = make_executor(load_settings())
    assert isinstance(executor, LocalExecutor)

    with caplog.at_level(logging.WARNING, logger="credits.jobs.executors.local"):
        first = run(executor, request(1, "print('plain')"))
        second = run(executor, request(2, "print('again')"))

    assert (first[0].phase, first[1], second[1]) == (Phase.SUCCEEDED, "plain\n", "again\n")
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == [
        "job 1 runs without a sandbox (CREDITS_LOCAL_SANDBOX=off)",
        "job 2 runs without a sandbox (CREDITS_LOCAL_SANDBOX=off)",
    ]
    assert executor.isolation(1) == (
        "no sandbox (CREDITS_LOCAL_SANDBOX=off); memory 1024 MiB, 1024 processes, 4096 open files"
    )
