"""The local executor: real runner processes running short Python commands in
the bubblewrap sandbox (the host's ``python3``, not this virtualenv's, which the
sandbox does not show)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from credits.jobs.executors import local_status
from credits.jobs.executors.base import (
    Executor,
    ExecutorError,
    LaunchRequest,
    NodeSlice,
    Observation,
    Phase,
)
from credits.jobs.executors.local import LocalExecutor, LocalSandboxConfig, discover_gpu_slots

DEADLINE_S = 10.0
SANDBOX_TMP = "/tmp"  # noqa: S108 - the sandbox's own, private tmpfs


def request(
    job_id: int,
    code: str = "pass",
    *,
    attempt: int = 1,
    gpus: int = 1,
    max_runtime: int = 60,
    command: tuple[str, ...] | None = None,
    env: Mapping[str, str] | None = None,
    working_dir: str | None = None,
    node: str = "local",
    checkpointable: bool = False,
) -> LaunchRequest:
    return LaunchRequest(
        job_id=job_id,
        attempt=attempt,
        project_id=1,
        name=f"job-{job_id}",
        image="ignored:latest",
        command=command or ("python3", "-c"),
        args=() if command else (code,),
        env=env or {},
        working_dir=working_dir,
        flavour="local-gpu",
        node_label_value="local-gpu",
        gpus=gpus,
        cpu_millicores=1000,
        memory_mb=1024,
        max_runtime_seconds=max_runtime,
        placement=(NodeSlice(node, gpus),),
        checkpointable=checkpointable,
        checkpoint_grace_seconds=30 if checkpointable else 0,
    )


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path / "local"


@pytest.fixture
def executor(work_dir: Path) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(work_dir, flavour="local-gpu", slots=["0", "1"])
    yield executor
    # A failed test must not leave its sleeping jobs behind.
    for job_dir in (work_dir / "jobs").iterdir():
        executor.cancel(int(job_dir.name))


def wait_for(
    executor: LocalExecutor, job_id: int, *, final: bool = True, phase: Phase | None = None
) -> Observation:
    """Polls until the job is final (or in ``phase``); fails after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        seen = executor.observe([job_id]).get(job_id)
        if seen is not None and (seen.phase is phase or (phase is None and seen.phase.is_final)):
            return seen
        time.sleep(0.05)
    pytest.fail(f"job {job_id} not {phase or 'final'} in time: {executor.observe([job_id])}")


def status_of(work_dir: Path, job_id: int, attempt: int = 1) -> dict[str, object]:
    path = work_dir / "jobs" / str(job_id) / f"attempt-{attempt}" / "status.json"
    data: dict[str, object] = json.loads(path.read_text())
    return data


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"


def test_local_executor_meets_the_executor_protocol(executor: LocalExecutor) -> None:
    assert isinstance(executor, Executor)
    nodes = executor.capacity().nodes
    assert [(node.name, node.flavour, node.gpus) for node in nodes] == [("local", "local-gpu", 2)]


def test_successful_job_succeeds_and_its_output_is_readable(executor: LocalExecutor) -> None:
    code = "import sys; print('hello'); print('oops', file=sys.stderr)"
    executor.launch(request(1, code))

    seen = wait_for(executor, 1)

    assert (seen.phase, seen.exit_code, seen.attempt) == (Phase.SUCCEEDED, 0, 1)
    assert seen.started_at is not None and seen.started_at.utcoffset() is not None
    assert seen.finished_at is not None and seen.finished_at >= seen.started_at
    assert executor.logs(1).splitlines() == ["hello", "oops"]
    assert executor.logs(1, tail_lines=1) == "oops\n"
    assert executor.logs(99) == ""


def test_job_with_non_zero_exit_fails_with_its_code(executor: LocalExecutor) -> None:
    executor.launch(request(1, "raise SystemExit(3)"))

    seen = wait_for(executor, 1)

    assert (seen.phase, seen.exit_code, seen.reason) == (Phase.FAILED, 3, "exit code 3")


