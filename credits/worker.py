"""The Celery app factory and its thin tasks.

Nothing is built at import: ``make_celery(settings)`` builds an app, and the
``celery`` command line finds one through this module's ``app`` attribute,
built from the environment on first access::

    celery -A credits.worker worker --loglevel=INFO
    celery -A credits.worker beat

A task takes ids and plain values, opens one ``session_scope`` and calls one
idempotent service; it may run twice (``task_acks_late``) and the service
makes that harmless.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging
from sqlalchemy.orm import Session, sessionmaker

from credits.db import make_engine, session_scope, utcnow
from credits.grants.allocations import expire_allocations
from credits.identity.actor import Actor
from credits.jobs.executors.base import Executor
from credits.notifications.events import queue_expiry_digests, queue_low_balance_notices
from credits.notifications.mail import Mailer, make_mailer
from credits.notifications.service import TASK_SENDER, send_pending
from credits.observability.logs import configure_logging
from credits.observability.tasks import connect_task_signals
from credits.settings import Settings, load_settings

SEND_NOTIFICATIONS = "credits.notifications.send_pending"
QUEUE_EXPIRY_DIGESTS = "credits.notifications.queue_expiry_digests"
QUEUE_LOW_BALANCE_NOTICES = "credits.notifications.queue_low_balance_notices"
EXPIRE_ALLOCATIONS = "credits.allocations.expire"
SCHEDULE_JOBS = "jobs.schedule"
RECONCILE_JOBS = "jobs.reconcile"
SETTLE_USAGE = "metering.settle"
COLLECT_TELEMETRY = "metering.collect_telemetry"
QUEUE_UNDERUSED_NUDGES = "reports.nudges.underused"
QUEUE_IDLE_GPU_NUDGES = "reports.nudges.idle_gpus"
SYNC_DOIS = "datasets.sync_dois"
RELEASE_LEASES = "labelling.release_leases"
SYNC_LABEL_STUDIO = "labelling.sync_label_studio"
INTEGRATE_LOG = "transparency.integrate"
REMOVE_STALE_UPLOADS = "storage.remove_stale_uploads"
INTEGRATE_INTERVAL = timedelta(seconds=30)
SWEEPER = Actor.system("allocations-sweep")
SEND_INTERVAL = timedelta(minutes=1)


class WorkerResources:
    """What tasks share in one worker process, built on first use (after the fork)."""

    def __init__(
        self,
        app: Celery,
        settings: Settings,
        *,
        session_factory: sessionmaker[Session] | None = None,
        mailer: Mailer | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self._session_factory = session_factory
        self._mailer = mailer
        self._executor = executor

    @property
    def session_factory(self) -> sessionmaker[Session]:
        if self._session_factory is None:
            engine = make_engine(
                self.settings.database_url.get_secret_value(),
                sqlite_busy_timeout_ms=self.settings.sqlite_busy_timeout_ms,
                pool_size=self.settings.database_pool_size,
            )
            self._session_factory = sessionmaker(
                bind=engine, expire_on_commit=False, info={TASK_SENDER: task_sender(self.app)}
            )
        return self._session_factory

    @property
    def mailer(self) -> Mailer:
        if self._mailer is None:
            self._mailer = make_mailer(self.settings)
        return self._mailer

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            from credits.jobs.runtime import executor_for  # noqa: PLC0415 - after the fork

            self._executor = executor_for(self.settings)
        return self._executor


def task_sender(app: Celery) -> Callable[[], None]:
    """A zero-argument callable that asks a worker to run the notification sender.

    Put it in ``session.info[TASK_SENDER]`` (``sessionmaker(info=...)``) and
    enqueued notifications are sent right after their transaction commits.
    """

    def send() -> None:
        app.tasks[SEND_NOTIFICATIONS].delay()

    return send


def register_notification_tasks(app: Celery, resources: WorkerResources) -> None:
    @app.task(name=SEND_NOTIFICATIONS, shared=False)
    def send_notifications(limit: int = 100) -> dict[str, list[int]]:
        # Its own short transactions: none is open while the mail server answers.
        report = send_pending(
            resources.session_factory,
            mailer=resources.mailer,
            limit=limit,
            mail_from=resources.settings.smtp_from,
        )
        return report.model_dump()

    @app.task(name=QUEUE_EXPIRY_DIGESTS, shared=False)
    def expiry_digests() -> int:
        with session_scope(resources.session_factory) as session:
            return queue_expiry_digests(session, now=utcnow())

    @app.task(name=QUEUE_LOW_BALANCE_NOTICES, shared=False)
    def low_balance_notices() -> int:
        with session_scope(resources.session_factory) as session:
            return queue_low_balance_notices(session, now=utcnow())


def register_grants_tasks(app: Celery, resources: WorkerResources) -> None:
    @app.task(name=EXPIRE_ALLOCATIONS, shared=False)
    def expire_ended_allocations() -> list[int]:
        """The expiry sweep; a second run in the same state moves nothing."""
        with session_scope(resources.session_factory) as session:
            return [allocation.id for allocation in expire_allocations(session, actor=SWEEPER)]


def register_jobs_tasks(app: Celery, resources: WorkerResources) -> None:
    from credits.jobs.runtime import reconcile_with, run_schedule  # noqa: PLC0415

    @app.task(name=SCHEDULE_JOBS, shared=False)
    def schedule_jobs() -> list[int]:
        """One scheduling pass; returns the ids of the jobs it started. Passes are
        serialised in the database, so two at once start nothing twice."""
        started = run_schedule(resources.session_factory, resources.executor, resources.settings)
        if started.started:
            app.tasks[RECONCILE_JOBS].delay()
        return started.started

    @app.task(name=RECONCILE_JOBS, shared=False)
    def reconcile_jobs() -> dict[str, Any]:
        """One reconcile: launch, stop, observe, meter, settle finished jobs, release;
        safe to run twice or at once."""
        report = reconcile_with(resources.session_factory, resources.executor, resources.settings)
        if report.metered:
            app.tasks[SETTLE_USAGE].delay()
        return report.model_dump()


def register_metering_tasks(app: Celery, resources: WorkerResources) -> None:
    from credits.metering.collector import TelemetryCollector  # noqa: PLC0415
    from credits.metering.service import collect_telemetry, settle_all_pending  # noqa: PLC0415

    collector = TelemetryCollector()

    @app.task(name=COLLECT_TELEMETRY, shared=False)
    def collect_gpu_telemetry() -> int:
        """Scrapes DCGM exporters (or NVML on this host); telemetry feeds reports and
        nudges, never charges."""
        return collect_telemetry(
            resources.session_factory, collector, resources.settings, resources.executor
        )

    @app.task(name=SETTLE_USAGE, shared=False)
    def settle_usage() -> dict[str, int]:
        """Settles pending usage records in batches; concurrent runs take different
        records (SKIP LOCKED) and a record is charged once."""
        report = settle_all_pending(
            resources.session_factory, batch_size=resources.settings.settlement_batch_size
        )
        return {
            "records": report.records,
            "captured_micro": report.captured_micro,
            "overage_micro": report.overage_micro,
        }


def register_reports_tasks(app: Celery, resources: WorkerResources) -> None:
    from credits.reports import nudges  # noqa: PLC0415 - keeps imports light

    @app.task(name=QUEUE_UNDERUSED_NUDGES, shared=False)
    def underused_nudges() -> int:
        """Allocations forecast to expire mostly unused; deduplicated, safe to rerun."""
        with session_scope(resources.session_factory) as session:
            return nudges.queue_underused_allocations(session, now=utcnow())

    @app.task(name=QUEUE_IDLE_GPU_NUDGES, shared=False)
    def idle_gpu_nudges() -> int:
        """Jobs whose GPUs idled, from telemetry; deduplicated, safe to rerun."""
        with session_scope(resources.session_factory) as session:
            return nudges.queue_idle_gpu_notices(
                session, now=utcnow(), idle_percent=resources.settings.idle_gpu_util_percent
            )


def register_datasets_tasks(app: Celery, resources: WorkerResources) -> None:
    """The DOI sweep, registered only when DOIs are configured (off by default)."""
    from credits.datasets.doi import doi_registrar_from_settings, sync_dois  # noqa: PLC0415

    registrar = doi_registrar_from_settings(resources.settings)
    if registrar is None:
        return

    @app.task(name=SYNC_DOIS, shared=False)
    def sync_pending_dois() -> dict[str, Any]:
        """Tells DataCite what it missed; each DOI's failure is kept on its row."""
        with session_scope(resources.session_factory) as session:
            report = sync_dois(session, registrar)
        return {"done": report.done, "failed": report.failed, "pending": report.pending}


