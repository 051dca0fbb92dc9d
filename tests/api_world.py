"""One small platform, built through the services, for tests that call every route.

The access matrix (tests/test_access_matrix.py) and the schemathesis run
(tests/test_api_schemathesis.py) both need a caller of every kind and an
object of every kind for them to reach or not: :func:`build_world` makes them
in the test's rolled-back session and hands back tokens and ids.

A plain module, not a conftest.py, for the reason given in tests/api/api_helpers.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from credits.datasets import service as datasets
from credits.datasets.publishing import publish_version
from credits.datasets.schemas import DATASHEET_SECTIONS
from credits.db import utcnow
from credits.grants import awards, funding, programs, projects, proposals, reviews
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user, revoke_role
from credits.identity.tokens import create_token
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.service import submit_job
from credits.jobs.spec import JobSpec
from credits.ledger import service as ledger
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import system_account_id
from credits.pool import service as pool
from credits.reports.energy import EnergyPolicy
from credits.storage import StoredBlob

SYSTEM = Actor.system("tests")
FLAVOUR = "a100-80gb"
CRITERIA = [{"key": "merit", "label": "Scientific merit"}, {"key": "fit", "label": "Fit"}]

# Who calls. The anonymous caller sends no Authorization header at all.
ANONYMOUS = "anonymous"
OPS = "ops"
RESEARCHER_A = "researcher_a"  # PI of project A
RESEARCHER_B = "researcher_b"  # PI of project B, on nothing of A's
REVIEWER = "reviewer"
# Assigned to the proposal in review, like REVIEWER, but declared a conflict on it.
CONFLICTED_REVIEWER = "conflicted_reviewer"
FUNDER_P = "funder_p"  # owns programs P and P-draft
FUNDER_Q = "funder_q"  # owns program Q only
# Role revoked: each still has the rows their role gave them (a place on project A,
# an owner's seat on program P, an assignment to the proposal in review), but no
# longer the role, so they reach none of it; their tokens still authenticate.
FORMER_RESEARCHER = "former_researcher"  # a manager of project A
FORMER_FUNDER = "former_funder"  # an owner of program P
FORMER_REVIEWER = "former_reviewer"  # assigned to the proposal in review
REVOKED = (FORMER_RESEARCHER, FORMER_FUNDER, FORMER_REVIEWER)
PERSONAS = (
    ANONYMOUS,
    OPS,
    RESEARCHER_A,
    RESEARCHER_B,
    REVIEWER,
    CONFLICTED_REVIEWER,
    FUNDER_P,
    FUNDER_Q,
    *REVOKED,
)
_ROLES: dict[str, tuple[Role, ...]] = {
    OPS: (Role.OPS,),
    RESEARCHER_A: (Role.RESEARCHER,),
    RESEARCHER_B: (Role.RESEARCHER,),
    REVIEWER: (Role.REVIEWER,),
    CONFLICTED_REVIEWER: (Role.REVIEWER,),
    FUNDER_P: (Role.FUNDER,),
    FUNDER_Q: (Role.FUNDER,),
    FORMER_RESEARCHER: (Role.RESEARCHER,),
    FORMER_FUNDER: (Role.FUNDER,),
    FORMER_REVIEWER: (Role.REVIEWER,),
}


@dataclass(frozen=True)
class World:
    """Tokens by persona and the ids of the objects they reach or do not."""

    headers: dict[str, dict[str, str]]
    user_ids: dict[str, int]
    member_a: int  # a plain member of project A, whom a request may remove
    program_p: int  # open, funded, owned by funder P
    program_p_draft: int  # draft, owned by funder P
    program_q: int  # draft, owned by funder Q
    project_a: int  # active; researcher A is PI, member_a a member
    project_a_suspended: int  # suspended; researcher A is PI
    project_b: int  # active; researcher B is PI
    account_a: int  # an allocation account of project A, with credits
    flavour: str  # a GPU flavour with a rate in force
    reviewer_spare: int  # a reviewer not yet assigned to anything
    proposal_draft: int  # project A's draft to program P
    proposal_in_review: int  # project A's, to P; both reviewers assigned, one conflicted
    allocation: int  # awarded to project A by program P
    tranche: int  # the pending rest of that award
    job_a: int  # queued in project A, submitted by researcher A
    # Project A's dataset: version 1 published (public), version 2 a draft (members, ops).
    dataset_concept: str = ""  # its concept id
    dataset_published: str = ""  # version 1's public id (a UUID)
    dataset_draft: str = ""  # version 2's public id
    dataset_published_number: int = 0  # 1
    dataset_draft_number: int = 0  # 2


def _user(session: Session, email: str, *roles: Role) -> Actor:
    create_user(
        session,
        email=email,
        name=email.partition("@")[0].replace("_", " ").title(),
        roles=roles,
        institution="Uni",
        actor=SYSTEM,
    )
    return actor_for_email(session, email)


def _uid(actor: Actor) -> int:
    assert actor.user_id is not None
    return actor.user_id


def program_body(**overrides: Any) -> dict[str, Any]:
    """A valid program as the API and the service take it, with aware datetimes."""
    now = utcnow()
    values: dict[str, Any] = {
        "name": "Compute for climate",
        "description": "GPU hours for climate models.",
        "opens_at": now - timedelta(days=1),
        "closes_at": now + timedelta(days=30),
        "criteria": CRITERIA,
        "min_reviewers": 2,
        "min_mean_score": 350,
    }
    return values | overrides


def _programs(session: Session, actors: dict[str, Actor]) -> tuple[int, int, int]:
    p = programs.create_program(
        session, actor=actors[FUNDER_P], **program_body(name="P", initial_share_percent=50)
    )
    programs.open_program(session, program_id=p.id, actor=actors[FUNDER_P])
    programs.add_program_owner(
        session, program_id=p.id, user_id=_uid(actors[FORMER_FUNDER]), actor=actors[FUNDER_P]
    )
    funding.fund_program(
        session,
        program_id=p.id,
        currency=Currency.GPU,
        amount_micro=1_000_000_000,
        key="world-p",
        actor=actors[FUNDER_P],
        reason="FY27",
    )
    draft = programs.create_program(session, actor=actors[FUNDER_P], **program_body(name="P2"))
    q = programs.create_program(session, actor=actors[FUNDER_Q], **program_body(name="Q"))
    return p.id, draft.id, q.id


def _allocation(session: Session, project_id: int) -> int:
    account = ledger.open_account(
        session,
        code=f"world-allocation-{project_id}",
        currency=Currency.GPU,
        project_id=project_id,
        expires_at=utcnow() + timedelta(days=30),
        actor=SYSTEM,
    )
    ledger.grant(
        session,
        key=f"world-fund-{project_id}",
        from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.GPU),
        to_account_id=account.id,
        amount=10_000_000,
        actor=SYSTEM,
    )
    return account.id


def _flavour(session: Session) -> str:
    pool.add_flavour(
        session,
        name=FLAVOUR,
        node_label_value="NVIDIA-A100-SXM4-80GB",
        gpu_memory_gb=80,
        gpus_per_node=8,
        actor=SYSTEM,
    )
    pool.set_rate(
        session,
        flavour=FLAVOUR,
        credits_per_gpu_hour_micro=2_500_000,
        effective_from=utcnow(),
        actor=SYSTEM,
    )
    return FLAVOUR


def _proposal(session: Session, actor: Actor, program_id: int, project_id: int) -> int:
    now = utcnow()
    return proposals.create_proposal(
        session,
        program_id=program_id,
        project_id=project_id,
        kind="new",
        actor=actor,
        title="Ice sheet models",
        abstract="Coupled ice-ocean runs.",
        justification="Needs 1,000 GPU-hours.",
        requested={"gpu": 2_000_000},
        starts_at=now + timedelta(days=1),
        ends_at=now + timedelta(days=90),
    ).id


def _proposals(
    session: Session, actors: dict[str, Actor], program_id: int, project_id: int
) -> tuple[int, int, int, int]:
    """(draft, in review, allocation, tranche) ids: project A's proposals to program P."""
    pi, owner = actors[RESEARCHER_A], actors[FUNDER_P]
    draft = _proposal(session, pi, program_id, project_id)
    in_review = _proposal(session, pi, program_id, project_id)
    proposals.submit_proposal(session, proposal_id=in_review, actor=pi)
    for name in (REVIEWER, CONFLICTED_REVIEWER, FORMER_REVIEWER):
        reviews.assign_reviewer(
            session, proposal_id=in_review, reviewer_user_id=_uid(actors[name]), actor=owner
        )
    reviews.declare_conflict(
        session, proposal_id=in_review, actor=actors[CONFLICTED_REVIEWER], reason="co-author"
    )
    awarded = _proposal(session, pi, program_id, project_id)
    proposals.submit_proposal(session, proposal_id=awarded, actor=pi)
    award = awards.award_proposal(
        session,
        proposal_id=awarded,
        actor=owner,
        key="world-award",
        amounts={"gpu": 2_000_000},
        starts_at=utcnow(),
        ends_at=utcnow() + timedelta(days=90),
        override_reason="decided before the reviews",
    )
    return draft, in_review, award.allocations[0].id, award.tranches[0].id