def test_job_over_its_max_runtime_is_timed_out(executor: LocalExecutor) -> None:
    executor.launch(request(1, "import time; time.sleep(30)", max_runtime=1))

    seen = wait_for(executor, 1)

    assert (seen.phase, seen.reason) == (Phase.TIMED_OUT, "max runtime 1 s reached")
    assert seen.started_at is not None and seen.finished_at is not None
    assert 1 <= (seen.finished_at - seen.started_at).total_seconds() < 5


def test_cancel_stops_a_running_job_and_its_process(
    executor: LocalExecutor, work_dir: Path
) -> None:
    executor.launch(request(1, "import time; time.sleep(30)"))
    wait_for(executor, 1, phase=Phase.RUNNING)
    child_pid = status_of(work_dir, 1)["child_pid"]
    assert isinstance(child_pid, int)

    executor.cancel(1)
    seen = wait_for(executor, 1)
    executor.cancel(1)
    executor.cancel(404)

    assert (seen.phase, seen.reason) == (Phase.CANCELLED, "cancelled")
    assert not process_exists(child_pid)


# Saves its step to CREDITS_CHECKPOINT_DIR on SIGTERM and exits; resumes from it.
CHECKPOINTING_JOB = """
import os, pathlib, signal, sys, time
folder = pathlib.Path(os.environ["CREDITS_CHECKPOINT_DIR"])
saved = folder / "step"
print("resumed from", saved.read_text() if saved.exists() else "nothing",
      "after", os.environ["CREDITS_RESTART_COUNT"], "restarts", flush=True)
def save(signum, frame):
    saved.write_text("step 42")
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
print("ready", flush=True)
time.sleep(30)
"""

# Notes the SIGTERM and carries on: only SIGKILL ends it.
STUBBORN_JOB = """
import os, pathlib, signal, time
folder = pathlib.Path(os.environ["CREDITS_CHECKPOINT_DIR"])
signal.signal(signal.SIGTERM, lambda signum, frame: (folder / "got-sigterm").touch())
print("ready", flush=True)
for _ in range(300):
    time.sleep(0.1)
(folder / "outlived-the-grace").touch()
"""


def wait_for_output(executor: LocalExecutor, job_id: int, text: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while text not in executor.logs(job_id):
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} in the log of job {job_id}: {executor.logs(job_id)!r}")
        time.sleep(0.05)


def test_stop_lets_a_checkpointable_job_save_and_its_next_attempt_resume(
    executor: LocalExecutor, work_dir: Path
) -> None:
    executor.launch(request(1, CHECKPOINTING_JOB, checkpointable=True))
    wait_for_output(executor, 1, "ready")
    assert "resumed from nothing after 0 restarts" in executor.logs(1)

    executor.stop(1, 5, "moved to make room for job 7")
    seen = wait_for(executor, 1)
    executor.stop(1, 5, "a repeat")  # finished: nothing happens

    assert (seen.phase, seen.reason) == (Phase.PREEMPTED, "moved to make room for job 7")
    assert (work_dir / "jobs" / "1" / "checkpoint" / "step").read_text() == "step 42"
    executor.launch(request(1, CHECKPOINTING_JOB, attempt=2, checkpointable=True))
    wait_for_output(executor, 1, "ready")
    assert "resumed from step 42 after 1 restarts" in executor.logs(1)


def test_stop_kills_a_job_that_outlives_its_grace(executor: LocalExecutor, work_dir: Path) -> None:
    executor.launch(request(1, STUBBORN_JOB, checkpointable=True))
    wait_for_output(executor, 1, "ready")
    child_pid = status_of(work_dir, 1)["child_pid"]
    assert isinstance(child_pid, int)

    executor.stop(1, 1, "moved")
    seen = wait_for(executor, 1)

    checkpoint = work_dir / "jobs" / "1" / "checkpoint"
    assert (seen.phase, seen.reason) == (Phase.PREEMPTED, "moved")
    assert (checkpoint / "got-sigterm").exists()
    assert not (checkpoint / "outlived-the-grace").exists()
    assert not process_exists(child_pid)
    stop = json.loads((work_dir / "jobs" / "1" / "attempt-1" / "stop").read_text())
    assert seen.finished_at is not None
    # SIGKILL came only once the grace was over.
    grace_over = datetime.fromisoformat(stop["at"]) + timedelta(seconds=1)
    assert seen.finished_at >= grace_over