def register_storage_tasks(app: Celery, resources: WorkerResources) -> None:
    from credits.storage.tidy import remove_stale_uploads  # noqa: PLC0415

    @app.task(name=REMOVE_STALE_UPLOADS, shared=False)
    def remove_stale() -> int:
        """Uploads left unfinished for a day, and temporary objects a crash left."""
        return remove_stale_uploads(resources.settings)


def register_labelling_tasks(app: Celery, resources: WorkerResources) -> None:
    """The Label Studio sweep, registered only when Label Studio is configured."""
    from credits.labelling.label_studio import label_studio_client_from_settings  # noqa: PLC0415
    from credits.labelling.label_studio_loop import sweep_with_settings  # noqa: PLC0415

    client = label_studio_client_from_settings(resources.settings)
    if client is None:
        return

    @app.task(name=SYNC_LABEL_STUDIO, shared=False)
    def sync_label_studio() -> dict[str, Any]:
        """Places waiting orders in Label Studio and records completed annotations; each
        order commits on its own and a failing one is reported, not raised."""
        report = sweep_with_settings(resources.session_factory, client, resources.settings)
        return {
            "placed": report.placed,
            "recorded": report.recorded,
            "failed": report.failed,
        }


def register_labelling_queue_tasks(app: Celery, resources: WorkerResources) -> None:
    from credits.labelling.queue import release_expired  # noqa: PLC0415

    @app.task(name=RELEASE_LEASES, shared=False)
    def release_leases() -> int:
        """Gives the items of annotators' lapsed leases back to their queues."""
        with session_scope(resources.session_factory) as session:
            return release_expired(session, now=utcnow())