def world_executor() -> SimulatedExecutor:
    """The pool the world's app runs jobs on: two nodes of the world's flavour."""
    return SimulatedExecutor(
        [NodeCapacity(name=f"gpu-{i}", flavour=FLAVOUR, gpus=8) for i in range(2)],
        clock=utcnow,
    )


def job_body(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "train",
        "image": "python:3.12",
        "command": ["python", "-c", "print('hi')"],
        "flavour": FLAVOUR,
        "gpus": 1,
        "max_runtime_seconds": 600,
    }
    return document | overrides


def _job(session: Session, actor: Actor, project_id: int) -> int:
    job = submit_job(
        session,
        project_id=project_id,
        spec=JobSpec.model_validate(job_body()),
        actor=actor,
        max_runtime_cap=86400,
    )
    return job.id


def _dataset(session: Session, actor: Actor, project_id: int) -> dict[str, Any]:
    """A dataset of the project: version 1 published, version 2 a draft."""
    first = datasets.create_dataset(session, project_id=project_id, title="Ice cores", actor=actor)
    datasets.update_metadata(
        session,
        version_id=first.id,
        changes={
            "description": "Ice core isotopes.",
            "creators": [{"name": "Lovelace, Ada"}],
            "license": "CC-BY-4.0",
            "keywords": ["ice"],
        },
        actor=actor,
    )
    datasets.update_datasheet(
        session,
        version_id=first.id,
        changes=dict.fromkeys(DATASHEET_SECTIONS, "Described."),
        actor=actor,
    )
    blob = StoredBlob(sha256=hashlib.sha256(b"a,b\n").hexdigest(), size=4)
    datasets.add_file(session, version_id=first.id, name="cores.csv", blob=blob, actor=actor)
    energy = EnergyPolicy.from_values(pue=1.0, grid_g_per_kwh=0.0)
    publish_version(session, version_id=first.id, actor=actor, energy=energy)
    second = datasets.new_version(session, dataset_id=first.dataset_id, actor=actor)
    return {
        "dataset_concept": first.concept_id,
        "dataset_published": first.public_id,
        "dataset_draft": second.public_id,
        "dataset_published_number": first.number,
        "dataset_draft_number": second.number,
    }