def test_a_job_that_is_not_checkpointable_gets_no_checkpoint_folder(
    executor: LocalExecutor, work_dir: Path
) -> None:
    code = "import os; print(os.environ.get('CREDITS_CHECKPOINT_DIR', 'none'))"
    executor.launch(request(1, code))
    wait_for(executor, 1)
    assert executor.logs(1) == "none\n"
    assert not (work_dir / "jobs" / "1" / "checkpoint").exists()


def test_repeated_launch_starts_one_process(executor: LocalExecutor, work_dir: Path) -> None:
    code = "open('marks.txt', 'a').write('ran\\n')"

    for _ in range(3):
        executor.launch(request(1, code))
    wait_for(executor, 1)
    executor.launch(request(1, code))

    marks = work_dir / "jobs" / "1" / "attempt-1" / "work" / "marks.txt"
    assert marks.read_text() == "ran\n"
    assert executor.observe([1])[1].phase is Phase.SUCCEEDED


def test_new_executor_on_the_same_work_dir_follows_a_running_job(
    executor: LocalExecutor, work_dir: Path
) -> None:
    executor.launch(request(1, "import time; time.sleep(1)"))
    wait_for(executor, 1, phase=Phase.RUNNING)

    restarted = LocalExecutor(work_dir, flavour="local-gpu", slots=["0", "1"])

    assert restarted.observe([1])[1].phase is Phase.RUNNING
    assert wait_for(restarted, 1).phase is Phase.SUCCEEDED