def register_transparency_tasks(app: Celery, resources: WorkerResources) -> None:
    from credits.transparency.integrator import integrate_all, summary  # noqa: PLC0415

    @app.task(name=INTEGRATE_LOG, shared=False)
    def integrate_log() -> dict[str, Any]:
        """Gives committed audit rows their log indexes and signs a checkpoint; one
        integrator at a time (an advisory lock), so overlapping runs skip."""
        return summary(integrate_all(resources.session_factory, resources.settings))


# Each domain with tasks adds its register function here.
TASK_REGISTRARS: tuple[Callable[[Celery, WorkerResources], None], ...] = (
    register_notification_tasks,
    register_grants_tasks,
    register_jobs_tasks,
    register_metering_tasks,
    register_reports_tasks,
    register_datasets_tasks,
    register_storage_tasks,
    register_labelling_queue_tasks,
    register_labelling_tasks,
    register_transparency_tasks,
)


def beat_schedule(settings: Settings, registered: set[str]) -> dict[str, dict[str, Any]]:
    """Periodic work; an entry whose task is not registered yet is left out."""
    daily = settings.notification_digest_hour
    jobs_interval = timedelta(seconds=settings.scheduler_interval_seconds)
    schedule: dict[str, dict[str, Any]] = {
        "send-notifications": {"task": SEND_NOTIFICATIONS, "schedule": SEND_INTERVAL},
        "schedule-jobs": {"task": SCHEDULE_JOBS, "schedule": jobs_interval},
        "reconcile-jobs": {"task": RECONCILE_JOBS, "schedule": jobs_interval},
        "settle-usage": {"task": SETTLE_USAGE, "schedule": jobs_interval},
        "collect-telemetry": {
            "task": COLLECT_TELEMETRY,
            "schedule": timedelta(seconds=settings.telemetry_interval_seconds),
        },
        "expire-allocations": {"task": EXPIRE_ALLOCATIONS, "schedule": crontab(minute=5)},
        "expiry-digests": {
            "task": QUEUE_EXPIRY_DIGESTS,
            "schedule": crontab(hour=daily, minute=0),
        },
        "low-balance-notices": {
            "task": QUEUE_LOW_BALANCE_NOTICES,
            "schedule": crontab(hour=daily, minute=10),
        },
        "underused-nudges": {
            "task": QUEUE_UNDERUSED_NUDGES,
            "schedule": crontab(hour=daily, minute=20),
        },
        "idle-gpu-nudges": {
            "task": QUEUE_IDLE_GPU_NUDGES,
            "schedule": crontab(hour=daily, minute=30),
        },
        "sync-dois": {"task": SYNC_DOIS, "schedule": timedelta(minutes=5)},
        "release-leases": {"task": RELEASE_LEASES, "schedule": timedelta(minutes=5)},
        "sync-label-studio": {"task": SYNC_LABEL_STUDIO, "schedule": timedelta(minutes=2)},
        "integrate-log": {"task": INTEGRATE_LOG, "schedule": INTEGRATE_INTERVAL},
        "remove-stale-uploads": {"task": REMOVE_STALE_UPLOADS, "schedule": crontab(minute=15)},
    }
    return {name: entry for name, entry in schedule.items() if entry["task"] in registered}