def build_world(session: Session) -> World:
    """Every persona with an unscoped token, and the objects of :class:`World`."""
    actors = {name: _user(session, f"{name}@example.org", *roles) for name, roles in _ROLES.items()}
    member = _user(session, "member_a@example.org", Role.RESEARCHER)
    headers = {
        name: {
            "Authorization": "Bearer "
            + create_token(session, email=f"{name}@example.org", actor=SYSTEM).secret
        }
        for name in actors
    }
    headers[ANONYMOUS] = {}
    project_a = projects.create_project(
        session, title="Ice sheets", field_of_science="Glaciology", actor=actors[RESEARCHER_A]
    )
    projects.add_member(
        session,
        project_id=project_a.id,
        user_id=_uid(member),
        role="member",
        actor=actors[RESEARCHER_A],
    )
    projects.add_member(
        session,
        project_id=project_a.id,
        user_id=_uid(actors[FORMER_RESEARCHER]),
        role="manager",
        actor=actors[RESEARCHER_A],
    )
    suspended = projects.create_project(
        session, title="Sea ice", field_of_science="Glaciology", actor=actors[RESEARCHER_A]
    )
    projects.suspend_project(
        session, project_id=suspended.id, actor=actors[OPS], reason="audit pending"
    )
    project_b = projects.create_project(
        session, title="Proteins", field_of_science="Biology", actor=actors[RESEARCHER_B]
    )
    program_p, program_p_draft, program_q = _programs(session, actors)
    spare = _user(session, "reviewer_spare@example.org", Role.REVIEWER)
    draft, in_review, allocation, tranche = _proposals(session, actors, program_p, project_a.id)
    world = World(
        headers=headers,
        user_ids={name: _uid(actor) for name, actor in actors.items()},
        member_a=_uid(member),
        program_p=program_p,
        program_p_draft=program_p_draft,
        program_q=program_q,
        project_a=project_a.id,
        project_a_suspended=suspended.id,
        project_b=project_b.id,
        account_a=_allocation(session, project_a.id),
        flavour=_flavour(session),
        reviewer_spare=_uid(spare),
        proposal_draft=draft,
        proposal_in_review=in_review,
        allocation=allocation,
        tranche=tranche,
        job_a=0,
    )
    world = replace(world, job_a=_job(session, actors[RESEARCHER_A], project_a.id))
    world = replace(world, **_dataset(session, actors[RESEARCHER_A], project_a.id))
    for name in REVOKED:
        revoke_role(session, email=f"{name}@example.org", role=_ROLES[name][0], actor=SYSTEM)
    session.flush()
    return world
