"""Real sandboxed jobs attack the platform that runs them, and every attack fails.

Each attack job is a Python program, run by the host's ``python3`` in the local
executor's bubblewrap sandbox and taken through the whole platform: submit with
a credit hold, schedule, run, meter, settle. A program prints ``blocked NAME``
or ``ESCAPED NAME`` for each attempt; the test then checks the host as well
(no forged status, no file written outside the work folder, the platform's
process never signalled) and that the job was charged for what it really ran.

The same attacks with the sandbox off do escape: proof that the checks can fail.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from jobs_world import FLAVOUR, RATE, Clock, JobsWorld, build_jobs_world
from sqlalchemy.orm import Session, sessionmaker

from credits.db import utcnow
from credits.jobs import queries
from credits.jobs.executors.local import LocalExecutor, LocalSandboxConfig
from credits.jobs.schemas import JobDetail
from credits.ledger.verify import verify_ledger
from credits.metering.service import settle_all_pending

pytestmark = pytest.mark.slow

CANARY = "canary-secret-4f1c"
MAX_PROCESSES = 48
DEADLINE_S = 60.0


@dataclasses.dataclass
class Platform:
    world: JobsWorld
    executor: LocalExecutor
    var: Path
    signalled: list[int]

    def run(self, name: str, program: str, *, max_runtime: int = 120) -> JobDetail:
        """Submits the program as a 1-GPU job and drives the platform until it is settled."""
        job = self.world.submit(
            name=name,
            command=["python3", "-c", textwrap.dedent(program)],
            gpus=1,
            max_runtime_seconds=max_runtime,
            env={"TARGET_PID": str(os.getpid()), "VAR": str(self.var)},
        )
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            self.world.cycle()
            settle_all_pending(self.world.factory, batch_size=500)
            detail = self.detail(job.id)
            if detail.settled_at is not None:
                return detail
            time.sleep(0.2)
        pytest.fail(f"job {name} not settled in time: {self.detail(job.id)}")

    def detail(self, job_id: int) -> JobDetail:
        with self.world.session() as session:
            return queries.get_job_detail(session, self.world.ops, job_id)

    def output(self, job_id: int) -> str:
        return self.executor.logs(job_id, tail_lines=1000)


def _platform(
    factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    sandboxed: bool,
) -> Iterator[Platform]:
    # The platform's own environment holds its secrets, as in production.
    monkeypatch.setenv("CREDITS_SECRET_KEY", CANARY)
    var = tmp_path / "var"
    var.mkdir(parents=True, exist_ok=True)
    (var / "secret_key").write_text(CANARY)
    (var / "credits.db").write_text(f"users table {CANARY}")
    executor = LocalExecutor(
        var,
        flavour=FLAVOUR,
        slots=["0", "1"],
        sandbox=LocalSandboxConfig(
            enabled=sandboxed, max_processes=MAX_PROCESSES, hidden_paths=(str(var),)
        ),
    )
    world = build_jobs_world(factory, nodes=1, gpus_per_node=2, clock=cast(Clock, utcnow))
    world = dataclasses.replace(world, executor=cast(Any, executor))
    signalled: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: signalled.append(signum))
    try:
        yield Platform(world, executor, var, signalled)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        for job_dir in (var / "jobs").iterdir():
            executor.cancel(int(job_dir.name))


@pytest.fixture
def platform(
    joined_session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Platform]:
    yield from _platform(joined_session_factory, tmp_path, monkeypatch, sandboxed=True)


@pytest.fixture
def unsandboxed(
    joined_session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Platform]:
    yield from _platform(joined_session_factory, tmp_path, monkeypatch, sandboxed=False)


# Each attempt prints "blocked NAME" or "ESCAPED NAME"; reading "the canary" means
# the platform's secret was seen.
READ_SECRETS = """
    import os
    var = os.environ["VAR"]
    def attempt(name, path):
        try:
            with open(path, errors="replace") as handle:
                seen = handle.read()
        except OSError:
            print("blocked", name)
            return
        print("ESCAPED" if "canary" in seen else "blocked", name)
    attempt("key", f"{var}/secret_key")
    attempt("key-relative", "../../../../secret_key")
    attempt("database", f"{var}/credits.db")
    attempt("database-relative", "../../../../credits.db")
    attempt("other-job-log", f"{var}/jobs/1/attempt-1/output.log")
    attempt("other-job-log-relative", "../../1/attempt-1/output.log")
    attempt("init-environ", "/proc/1/environ")
    attempt("parent-environ", f"/proc/{os.getppid()}/environ")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        attempt(f"environ-of-{pid}", f"/proc/{pid}/environ")
    attempt("own-environ", "/proc/self/environ")
