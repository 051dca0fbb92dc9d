"""The job page states how the job runs: its sandbox and its limits."""

from __future__ import annotations

from pathlib import Path

from api_world import FLAVOUR, RESEARCHER_A, build_world
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.jobs.executors.base import LaunchRequest, NodeSlice
from credits.jobs.executors.local import LocalExecutor, LocalSandboxConfig
from credits.settings import load_settings


def test_the_job_page_states_the_local_sandbox_and_its_limits(
    joined_session_factory: sessionmaker[Session], session: Session, tmp_path: Path
) -> None:
    world = build_world(session)
    executor = LocalExecutor(
        tmp_path / "local",
        flavour=FLAVOUR,
        slots=["0"],
        sandbox=LocalSandboxConfig(max_processes=300, max_open_files=900),
    )
    app = create_app(load_settings(), session_factory=joined_session_factory, executor=executor)
    client = app.test_client()
    sign_in_as(client, world.user_ids[RESEARCHER_A])

    unlaunched = client.get(f"/jobs/{world.job_a}").get_data(as_text=True)
    executor.launch(
        LaunchRequest(
            job_id=world.job_a,
            attempt=1,
            project_id=1,
            name="train",
            image="ignored",
            command=("true",),
            args=(),
            env={},
            working_dir=None,
            flavour=FLAVOUR,
            node_label_value=FLAVOUR,
            gpus=1,
            cpu_millicores=1000,
            memory_mb=2048,
            max_runtime_seconds=60,
            placement=(NodeSlice("local", 1),),
        )
    )
    page = client.get(f"/jobs/{world.job_a}").get_data(as_text=True)

    assert (
        '<dt>Runs in</dt><dd data-testid="job-isolation">bubblewrap sandbox, network on; '
        "memory 2048 MiB, 300 processes, 900 open files</dd>"
    ) in page
    assert "job-isolation" not in unlaunched