def test_concurrent_jobs_get_distinct_gpus_and_only_their_own_environment(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOST_SECRET", "do-not-leak")
    code = "import os, time; print(sorted(os.environ.items()), os.getcwd()); time.sleep(0.5)"
    spec_env = {"FROM_SPEC": "yes", "CUDA_VISIBLE_DEVICES": "7"}
    executor.launch(request(1, code, env=spec_env, working_dir=SANDBOX_TMP))
    executor.launch(request(2, code, env=spec_env, working_dir=SANDBOX_TMP))
    with pytest.raises(ExecutorError, match="1 GPUs asked, 0 of 2 free") as raised:
        executor.launch(request(3, code))
    assert not raised.value.transient

    assert wait_for(executor, 1).phase is wait_for(executor, 2).phase is Phase.SUCCEEDED
    for job_id, gpu in ((1, "0"), (2, "1")):
        environment = {
            "CUDA_VISIBLE_DEVICES": gpu,
            "FROM_SPEC": "yes",
            "HOME": "/work",
            "LANG": "C.UTF-8",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PWD": SANDBOX_TMP,  # bwrap's, after --chdir
            "PYTHONUNBUFFERED": "1",
        }
        assert executor.logs(job_id).strip() == f"{sorted(environment.items())} {SANDBOX_TMP}"


def test_gpus_are_free_again_once_a_job_finished(executor: LocalExecutor) -> None:
    executor.launch(request(1, gpus=2))
    wait_for(executor, 1)
    executor.launch(request(2, gpus=2))
    assert wait_for(executor, 2).phase is Phase.SUCCEEDED


def test_launch_for_another_node_or_too_many_gpus_is_refused(executor: LocalExecutor) -> None:
    with pytest.raises(ExecutorError, match="not this node") as wrong_node:
        executor.launch(request(1, node="gpu-7"))
    with pytest.raises(ExecutorError, match="3 GPUs asked, 2 of 2 free") as too_many:
        executor.launch(request(2, gpus=3))

    assert not wrong_node.value.transient and not too_many.value.transient
    assert executor.observe([1, 2]) == {}


def test_command_not_found_fails_with_a_readable_reason(executor: LocalExecutor) -> None:
    executor.launch(request(1, command=("no-such-command-for-credits",)))

    seen = wait_for(executor, 1)

    assert (seen.phase, seen.exit_code, seen.reason) == (
        Phase.FAILED,
        127,
        "exit code 127 (command not found)",
    )
    assert "no-such-command-for-credits" in executor.logs(1)


def test_runner_killed_mid_job_is_recorded_as_lost_and_its_command_stopped(
    executor: LocalExecutor, work_dir: Path
) -> None:
    executor.launch(request(1, "import time; time.sleep(30)"))
    running = wait_for(executor, 1, phase=Phase.RUNNING)
    status = status_of(work_dir, 1)
    runner_pid, child_pid = status["runner_pid"], status["child_pid"]
    assert isinstance(runner_pid, int) and isinstance(child_pid, int)

    os.kill(runner_pid, signal.SIGKILL)
    seen = wait_for(executor, 1)

    assert (seen.phase, seen.reason, seen.started_at) == (
        Phase.FAILED,
        "runner lost",
        running.started_at,
    )
    deadline = time.monotonic() + DEADLINE_S
    while process_exists(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_exists(child_pid)


def _left_running_by_a_dead_runner(tmp_path: Path, started: datetime) -> Path:
    attempt = tmp_path / "jobs" / "7" / "attempt-1"
    attempt.mkdir(parents=True)
    (attempt / "request.json").write_text(json.dumps({"job_id": 7, "attempt": 1}))
    (attempt / "runner.json").write_text(json.dumps({"pid": 2**22 + 7}))
    status = {"job_id": 7, "attempt": 1, "runner_pid": 2**22 + 7, "child_pid": None}
    status |= {"started_at": started.isoformat(), "phase": "running"}
    (attempt / "status.json").write_text(json.dumps(status))
    return attempt


@pytest.mark.parametrize("booted_hours_ago", [4, None])
def test_a_runner_lost_to_a_reboot_ends_at_the_boot_not_when_noticed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, booted_hours_ago: int | None
) -> None:
    now = datetime.now(UTC)
    started = now - timedelta(hours=5)
    booted = None if booted_hours_ago is None else now - timedelta(hours=booted_hours_ago)
    monkeypatch.setattr(local_status, "host_boot_time", lambda: booted)
    seen = local_status.observe_attempt(_left_running_by_a_dead_runner(tmp_path, started))
    assert (seen.phase, seen.reason) == (Phase.FAILED, "runner lost")
    assert seen.finished_at is not None
    if booted is None:  # no boot time to go by: when it was noticed
        assert seen.finished_at >= now
    else:
        assert abs(seen.finished_at - booted) < timedelta(seconds=1)


def test_gpu_slots_are_virtual_without_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert discover_gpu_slots(3) == ["0", "1", "2"]
    assert discover_gpu_slots(0) == []


def test_gpu_slots_come_from_nvidia_smi_when_it_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert discover_gpu_slots(8) == ["0", "1"]

    fake.write_text("#!/bin/sh\necho 'driver not loaded' >&2\nexit 9\n")
    assert discover_gpu_slots(2) == ["0", "1"]


def _processes_running(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if entry.name.isdigit() and marker in command:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "sandbox-off"])
def test_a_job_is_final_only_once_every_process_it_started_is_gone(
    work_dir: Path, sandboxed: bool
) -> None:
    executor = LocalExecutor(
        work_dir, flavour="local-gpu", slots=["0"], sandbox=LocalSandboxConfig(enabled=sandboxed)
    )
    # A child left behind in the job's process group, and (in a sandbox, where
    # the PID namespace holds it) one that started a session of its own.
    leftovers = "sleep 3007 & " + ("setsid sleep 3008 & " if sandboxed else "")
    executor.launch(request(1, command=("sh", "-c", f"{leftovers} echo started")))

    seen = wait_for(executor, 1)

    assert (seen.phase, executor.logs(1)) == (Phase.SUCCEEDED, "started\n")
    assert _processes_running("sleep 3007") == _processes_running("sleep 3008") == []
    # The slot is free for the next job at once.
    executor.launch(request(2, "print('next')"))
    assert wait_for(executor, 2).phase is Phase.SUCCEEDED
