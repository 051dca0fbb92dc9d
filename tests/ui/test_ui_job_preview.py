"""The job form: its preview refuses what the submission would refuse (node size,
the runtime cap, the grace cap, money), with Submit off and the reason shown; a
job's page copies its spec into a new form, CPU, memory and working directory
included."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.demo import DOMAIN, seed_demo
from credits.grants.models import Project
from credits.identity.models import User
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.models import Job
from credits.jobs.spec import stored_spec
from credits.settings import load_settings

FLAVOUR = "demo-gpu"
CSRF = "job-preview"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session], session: Session) -> Flask:
    executor = SimulatedExecutor([NodeCapacity(name="n0", flavour=FLAVOUR, gpus=4)], clock=utcnow)
    seed_demo(session, flavour=FLAVOUR, gpus_per_node=4)
    return create_app(load_settings(), session_factory=joined_session_factory, executor=executor)


@pytest.fixture
def client(app: Flask, session: Session) -> FlaskClient:
    client = app.test_client()
    user = session.scalars(select(User).where(User.email == f"demo-researcher@{DOMAIN}")).one()
    sign_in_as(client, user.id, csrf_token=CSRF)
    return client


@pytest.fixture
def project_id(session: Session) -> int:
    return session.scalars(select(Project.id).order_by(Project.id)).first() or 0


def _form(**changes: str) -> dict[str, str]:
    return {
        "csrf_token": CSRF,
        "action": "preview",
        "name": "train",
        "image": "python:3.12",
        "command": "python train.py",
        "flavour": FLAVOUR,
        "gpus": "1",
        "max_runtime_minutes": "60",
    } | changes


def _post(client: FlaskClient, project_id: int, **changes: str) -> tuple[int, str]:
    answer = client.post(f"/projects/{project_id}/jobs/new", data=_form(**changes))
    return answer.status_code, answer.get_data(as_text=True)


def _text(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def _submit_button(page: str) -> str:
    found = re.findall(r'<button[^>]*value="submit"[^>]*>', page)
    assert len(found) == 1, found
    return found[0]


def _jobs(session: Session) -> int:
    return int(session.scalar(select(func.count(Job.id))) or 0)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"gpus": "9"}, "gpus", "do not fit one demo-gpu node (4 GPUs)"),
        ({"max_runtime_minutes": "20000"}, "max_runtime_minutes", "cap of 7 days"),
        (
            {"checkpointable": "on", "checkpoint_grace_seconds": "900"},
            "checkpoint_grace_seconds",
            "cap of 5 min",
        ),
    ],
    ids=["gpus over a node", "runtime over the cap", "grace over the cap"],
)
def test_preview_refuses_what_submit_refuses_and_turns_submit_off(
    client: FlaskClient,
    session: Session,
    project_id: int,
    changes: dict[str, str],
    field: str,
    words: str,
) -> None:
    for action in ("preview", "submit"):
        status, page = _post(client, project_id, **(changes | {"action": action}))
        assert status == 422, action
        error = re.search(rf'<p class="error" id="e-{field}">([^<]*)</p>', page)
        assert error is not None and words in error.group(1), (action, _text(page)[-600:])
        assert "disabled" in _submit_button(page)
        assert 'data-testid="submit-blocked"' in page
        assert 'data-testid="hold-preview"' not in page
    assert _jobs(session) == 0


def test_preview_over_the_budget_turns_submit_off_and_says_why(
    client: FlaskClient, session: Session, project_id: int
) -> None:
    # 4 GPUs for 7 days at 1 credit per GPU-hour hold 672 of the project's 1,000.
    week = {"gpus": "4", "max_runtime_minutes": "10080"}
    status, page = _post(client, project_id, **(week | {"action": "submit"}))
    assert status == 302, _text(page)[-400:]
    status, page = _post(client, project_id, **week)
    assert status == 200
    assert "disabled" in _submit_button(page)
    blocked = re.search(r'data-testid="submit-blocked">([^<]*)<', page)
    assert blocked is not None
    assert "this needs 672 GPU credits and only 328 GPU credits are available" in blocked.group(1)
    assert _jobs(session) == 1


def test_preview_that_passes_offers_submit(client: FlaskClient, project_id: int) -> None:
    status, page = _post(client, project_id)
    assert status == 200
    assert "disabled" not in _submit_button(page)
    assert 'data-testid="submit-blocked"' not in page


def test_cpu_memory_and_working_directory_reach_the_spec(
    client: FlaskClient, session: Session, project_id: int
) -> None:
    extra = {"cpu": "6.5", "memory_gb": "48", "working_dir": "/workspace/run 1"}
    status, _ = _post(client, project_id, **(extra | {"action": "submit"}))
    assert status == 302
    spec = stored_spec(session.scalars(select(Job.spec_json)).one())
    assert (spec.cpu, spec.memory_gb, spec.working_dir) == (6.5, 48.0, "/workspace/run 1")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cpu": "many"}, "cpu"),
        ({"memory_gb": "0"}, "memory_gb"),
        ({"working_dir": "rel"}, "working_dir"),
    ],
)
def test_bad_cpu_memory_or_working_directory_is_marked_on_its_field(
    client: FlaskClient, session: Session, project_id: int, changes: dict[str, str], field: str
) -> None:
    status, page = _post(client, project_id, **changes)
    assert status == 422
    assert f'id="e-{field}"' in page
    assert _jobs(session) == 0


def _fields(page: str) -> dict[str, Any]:
    inputs = dict(re.findall(r'<input id="f-(\w+)" name="\w+" type="\w+" value="([^"]*)"', page))
    areas = dict(re.findall(r'<textarea id="f-(\w+)"[^>]*>([^<]*)</textarea>', page, flags=re.S))
    checked = re.search(r'name="checkpointable" checked', page) is not None
    return inputs | areas | {"checkpointable": checked}


def test_copy_to_new_job_fills_the_form_from_the_spec(client: FlaskClient, project_id: int) -> None:
    typed = {
        "action": "submit",
        "name": "copied",
        "command": "python train.py --note 'two words' --empty ''",
        "gpus": "2",
        "max_runtime_minutes": "90",
        "cpu": "3",
        "memory_gb": "12.5",
        "working_dir": "/work",
        "env": "SEED=7\nMODE=fast and safe\n",
        "labels": "team=ice\n",
        "checkpointable": "on",
        "checkpoint_grace_seconds": "45",
    }
    status, _ = _post(client, project_id, **typed)
    assert status == 302
    job_page = client.get("/jobs/1").get_data(as_text=True)
    link = re.search(r'href="([^"]+)"[^>]*data-testid="job-copy"', job_page)
    assert link is not None
    form = client.get(link.group(1).replace("&amp;", "&"))
    assert form.status_code == 200
    fields = _fields(form.get_data(as_text=True))
    assert fields["command"] == "python train.py --note &#39;two words&#39; --empty &#39;&#39;"
    assert (fields["gpus"], fields["max_runtime_minutes"]) == ("2", "90")
    assert (fields["cpu"], fields["memory_gb"], fields["working_dir"]) == ("3", "12.5", "/work")
    assert fields["env"] == "SEED=7\nMODE=fast and safe\n"
    assert fields["labels"] == "team=ice\n"
    assert fields["checkpointable"] is True
    assert fields["checkpoint_grace_seconds"] == "45"


def test_copying_a_job_that_does_not_exist_is_not_found(
    client: FlaskClient, project_id: int
) -> None:
    assert client.get(f"/projects/{project_id}/jobs/new?copy=999").status_code == 404
    assert client.get(f"/projects/{project_id}/jobs/new?copy=x").status_code == 404


def test_submitting_one_rendering_of_the_form_twice_holds_and_queues_once(
    client: FlaskClient, session: Session, project_id: int
) -> None:
    _, page = _post(client, project_id)  # the preview offers Submit, with its key
    key = re.findall(r'<input type="hidden" name="key" value="([^"]+)">', page)
    assert len(key) == 1
    first = client.post(f"/projects/{project_id}/jobs/new", data=_form(action="submit", key=key[0]))
    again = client.post(f"/projects/{project_id}/jobs/new", data=_form(action="submit", key=key[0]))
    assert first.status_code == again.status_code == 302
    assert first.headers["Location"] == again.headers["Location"]
    assert _jobs(session) == 1
    _, another_page = _post(client, project_id)
    assert key[0] not in another_page  # each rendering has a key of its own
