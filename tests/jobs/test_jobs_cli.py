"""``credits jobs`` and ``credits pool status``: what ops type, and its one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result
from jobs_world import FLAVOUR, JobsWorld, build_jobs_world
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.jobs.executors.base import ExecutorError
from credits.jobs.models import JobState
from credits.settings import load_settings

Invoke = Callable[..., Result]


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


@pytest.fixture
def invoke(world: JobsWorld, joined_session_factory: sessionmaker[Session]) -> Invoke:
    def run(*args: str) -> Result:
        return CliRunner().invoke(
            main,
            list(args),
            obj={
                "session_factory": joined_session_factory,
                "executor": world.executor,
                "settings": load_settings(),
            },
        )

    return run


def test_list_shows_jobs_as_json_with_filters(world: JobsWorld, invoke: Invoke) -> None:
    first = world.submit()
    world.submit(name="other", gpus=1)
    result = invoke(
        "jobs", "list", "--json", "--project", str(world.project_id), "--state", "queued"
    )
    assert result.exit_code == 0, result.output
    names = [job["name"] for job in json.loads(result.output)["items"]]
    assert names == ["train", "other"]
    table = invoke("jobs", "list")
    assert str(first.id) in table.output
    assert "queued" in table.output


def test_show_prints_the_timeline(world: JobsWorld, invoke: Invoke) -> None:
    job = world.submit(duration=10)
    world.cycle()
    result = invoke("jobs", "show", str(job.id))
    assert result.exit_code == 0, result.output
    assert "queued -> starting" in result.output
    assert "starting -> running" in result.output
    detail = json.loads(invoke("jobs", "show", str(job.id), "--json").output)
    assert detail["state"] == "running"


def test_cancel_needs_an_ops_user_and_refuses_a_finished_job(
    world: JobsWorld, invoke: Invoke
) -> None:
    job = world.submit()
    result = invoke("jobs", "cancel", str(job.id), "--as", "ops@example.org")
    assert result.exit_code == 0, result.output
    assert "cancelled" in result.output
    again = invoke("jobs", "cancel", str(job.id), "--as", "ops@example.org")
    assert again.exit_code == 1
    assert again.output.strip().startswith("error:")
    assert len(again.output.strip().splitlines()) == 1


def test_unknown_job_is_a_one_line_error(invoke: Invoke) -> None:
    result = invoke("jobs", "show", "4242")
    assert result.exit_code == 1
    assert result.output.strip() == "error: no job has the id 4242"


def test_schedule_and_reconcile_by_hand_run_a_job(world: JobsWorld, invoke: Invoke) -> None:
    job = world.submit(duration=5)
    assert "started 1 job(s)" in invoke("jobs", "schedule").output
    assert "launched 1" in invoke("jobs", "reconcile").output
    logs = invoke("jobs", "logs", str(job.id))
    assert logs.exit_code == 0
    assert logs.output


def test_logs_all_streams_the_whole_log(world: JobsWorld, invoke: Invoke) -> None:
    job = world.submit(duration=5)
    world.cycle()
    world.executor.add_output(job.id, *(f"row {n} " + "ß" * 500 for n in range(400)))
    world.clock.advance(10)
    result = invoke("jobs", "logs", str(job.id), "--all")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b"".join(world.executor.log_stream(job.id))
    assert len(result.stdout_bytes) > 400_000
    tail = invoke("jobs", "logs", str(job.id), "--tail", "2")
    assert tail.output == "row 399 " + "ß" * 500 + "\nexit 0\n"
    both = invoke("jobs", "logs", str(job.id), "--all", "--tail", "5")
    assert both.exit_code == 2
    assert "--all and --tail do not go together" in both.output
    unknown = invoke("jobs", "logs", "4242", "--all")
    assert unknown.exit_code == 1
    assert unknown.output.strip() == "error: no job has the id 4242"


def test_logs_and_pool_status_say_in_one_line_when_the_pool_cannot_be_reached(
    world: JobsWorld, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = world.submit(duration=5)
    world.cycle()

    def unreachable(*args: object, **kwargs: object) -> Any:
        raise ExecutorError("listing jobs: HTTP 503 (after 4 tries)")

    monkeypatch.setattr(world.executor, "logs", unreachable)
    monkeypatch.setattr(world.executor, "capacity", unreachable)
    for command in (("jobs", "logs", str(job.id)), ("pool", "status")):
        result = invoke(*command)
        assert result.exit_code == 1
        assert result.output.startswith("error: ") and result.output.count("\n") == 1
        assert "HTTP 503" in result.output


def test_limit_caps_a_project_and_ops_only(world: JobsWorld, invoke: Invoke) -> None:
    ok = invoke("jobs", "limit", str(world.project_id), "4", "--as", "ops@example.org")
    assert ok.exit_code == 0, ok.output
    big = world.submit(gpus=8, duration=5)
    world.cycle()
    assert json.loads(invoke("jobs", "show", str(big.id), "--json").output)["state"] == "queued"
    refused = invoke("jobs", "limit", str(world.project_id), "4", "--as", "pi@example.org")
    assert refused.exit_code == 1
    negative = invoke("jobs", "limit", str(world.project_id), "--as", "ops@example.org", "--", "-1")
    assert negative.exit_code != 0


def test_pool_status_shows_free_gpus_and_queue(world: JobsWorld, invoke: Invoke) -> None:
    world.submit(gpus=16, duration=50)
    world.submit(name="waiting", gpus=8)
    world.cycle()
    result = invoke("pool", "status", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)["flavours"]
    assert (row["flavour"], row["gpus_free"], row["queued_jobs"]) == (FLAVOUR, 0, 1)
    assert FLAVOUR in invoke("pool", "status").output


def _invoke_with_the_configured_executor(
    factory: sessionmaker[Session], *args: str, executor: object = None
) -> Result:
    """Like ``invoke``, but on CREDITS_EXECUTOR=simulated, and the CLI builds its own
    executor from that setting unless ``executor`` is placed as a test's pool."""
    obj: dict[str, object] = {
        "session_factory": factory,
        "settings": load_settings(executor="simulated", simulated_nodes=f"{FLAVOUR}:1x8"),
    }
    if executor is not None:
        obj["executor"] = executor
    return CliRunner().invoke(main, list(args), obj=obj)


def test_reconcile_refuses_a_simulated_pool_of_its_own_and_leaves_running_jobs_running(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    job = world.submit(duration=3600)
    world.cycle()
    assert world.job(job.id).state == JobState.RUNNING.value

    result = _invoke_with_the_configured_executor(joined_session_factory, "jobs", "reconcile")

    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "CREDITS_EXECUTOR=simulated" in result.output
    assert "server" in result.output and "local or kubernetes" in result.output
    assert world.job(job.id).state == JobState.RUNNING.value
    assert world.job(job.id).settled_at is None


def test_reconcile_on_a_simulated_setting_still_drives_a_pool_the_test_placed(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    job = world.submit(duration=5)
    world.schedule()

    result = _invoke_with_the_configured_executor(
        joined_session_factory, "jobs", "reconcile", executor=world.executor
    )

    assert result.exit_code == 0, result.output
    assert "launched 1" in result.output
    assert world.job(job.id).state in {JobState.STARTING.value, JobState.RUNNING.value}


def test_schedule_on_a_simulated_setting_runs_it_only_decides_what_starts(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    job = world.submit(duration=5)

    result = _invoke_with_the_configured_executor(joined_session_factory, "jobs", "schedule")

    assert result.exit_code == 0, result.output
    assert "started 1 job(s)" in result.output
    assert world.job(job.id).state == JobState.STARTING.value  # launched by the server
