"""A small world for job tests: a researcher's funded project, a flavour with a
rate, a simulated pool on a clock the test moves. A plain module, imported by
name (tests/ has no packages and no nested conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.db import session_scope
from credits.grants import projects
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.jobs import service
from credits.jobs.ended_holds import move_ended_holds
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.models import Job, JobRun
from credits.jobs.reconciler import reconcile
from credits.jobs.runtime import can_checkpoint, pool_nodes
from credits.jobs.scheduler import Policy
from credits.jobs.scheduling import schedule_pass
from credits.jobs.schemas import JobOut, ReconcileOut, SchedulePassOut
from credits.jobs.spec import JobSpec
from credits.ledger import service as ledger
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import project_available, system_account_id
from credits.metering.models import RecordStatus, UsageRecord
from credits.pool import service as pool

SYSTEM = Actor.system("tests")
FLAVOUR = "a100-80gb"
RATE = 2_500_000  # 2.5 credits per GPU-hour
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CAP = 7 * 86400


def cost(gpu_seconds: int) -> int:
    """Micro-credits for GPU-seconds at the world's rate, rounded up."""
    return -(-gpu_seconds * RATE // 3600)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class JobsWorld:
    factory: Callable[[], Session]
    clock: Clock
    executor: SimulatedExecutor
    researcher: Actor
    ops: Actor
    project_id: int
    account_id: int
    policy: Policy = field(default_factory=Policy)

    def spec(self, **overrides: Any) -> JobSpec:
        document: dict[str, Any] = {
            "name": "train",
            "image": "python:3.12",
            "command": ["python", "-c", "print('hi')"],
            "flavour": FLAVOUR,
            "gpus": 2,
            "max_runtime_seconds": 3600,
        }
        return JobSpec.model_validate(document | overrides)

    def submit(
        self, key: str | None = None, duration: float | None = None, **overrides: Any
    ) -> JobOut:
        labels = dict(overrides.pop("labels", {}))
        if duration is not None:
            labels["credits.dev/simulated-duration-s"] = str(duration)
        spec = self.spec(labels=labels, **overrides)
        with self.session() as session:
            return service.submit_job(
                session,
                project_id=self.project_id,
                spec=spec,
                actor=self.researcher,
                max_runtime_cap=CAP,
                pool_nodes=pool_nodes(self.executor),
                checkpointing=can_checkpoint(self.executor),
                idempotency_key=key,
                now=self.clock(),
            )

    def session(self) -> Any:
        return session_scope(self.factory)

    def schedule(self) -> SchedulePassOut:
        move_ended_holds(self.factory, now=self.clock())  # as run_schedule does
        with self.session() as session:
            return schedule_pass(
                session,
                capacity=self.executor.capacity(),
                policy=self.policy,
                half_life_s=7 * 86400.0,
                now=self.clock(),
            )

    def reconcile(self) -> ReconcileOut:
        return reconcile(self.factory, self.executor, clock=self.clock)

    def cycle(self) -> None:
        self.reconcile()
        self.schedule()
        self.reconcile()

    def job(self, job_id: int) -> Job:
        """The job as stored now, detached from its session."""
        with self.session() as session:
            job = session.get_one(Job, job_id)
            session.expunge(job)
            return job

    def runs(self, job_id: int) -> list[JobRun]:
        """The job's runs as stored now, by attempt, detached from their session."""
        with self.session() as session:
            query = select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.attempt)
            runs = list(session.scalars(query))
            session.expunge_all()
            return runs

    def available(self) -> int:
        with self.session() as session:
            return project_available(
                session, project_id=self.project_id, currency=Currency.GPU, now=self.clock()
            )


def _user(session: Session, email: str, *roles: Role) -> Actor:
    create_user(
        session,
        email=email,
        name=email.split("@", 1)[0],
        roles=roles,
        institution="Uni",
        actor=SYSTEM,
    )
    return actor_for_email(session, email)


def build_jobs_world(
    factory: sessionmaker[Session],
    *,
    credits_micro: int = 100_000_000,
    nodes: int = 2,
    gpus_per_node: int = 8,
    clock: Clock | None = None,
) -> JobsWorld:
    clock = clock or Clock()
    with session_scope(factory) as session:
        researcher = _user(session, "pi@example.org", Role.RESEARCHER)
        ops = _user(session, "ops@example.org", Role.OPS)
        project = projects.create_project(
            session, title="Climate", field_of_science="Earth science", actor=researcher
        )
        account = ledger.open_account(
            session,
            code=f"jobs-allocation-{project.id}",
            currency=Currency.GPU,
            project_id=project.id,
            starts_at=START - timedelta(days=1),
            expires_at=START + timedelta(days=365),
            actor=SYSTEM,
        )
        ledger.grant(
            session,
            key=f"jobs-fund-{project.id}",
            from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.GPU),
            to_account_id=account.id,
            amount=credits_micro,
            actor=SYSTEM,
            now=START - timedelta(days=1),
        )
        pool.add_flavour(
            session,
            name=FLAVOUR,
            node_label_value="NVIDIA-A100-SXM4-80GB",
            gpu_memory_gb=80,
            gpus_per_node=gpus_per_node,
            actor=SYSTEM,
        )
        pool.set_rate(
            session,
            flavour=FLAVOUR,
            credits_per_gpu_hour_micro=RATE,
            effective_from=START - timedelta(days=1),
            actor=SYSTEM,
            now=START - timedelta(days=1),
        )
    executor = SimulatedExecutor(
        [NodeCapacity(name=f"gpu-{i}", flavour=FLAVOUR, gpus=gpus_per_node) for i in range(nodes)],
        clock=clock,
        default_duration_s=60.0,
    )
    return JobsWorld(
        factory=factory,
        clock=clock,
        executor=executor,
        researcher=researcher,
        ops=ops,
        project_id=project.id,
        account_id=account.id,
    )


def outside_record(
    project_id: int, record_id: str, amount: int, at: datetime, currency: str = "gpu"
) -> UsageRecord:
    """A pending record from a meter outside the platform: ``amount`` micro-credits as
    credits, written as ingestion stores one (for settlement to take)."""
    return UsageRecord(
        source="meter",
        record_id=record_id,
        job_id=None,
        project_id=project_id,
        currency=currency,
        unit="credit",
        quantity_micro=amount,
        amount_micro=amount,
        started_at=at,
        ended_at=at,
        request_hash="x",
        status=RecordStatus.PENDING.value,
        captured_micro=0,
        overage_micro=0,
    )
