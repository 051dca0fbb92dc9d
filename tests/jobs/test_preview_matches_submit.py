"""The job form's preview (quote_submission) and the submission agree on every spec.

For each bad spec in the table, the preview refuses with the same error, on the
same field and in the same words as the submission; a spec over the budget is
a preview that is not ``enough`` and a submission refused for the same amounts.
A preview changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest
from jobs_world import CAP, JobsWorld, build_jobs_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.errors import CreditsError
from credits.grants import projects
from credits.jobs import service
from credits.jobs.errors import (
    CheckpointGraceOverCap,
    ImageNotAllowed,
    JobNeverFits,
    ProjectCannotSubmit,
    RuntimeOverCap,
    UnknownFlavour,
)
from credits.jobs.models import Job
from credits.jobs.runtime import pool_nodes
from credits.ledger.errors import InsufficientCredits
from credits.pool.models import DEFAULT_CHECKPOINT_GRACE_CAP_S

REGISTRIES = ("ghcr.io",)

BAD_SPECS: list[tuple[str, dict[str, Any], type[CreditsError]]] = [
    ("unknown flavour", {"flavour": "h100-nope"}, UnknownFlavour),
    ("9 GPUs on 8-GPU nodes", {"gpus": 9}, JobNeverFits),
    ("more GPUs than the pool", {"gpus": 24}, JobNeverFits),
    ("runtime over the cap", {"max_runtime_seconds": CAP + 60}, RuntimeOverCap),
    (
        "grace over the flavour's cap",
        {"checkpointable": True, "checkpoint_grace_seconds": DEFAULT_CHECKPOINT_GRACE_CAP_S + 1},
        CheckpointGraceOverCap,
    ),
    ("image from another registry", {"image": "docker.io/library/python:3.12"}, ImageNotAllowed),
]


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def _call(world: JobsWorld, action: str, registries: Collection[str], **overrides: Any) -> Any:
    spec = world.spec(**({"image": "ghcr.io/lab/train:1"} | overrides))
    with world.session() as session:
        return getattr(service, action)(
            session,
            project_id=world.project_id,
            spec=spec,
            actor=world.researcher,
            max_runtime_cap=CAP,
            pool_nodes=pool_nodes(world.executor),
            image_registries=registries,
            now=world.clock(),
        )


def _jobs(world: JobsWorld) -> int:
    with world.session() as session:
        return int(session.scalar(select(func.count(Job.id))) or 0)


@pytest.mark.parametrize(("case", "overrides", "error"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_preview_refuses_a_bad_spec_as_the_submission_does(
    world: JobsWorld, case: str, overrides: dict[str, Any], error: type[CreditsError]
) -> None:
    before = world.available()
    with pytest.raises(error) as previewed:
        _call(world, "quote_submission", REGISTRIES, **overrides)
    with pytest.raises(error) as submitted:
        _call(world, "submit_job", REGISTRIES, **overrides)
    assert str(previewed.value) == str(submitted.value), case
    assert previewed.value.extra == submitted.value.extra, case
    assert world.available() == before
    assert _jobs(world) == 0


def test_runtime_over_the_cap_is_refused_in_minutes_and_days(world: JobsWorld) -> None:
    with pytest.raises(RuntimeOverCap) as refused:
        _call(world, "quote_submission", (), max_runtime_seconds=20_000 * 60)
    assert str(refused.value) == (
        "a max runtime of 13 days 21 h 20 min is over the platform's cap of 7 days"
    )


def test_preview_of_a_suspended_project_is_refused_as_its_submission(world: JobsWorld) -> None:
    with world.session() as session:
        projects.suspend_project(
            session, project_id=world.project_id, actor=world.ops, reason="audit"
        )
    with pytest.raises(ProjectCannotSubmit) as previewed:
        _call(world, "quote_submission", ())
    with pytest.raises(ProjectCannotSubmit) as submitted:
        _call(world, "submit_job", ())
    assert str(previewed.value) == str(submitted.value)


def test_preview_over_the_budget_is_not_enough_and_the_submission_is_refused_alike(
    world: JobsWorld,
) -> None:
    over = {"gpus": 8, "max_runtime_seconds": 6 * 86400}
    quote = _call(world, "quote_submission", (), **over)
    assert not quote.enough
    assert quote.available_micro == world.available()
    with pytest.raises(InsufficientCredits) as refused:
        _call(world, "submit_job", (), **over)
    assert refused.value.extra["required"] == quote.hold_micro
    assert refused.value.extra["available"] == quote.available_micro
    assert quote.shortfall is not None and quote.shortfall in str(refused.value)
    assert _jobs(world) == 0


def test_preview_that_passes_quotes_the_hold_the_submission_places(world: JobsWorld) -> None:
    before = world.available()
    quote = _call(world, "quote_submission", REGISTRIES, gpus=16)  # a gang of two whole nodes
    assert quote.enough and quote.shortfall is None
    assert world.available() == before and _jobs(world) == 0
    job = _call(world, "submit_job", REGISTRIES, gpus=16)
    assert job.hold_micro == quote.hold_micro
    assert job.micro_credits_per_gpu_hour == quote.micro_per_gpu_hour
    assert world.available() == before - quote.hold_micro