def make_celery(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    mailer: Mailer | None = None,
    executor: Executor | None = None,
) -> Celery:
    """A Celery app on ``settings.broker_url`` with every task and the beat schedule.

    ``session_factory``, ``mailer`` and ``executor`` replace the ones built from
    settings (tests).
    """
    app = Celery("credits", set_as_current=False)
    app.conf.update(
        broker_url=settings.broker_url.get_secret_value(),
        task_default_queue=settings.task_queue,
        broker_connection_retry_on_startup=True,
        task_always_eager=settings.task_always_eager,
        task_eager_propagates=True,
        task_ignore_result=True,
        # Tasks are idempotent, so a task lost with its worker is run again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="UTC",
        enable_utc=True,
    )
    resources = WorkerResources(
        app, settings, session_factory=session_factory, mailer=mailer, executor=executor
    )
    for register in TASK_REGISTRARS:
        register(app, resources)
    app.conf.beat_schedule = beat_schedule(settings, set(app.tasks))
    # A task sent during a request carries its id; the worker logs like the web tier.
    connect_task_signals()
    connect_worker_logging(settings)
    return app


def connect_worker_logging(settings: Settings) -> None:
    """Celery's worker and beat log through credits/observability/logs.py (a receiver
    of ``setup_logging`` stops Celery configuring the root logger itself)."""

    def configure(loglevel: int | str | None = None, **_: Any) -> None:
        configure_logging(settings, level=loglevel)

    setup_logging.connect(configure, weak=False, dispatch_uid="credits.worker.logging")


@functools.cache
def celery_app() -> Celery:
    """The app of this process, from the environment's settings, built once."""
    return make_celery(load_settings())


def __getattr__(name: str) -> Celery:
    # `celery -A credits.worker` reads `app`; building it lazily keeps imports free
    # of settings, engines and brokers.
    if name == "app":
        return celery_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
