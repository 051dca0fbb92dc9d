"""A small demo platform for a newcomer's first ``./scripts/up``, made through the services.

:func:`seed_demo` creates four users (a researcher, a reviewer, a funder and an
ops user, each with a generated password), a funded open program owned by
the funder, the researcher's project with a proposal taken the whole way
(submitted → reviewed → awarded, so the project has GPU credits), a second
proposal waiting in the reviewer's queue, and a GPU flavour matching the
local executor's slots with a rate. It takes the caller's session and never
commits; it is idempotent: when the demo's ops user already exists it does
nothing and says so, and the passwords, which are stored only as hashes, are
never shown again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants import awards, funding, programs, projects, proposals, reviews
from credits.identity.actor import Actor
from credits.identity.models import Role, User
from credits.identity.service import actor_for_email, create_user
from credits.ledger.models import Currency
from credits.pool import service as pool
from credits.pool.models import GpuFlavour
from credits.settings import Settings

SYSTEM = Actor.system("demo")
MICRO = 1_000_000
DOMAIN = "example.org"
# Seeded in this order; the ops user is the marker that the demo exists.
PEOPLE: tuple[tuple[str, str, Role], ...] = (
    ("researcher", "Ada Researcher", Role.RESEARCHER),
    ("reviewer", "Grace Reviewer", Role.REVIEWER),
    ("funder", "Frances Funder", Role.FUNDER),
    ("ops", "Olu Ops", Role.OPS),
)
MARKER = f"demo-ops@{DOMAIN}"
PROGRAM_BUDGET = 10_000 * MICRO
AWARD = 1_000 * MICRO
RATE = 1 * MICRO  # credits per GPU-hour on the local flavour
CRITERIA = [
    {"key": "merit", "label": "Scientific merit"},
    {"key": "feasibility", "label": "Feasibility"},
]


@dataclass(frozen=True)
class DemoLogin:
    role: str
    email: str
    password: str


@dataclass
class DemoResult:
    """What was seeded; ``created`` is False (and ``logins`` empty) on a second run."""

    created: bool
    logins: list[DemoLogin] = field(default_factory=list)
    program_id: int | None = None
    project_id: int | None = None
    flavour: str | None = None
    message: str = ""


def local_pool(settings: Settings) -> tuple[str, int]:
    """The local executor's flavour name and how many GPU slots it has (at least one)."""
    from credits.jobs.executors.gpus import discover_gpu_slots  # noqa: PLC0415 - may run nvidia-smi

    return settings.local_flavour, max(1, len(discover_gpu_slots(settings.local_gpu_slots)))


def demo_exists(session: Session) -> bool:
    return session.scalar(select(User.id).where(User.email == MARKER)) is not None


def seed_demo(
    session: Session, *, flavour: str, gpus_per_node: int, now: datetime | None = None
) -> DemoResult:
    """Seeds the demo once; a second call changes nothing and says so."""
    if demo_exists(session):
        return DemoResult(
            created=False,
            message="the demo is already seeded; its passwords were shown when it was created",
        )
    now = now or utcnow()
    logins, actors = _people(session)
    program_id = _program(session, actors["funder"], now)
    project_id = _project(session, actors, program_id, now)
    _flavour(session, flavour, gpus_per_node, now)
    return DemoResult(
        created=True,
        logins=logins,
        program_id=program_id,
        project_id=project_id,
        flavour=flavour,
        message="demo seeded",
    )


def _people(session: Session) -> tuple[list[DemoLogin], dict[str, Actor]]:
    logins, actors = [], {}
    for role, name, granted in PEOPLE:
        email = f"demo-{role}@{DOMAIN}"
        password = secrets.token_urlsafe(15)
        create_user(
            session,
            email=email,
            name=name,
            roles=(granted,),
            institution="Demo University",
            password=password,
            actor=SYSTEM,
        )
        logins.append(DemoLogin(role=role, email=email, password=password))
        actors[role] = actor_for_email(session, email)
    return logins, actors


def _program(session: Session, funder: Actor, now: datetime) -> int:
    program = programs.create_program(
        session,
        name="Demo: GPU hours for open science",
        description="A demo program: apply for GPU-hours on the local pool.",
        opens_at=now - timedelta(days=1),
        closes_at=now + timedelta(days=90),
        criteria=CRITERIA,
        min_reviewers=1,
        min_mean_score=300,
        actor=funder,
    )
    programs.open_program(session, program_id=program.id, actor=funder, now=now)
    funding.fund_program(
        session,
        program_id=program.id,
        currency=Currency.GPU,
        amount_micro=PROGRAM_BUDGET,
        key="demo-fund",
        actor=funder,
        reason="demo budget",
    )
    return program.id


def _proposal(session: Session, pi: Actor, program_id: int, project_id: int, now: datetime) -> int:
    created = proposals.create_proposal(
        session,
        program_id=program_id,
        project_id=project_id,
        kind="new",
        actor=pi,
        title="Sea-ice emulators on small GPUs",
        abstract="Training neural emulators of sea-ice dynamics.",
        justification="About 1,000 GPU-hours of training and evaluation.",
        requested={"gpu": AWARD},
        starts_at=now,
        ends_at=now + timedelta(days=180),
    )
    proposals.submit_proposal(session, proposal_id=created.id, actor=pi, now=now)
    return created.id


def _project(session: Session, actors: dict[str, Actor], program_id: int, now: datetime) -> int:
    pi, funder, reviewer = actors["researcher"], actors["funder"], actors["reviewer"]
    project = projects.create_project(
        session, title="Demo: sea-ice emulators", field_of_science="Climate science", actor=pi
    )
    reviewer_id = reviewer.user_id
    if reviewer_id is None:
        raise RuntimeError("the demo reviewer has no user id")
    awarded = _proposal(session, pi, program_id, project.id, now)
    reviews.assign_reviewer(
        session, proposal_id=awarded, reviewer_user_id=reviewer_id, actor=funder, now=now
    )
    reviews.submit_review(
        session,
        proposal_id=awarded,
        actor=reviewer,
        scores={"merit": 5, "feasibility": 4},
        comment="Clear plan and a sensible request.",
        now=now,
    )
    awards.award_proposal(
        session,
        proposal_id=awarded,
        actor=funder,
        key="demo-award",
        amounts={"gpu": AWARD},
        starts_at=now,
        ends_at=now + timedelta(days=180),
        reason="demo award",
        now=now,
    )
    # A second proposal waits in the reviewer's queue, so every screen has something.
    waiting = _proposal(session, pi, program_id, project.id, now)
    reviews.assign_reviewer(
        session, proposal_id=waiting, reviewer_user_id=reviewer_id, actor=funder, now=now
    )
    return project.id


def _flavour(session: Session, name: str, gpus_per_node: int, now: datetime) -> None:
    """The local executor's flavour with a rate; one that already exists is left as it is."""
    if session.scalar(select(GpuFlavour.id).where(GpuFlavour.name == name)) is not None:
        return
    pool.add_flavour(
        session,
        name=name,
        node_label_value="local",
        gpu_memory_gb=16,
        gpus_per_node=gpus_per_node,
        description="GPU slots of the machine running ./scripts/up (virtual when it has none)",
        actor=SYSTEM,
    )
    pool.set_rate(
        session,
        flavour=name,
        credits_per_gpu_hour_micro=RATE,
        effective_from=now,
        reason="demo rate",
        actor=SYSTEM,
        now=now,
    )
