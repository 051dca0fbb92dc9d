"""The job page's "Download the whole log" link: it streams the job's whole output
as a file to whoever may see the job, and is a 404 to anyone else."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_world import FLAVOUR, RESEARCHER_A, RESEARCHER_B, World, build_world, world_executor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.jobs.executors.base import ExecutorError, LaunchRequest, NodeSlice
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.settings import load_settings


@pytest.fixture
def executor() -> SimulatedExecutor:
    return world_executor()


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session], executor: SimulatedExecutor) -> Flask:
    return create_app(load_settings(), session_factory=joined_session_factory, executor=executor)


def _client(app: Flask, world: World, persona: str) -> FlaskClient:
    client = app.test_client()
    sign_in_as(client, world.user_ids[persona])
    return client


def _launch(executor: SimulatedExecutor, job_id: int) -> None:
    executor.launch(
        LaunchRequest(
            job_id=job_id,
            attempt=1,
            project_id=1,
            name="train",
            image="python:3.12",
            command=("python",),
            args=("train.py",),
            env={},
            working_dir=None,
            flavour=FLAVOUR,
            node_label_value=FLAVOUR,
            gpus=1,
            cpu_millicores=1000,
            memory_mb=1024,
            max_runtime_seconds=3600,
            placement=(NodeSlice("gpu-0", 1),),
        )
    )


def test_the_job_page_links_a_download_that_streams_the_whole_log(
    app: Flask, session: Session, executor: SimulatedExecutor
) -> None:
    world = build_world(session)
    _launch(executor, world.job_a)
    executor.add_output(world.job_a, *(f"epoch {n} " + "·" * 400 for n in range(300)))
    client = _client(app, world, RESEARCHER_A)

    page = client.get(f"/jobs/{world.job_a}").get_data(as_text=True)
    link = f'href="/jobs/{world.job_a}/output.log" download data-testid="job-log-download"'
    assert link in page
    assert "Download the whole log" in page

    response = client.get(f"/jobs/{world.job_a}/output.log")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="job-{world.job_a}-output.log"'
    )
    assert response.is_streamed
    chunks = list(response.iter_encoded())
    assert len(chunks) > 1
    text = b"".join(chunks).decode()
    assert text.count("\nepoch ") == 300
    assert text.endswith("epoch 299 " + "·" * 400 + "\n")


def test_the_download_is_a_404_to_whoever_cannot_see_the_job(
    app: Flask, session: Session, executor: SimulatedExecutor
) -> None:
    world = build_world(session)
    _launch(executor, world.job_a)
    response = _client(app, world, RESEARCHER_B).get(f"/jobs/{world.job_a}/output.log")
    assert response.status_code == 404
    assert "epoch" not in response.get_data(as_text=True)
    anonymous = app.test_client().get(f"/jobs/{world.job_a}/output.log")
    assert anonymous.status_code in {302, 303}
    assert "/login" in anonymous.headers["Location"]


def test_a_log_the_executor_cannot_reach_is_a_503_page(
    app: Flask, session: Session, executor: SimulatedExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_world(session)

    def unreachable(job_id: int) -> Iterator[bytes]:
        raise ExecutorError(f"reading the log of job {job_id}: timed out (after 4 tries)")

    monkeypatch.setattr(executor, "log_stream", unreachable)
    response = _client(app, world, RESEARCHER_A).get(f"/jobs/{world.job_a}/output.log")
    assert response.status_code == 503
    assert "cannot be read now" in response.get_data(as_text=True)


def test_a_running_jobs_log_and_state_are_announced_to_screen_readers(
    app: Flask, session: Session, executor: SimulatedExecutor
) -> None:
    world = build_world(session)
    _launch(executor, world.job_a)
    page = _client(app, world, RESEARCHER_A).get(f"/jobs/{world.job_a}").get_data(as_text=True)
    assert 'role="log" aria-live="polite" data-testid="job-log"' in page
    assert 'data-testid="job-state"' in page and 'aria-live="polite">' in page