"""


def _verdicts(output: str) -> dict[str, str]:
    verdicts = {}
    for line in output.splitlines():
        verdict, *rest = line.split()
        if verdict in {"blocked", "ESCAPED"} and rest:
            verdicts[rest[0]] = verdict
    return verdicts


def _assert_charged_for_what_ran(job: JobDetail) -> None:
    assert job.started_at is not None and job.finished_at is not None
    ran_s = (job.finished_at - job.started_at).total_seconds()
    expected = ran_s * RATE * job.gpus / 3600
    assert job.overage_micro == 0
    assert abs(job.charged_micro - expected) <= 2, (job.charged_micro, expected)


def _assert_ledger_verifies(platform: Platform) -> None:
    with platform.world.session() as session:
        report = verify_ledger(session)
    assert report.ok, report


def test_a_job_cannot_read_the_key_the_database_other_logs_or_the_platform_environment(
    platform: Platform,
) -> None:
    secret_output = platform.run("victim", f"print('other job output {CANARY}')")
    assert CANARY in platform.output(secret_output.id)

    job = platform.run("reader", READ_SECRETS)

    verdicts = _verdicts(platform.output(job.id))
    assert {"key", "database", "other-job-log", "init-environ", "parent-environ"} <= set(verdicts)
    assert {name for name, verdict in verdicts.items() if verdict != "blocked"} == set()
    assert job.state.value == "succeeded"
    _assert_charged_for_what_ran(job)
    _assert_ledger_verifies(platform)


def test_without_the_sandbox_the_same_job_reads_the_secrets(unsandboxed: Platform) -> None:
    unsandboxed.run("victim", f"print('other job output {CANARY}')")

    job = unsandboxed.run("reader", READ_SECRETS)

    verdicts = _verdicts(unsandboxed.output(job.id))
    assert verdicts["key"] == verdicts["database"] == verdicts["other-job-log"] == "ESCAPED"


FORGE_STATUS = """
    import json, os, time
    var = os.environ["VAR"]
    forged = {"job_id": 2, "attempt": 1, "phase": "succeeded", "exit_code": 0,
              "started_at": "2026-01-01T00:00:00+00:00",
              "finished_at": "2026-01-01T00:00:00+00:00"}
    for name, path in [("status", f"{var}/jobs/2/attempt-1/status.json"),
                       ("status-relative", "../status.json"),
                       ("runner-file", f"{var}/jobs/2/attempt-1/runner.json"),
                       ("output-log", f"{var}/jobs/2/attempt-1/output.log"),
                       ("host-var", f"{var}/pwned"),
                       ("system", "/usr/pwned"),
                       ("etc", "/etc/pwned"),
                       ("root", "/pwned")]:
        try:
            with open(path, "w") as handle:
                json.dump(forged, handle)
        except OSError:
            print("blocked", name)
        else:
            print("ESCAPED" if not path.startswith("../") else "wrote-inside", name)
    time.sleep(2)
    raise SystemExit(3)
"""


def test_a_job_cannot_forge_its_status_or_write_outside_its_work_folder(
    platform: Platform,
) -> None:
    platform.run("first", "print('one')")  # so that the attacker is job 2

    job = platform.run("forger", FORGE_STATUS)

    output = platform.output(job.id)
    assert "ESCAPED" not in output, output
    assert {"status", "host-var", "system", "etc", "root"} <= set(_verdicts(output))
    assert (job.id, job.state.value, job.exit_code) == (2, "failed", 3)
    assert job.started_at is not None and job.finished_at is not None
    assert (job.finished_at - job.started_at).total_seconds() >= 2
    status = json.loads((platform.var / "jobs/2/attempt-1/status.json").read_text())
    assert (status["phase"], status["exit_code"]) == ("failed", 3)
    assert not (platform.var / "pwned").exists()
    assert not Path("/usr/pwned").exists() and not Path("/etc/pwned").exists()
    _assert_charged_for_what_ran(job)
    _assert_ledger_verifies(platform)


SIGNAL_AND_FORK = f"""
    import os, signal, time
    target = int(os.environ["TARGET_PID"])
    try:
        os.kill(target, signal.SIGUSR1)
    except OSError:
        print("blocked signal-platform")
    else:
        print("ESCAPED signal-platform")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    children = 0
    try:
        for _ in range({MAX_PROCESSES * 3}):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
    except OSError:
        pass
    print("blocked" if children < {MAX_PROCESSES} else "ESCAPED", "fork-limit", children)
    time.sleep(1)
    print("still supervised")
"""


def test_a_job_cannot_signal_its_runner_or_fork_past_its_process_limit(
    platform: Platform,
) -> None:
    job = platform.run("forker", SIGNAL_AND_FORK)

    output = platform.output(job.id)
    assert _verdicts(output) == {"signal-platform": "blocked", "fork-limit": "blocked"}, output
    assert "still supervised" in output
    assert platform.signalled == []
    # The runner outlived the attack: it, not "runner lost", recorded the end, and it
    # waited for every forked child to be gone.
    assert (job.state.value, job.exit_code, job.reason) == ("succeeded", 0, None)
    _assert_charged_for_what_ran(job)
    _assert_ledger_verifies(platform)
