"""A funded program that awarded two projects, whose jobs ran and were settled.

Built through the grants, jobs and ledger services on the simulated pool and a
test clock; telemetry rows are written directly (no service makes them from
nothing but a scrape). A plain module imported by name from tests/reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobs_world import FLAVOUR, RATE, SYSTEM, Clock, JobsWorld
from sqlalchemy.orm import Session, sessionmaker

from credits.db import session_scope, utcnow
from credits.grants import awards, funding, programs, projects, proposals
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.ledger.models import Currency
from credits.metering.models import JobTelemetryRow
from credits.pool import service as pool

CREDIT = 1_000_000
AWARD_A = 100 * CREDIT
AWARD_B = 50 * CREDIT


@dataclass
class ReportsWorld:
    factory: sessionmaker[Session]
    clock: Clock
    funder: Actor
    program_id: int
    a: JobsWorld
    b: JobsWorld
    allocation_a: int  # allocation ids
    allocation_b: int

    def run_until_done(self, steps: int = 40, step_s: float = 60) -> None:
        for _ in range(steps):
            self.a.cycle()
            self.clock.advance(step_s)
        self.a.cycle()


def user(session: Session, email: str, *roles: Role, institution: str = "Uni") -> Actor:
    create_user(
        session,
        email=email,
        name=email.split("@", 1)[0],
        roles=roles,
        institution=institution,
        actor=SYSTEM,
    )
    return actor_for_email(session, email)


def award(
    session: Session,
    pi: Actor,
    funder: Actor,
    program_id: int,
    project_id: int,
    amount: int,
    currency: str = "gpu",
    days: int = 30,
) -> Any:
    """A proposal for ``amount`` of ``currency`` credits for ``days``, submitted and
    awarded at once."""
    now = utcnow()
    proposal = proposals.create_proposal(
        session,
        program_id=program_id,
        project_id=project_id,
        kind="new",
        actor=pi,
        title=f"Runs of project {project_id}",
        abstract="Models.",
        justification="GPU-hours.",
        requested={currency: amount},
        starts_at=now,
        ends_at=now + timedelta(days=days),
    )
    proposals.submit_proposal(session, proposal_id=proposal.id, actor=pi)
    return awards.award_proposal(
        session,
        proposal_id=proposal.id,
        actor=funder,
        key=f"reports-award-{currency}-{project_id}",
        amounts={currency: amount},
        starts_at=now,
        ends_at=now + timedelta(days=days),
        override_reason="decided without reviews in a test",
    )


def build_reports_world(factory: sessionmaker[Session]) -> ReportsWorld:
    start = utcnow()
    with session_scope(factory) as session:
        funder = user(session, "funder@example.org", Role.FUNDER)
        ops = user(session, "ops@example.org", Role.OPS)
        pi_a = user(session, "pi_a@example.org", Role.RESEARCHER, institution="Uni A")
        pi_b = user(session, "pi_b@example.org", Role.RESEARCHER, institution="Uni B")
        program = programs.create_program(
            session,
            name="Compute",
            description="GPU hours.",
            opens_at=start - timedelta(days=1),
            closes_at=start + timedelta(days=60),
            criteria=[{"key": "merit", "label": "Merit"}],
            min_reviewers=1,
            min_mean_score=300,
            actor=funder,
        )
        programs.open_program(session, program_id=program.id, actor=funder)
        funding.fund_program(
            session,
            program_id=program.id,
            currency=Currency.GPU,
            amount_micro=1000 * CREDIT,
            key="reports-fund",
            actor=funder,
            reason="FY27",
        )
        project_a = projects.create_project(
            session, title="Ice", field_of_science="Glaciology", actor=pi_a
        )
        project_b = projects.create_project(
            session, title="Proteins", field_of_science="Biology", actor=pi_b
        )
        award_a = award(session, pi_a, funder, program.id, project_a.id, AWARD_A)
        award_b = award(session, pi_b, funder, program.id, project_b.id, AWARD_B)
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
            credits_per_gpu_hour_micro=RATE,
            effective_from=start - timedelta(days=1),
            actor=SYSTEM,
            now=start - timedelta(days=1),
        )
        alloc_a, alloc_b = award_a.allocations[0], award_b.allocations[0]
    clock = Clock(start + timedelta(minutes=1))
    executor = SimulatedExecutor(
        [NodeCapacity(name=f"gpu-{i}", flavour=FLAVOUR, gpus=8) for i in range(2)],
        clock=clock,
        default_duration_s=60.0,
    )

    def jobs_world(pi: Actor, project_id: int, account_id: int) -> JobsWorld:
        return JobsWorld(factory, clock, executor, pi, ops, project_id, account_id)

    return ReportsWorld(
        factory=factory,
        clock=clock,
        funder=funder,
        program_id=program.id,
        a=jobs_world(pi_a, project_a.id, alloc_a.account_id),
        b=jobs_world(pi_b, project_b.id, alloc_b.account_id),
        allocation_a=alloc_a.id,
        allocation_b=alloc_b.id,
    )


def add_telemetry(
    session: Session, job_id: int, *, samples: int, util: float, energy_mj: int, at: datetime
) -> None:
    session.add(
        JobTelemetryRow(
            job_id=job_id,
            samples=samples,
            gpu_util_sum=util * samples,
            peak_fb_used_mib=1000.0,
            energy_mj=energy_mj,
            first_at=at,
            last_at=at,
        )
    )
    session.flush()
