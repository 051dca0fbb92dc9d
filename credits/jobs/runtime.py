"""Wiring jobs to settings: which executor, which policy, and the periodic cycle.

The cycle (a scheduling pass, then a reconcile) is what Celery beat runs as
``jobs.schedule`` and ``jobs.reconcile`` in production, and what the embedded
profile runs in a background thread of ``credits serve``; both call the same
services.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from credits.db import run_in_transaction, utcnow
from credits.jobs import scheduler
from credits.jobs.ended_holds import move_ended_holds
from credits.jobs.errors import PoolUnavailable
from credits.jobs.executors.base import Capacity, Executor, ExecutorError
from credits.jobs.executors.gpus import discover_gpu_slots
from credits.jobs.executors.local import LocalExecutor, LocalSandboxConfig
from credits.jobs.executors.sandbox import SETTING_NAME as SANDBOX_SETTING
from credits.jobs.executors.sandbox import SandboxUnavailable, WorkFolderUnreachable
from credits.jobs.executors.simulated import SimulatedExecutor, simulated_nodes_from_spec
from credits.jobs.passes import RECONCILER, record_pass
from credits.jobs.reconciler import reconcile
from credits.jobs.runtime_class_settings import bounds_from_hours
from credits.jobs.scheduling import schedule_pass
from credits.jobs.schemas import ReconcileOut, SchedulePassOut
from credits.metering.collector import TelemetryCollector
from credits.metering.service import collect_telemetry, settle_all_pending
from credits.settings import ExecutorName, LocalSandbox, Settings, SettingsError

logger = logging.getLogger(__name__)

_executors: dict[tuple[str, str], Executor] = {}
_executors_lock = threading.Lock()


def make_executor(settings: Settings) -> Executor:
    """A new executor as the settings choose it."""
    if settings.executor is ExecutorName.LOCAL:
        return _local_executor(settings)
    if settings.executor is ExecutorName.SIMULATED:
        try:
            nodes = simulated_nodes_from_spec(settings.simulated_nodes)
        except ValueError as error:
            raise SettingsError(f"CREDITS_SIMULATED_NODES: {error}") from error
        return SimulatedExecutor(
            nodes, clock=utcnow, default_duration_s=settings.simulated_job_seconds
        )
    module = importlib.import_module("credits.jobs.executors.kubernetes")
    factory: Callable[[Settings], Executor] = module.executor_from_settings
    return factory(settings)


def _local_executor(settings: Settings) -> LocalExecutor:
    sandbox = LocalSandboxConfig(
        enabled=settings.local_sandbox is LocalSandbox.BWRAP,
        job_uid=settings.local_job_uid,
        job_gid=settings.local_job_gid,
        max_processes=settings.local_job_max_processes,
        max_open_files=settings.local_job_max_open_files,
        offline_flavours=settings.offline_flavours,
        hidden_paths=_platform_paths(settings),
        max_log_bytes=settings.local_job_max_log_mb * 2**20,
    )
    try:
        return LocalExecutor(
            settings.jobs_dir,
            flavour=settings.local_flavour,
            slots=discover_gpu_slots(settings.local_gpu_slots),
            sandbox=sandbox,
        )
    except WorkFolderUnreachable as error:
        raise SettingsError(str(error)) from None
    except SandboxUnavailable as error:
        raise SettingsError(
            f"the local executor cannot sandbox jobs here ({error}); install bubblewrap "
            f"and allow user namespaces, or set {SANDBOX_SETTING}=off to run jobs unsandboxed"
        ) from None


def _platform_paths(settings: Settings) -> tuple[str, ...]:
    """What a job must never see: the var folder, the SQLite files, local storage and
    every secret file a setting names (they may lie under /etc or /opt, which jobs see)."""
    paths = [settings.var_dir, settings.maildir, *_secret_files(settings)]
    for secret in (settings.database_url, settings.broker_url):
        url = secret.get_secret_value()
        if "sqlite:///" in url:
            paths.append(Path(url.split(":///", 1)[1].split("?", 1)[0]).parent)
    if settings.storage_url.startswith("file://"):
        paths.append(Path(settings.storage_url.removeprefix("file://")))
    return tuple(sorted({str(path.resolve()) for path in paths}))


def _secret_files(settings: Settings) -> list[Path]:
    """The files of secrets the settings name: the transparency log's signing key
    and the kubeconfig (the session key file is always under var_dir)."""
    files = [settings.transparency_key_path]
    if settings.kubernetes_kubeconfig is not None:
        files.append(settings.kubernetes_kubeconfig)
    return files


def executor_for(settings: Settings) -> Executor:
    """This process's executor for these settings, built once: the simulated one
    keeps its pool in memory, and every caller in the process must see the same."""
    key = (settings.executor.value, str(settings.var_dir))
    with _executors_lock:
        if key not in _executors:
            _executors[key] = make_executor(settings)
        return _executors[key]


def policy_from_settings(settings: Settings) -> scheduler.Policy:
    return scheduler.Policy(
        ordering=settings.scheduler_policy.value,
        backfill=settings.scheduler_backfill,
        max_moves=settings.scheduler_max_moves,
        class_bounds_s=bounds_from_hours(settings.scheduler_class_bounds_hours),
        class_aging_s=settings.scheduler_class_aging_hours * 3600.0,
    )


def read_capacity(executor: Executor) -> Capacity:
    """What the pool holds now; PoolUnavailable when the executor cannot say."""
    try:
        return executor.capacity()
    except ExecutorError as error:
        raise PoolUnavailable(f"the GPU pool could not be read now: {error}") from error


def pool_nodes(executor: Executor) -> dict[str, tuple[int, int]]:
    """(nodes, GPUs per node) per flavour, for refusing jobs that could never fit."""
    shapes: dict[str, tuple[int, int]] = {}
    for node in executor.capacity().nodes:
        count, per_node = shapes.get(node.flavour, (0, 0))
        shapes[node.flavour] = (count + 1, max(per_node, node.gpus))
    return shapes


def can_checkpoint(executor: Executor) -> bool:
    """Whether the executor can keep a moved job's checkpoint (Kubernetes: only with
    a checkpoint claim); executors that say nothing always can (a folder per job)."""
    return bool(getattr(executor, "can_checkpoint", True))


def run_schedule(
    factory: Callable[[], Session],
    executor: Executor,
    settings: Settings,
    *,
    now: datetime | None = None,
) -> SchedulePassOut:
    capacity = read_capacity(executor)
    policy = policy_from_settings(settings)
    half_life = settings.fairshare_half_life_hours * 3600.0
    move_ended_holds(factory, now=now or utcnow())
    return run_in_transaction(
        factory,
        lambda session: schedule_pass(
            session,
            capacity=capacity,
            policy=policy,
            half_life_s=half_life,
            now=now or utcnow(),
        ),
    )


def reconcile_with(
    factory: Callable[[], Session], executor: Executor, settings: Settings
) -> ReconcileOut:
    """One reconcile with the settings' metering interval and start timeout; a pass
    that ran (not skipped for another) is recorded for the ops health page."""
    started = time.monotonic()
    report = reconcile(
        factory,
        executor,
        interval_s=settings.metering_interval_seconds,
        start_timeout_s=settings.jobs_start_timeout_seconds,
    )
    if not report.skipped:
        record_pass(
            factory,
            RECONCILER,
            finished_at=utcnow(),
            errors=len(report.errors),
            duration_seconds=time.monotonic() - started,
        )
    return report


def run_cycle(
    factory: Callable[[], Session], executor: Executor, settings: Settings
) -> tuple[SchedulePassOut, ReconcileOut]:
    """Reconcile, schedule, reconcile again so that new starts launch at once, then
    settle the usage metered so far."""
    reconcile_with(factory, executor, settings)
    scheduled = run_schedule(factory, executor, settings)
    reconciled = reconcile_with(factory, executor, settings)
    settle_all_pending(factory, batch_size=settings.settlement_batch_size)
    return scheduled, reconciled


class JobsLoop:
    """The embedded profile's scheduler, reconciler, settlement, telemetry and
    chores (mail, expiry, digests, nudges): a daemon thread of ``credits serve``."""

    def __init__(
        self, factory: Callable[[], Session], executor: Executor, settings: Settings
    ) -> None:
        self._factory = factory
        self._executor = executor
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="credits-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        from credits.embedded import Chores  # noqa: PLC0415 - reports import jobs modules

        collector = TelemetryCollector()
        chores = Chores(self._factory, self._settings)
        next_telemetry = 0.0
        while not self._stop.is_set():
            try:
                run_cycle(self._factory, self._executor, self._settings)
                chores.run_due()
                if time.monotonic() >= next_telemetry:
                    collect_telemetry(self._factory, collector, self._settings, self._executor)
                    next_telemetry = time.monotonic() + self._settings.telemetry_interval_seconds
            except (ExecutorError, SettingsError) as error:
                logger.warning("jobs cycle: %s", error)
            except Exception:
                # The loop must outlive one bad cycle; the next one retries.
                logger.exception("jobs cycle failed")
            self._stop.wait(self._settings.scheduler_interval_seconds)
