"""What the reconciler asks the executor, one job's call at a time or observing many:
a failure never stops the other jobs' reconcile.

An :class:`ExecutorError` is the executor saying the pool could not be asked (a
transient failure) or refused; any other exception is a fault of the executor or of
the job's data (a full disk on the local executor, a label it cannot read). Both
leave the call to be made again on the next reconcile; the unexpected kind is also
logged with its traceback and reported in ``errors``, so an operator sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from credits.jobs.executors.base import Executor, ExecutorError, Observation, Phase
from credits.jobs.models import JobState
from credits.jobs.schemas import ReconcileOut

logger = logging.getLogger(__name__)


def executor_call(report: ReconcileOut, job_id: int, what: str, call: Callable[[], object]) -> bool:
    """Makes ``call`` (``what`` names it for the log); False when it must be retried."""
    try:
        call()
    except ExecutorError as error:
        logger.warning("%s of job %s will be retried: %s", what, job_id, error)
        return False
    except Exception as error:
        report_unexpected(report, job_id, what, error)
        return False
    return True


def report_unexpected(report: ReconcileOut, job_id: int, what: str, error: Exception) -> None:
    logger.error("%s of job %s failed; it will be retried", what, job_id, exc_info=error)
    report.errors.append(f"{job_id}: {what}: {type(error).__name__}: {error}")


def of_attempt(seen: Observation | None, attempt: int) -> Observation | None:
    """The observation, unless it is of an earlier attempt: an executor reports the
    latest attempt it knows, so an earlier one means it does not know the current one
    (not launched yet, or vanished), which is no observation of it at all."""
    if seen is None or seen.attempt < attempt:
        return None
    return seen


def nothing_new(state: str, attempt: int, seen: Observation | None) -> bool:
    """True when the observation cannot change the job, so no transaction is spent
    on it (a sweep over thousands of running jobs stays cheap). the reconciler's _apply decides all
    the rest under the job's lock."""
    seen = of_attempt(seen, attempt)
    if seen is None:
        return False
    if seen.attempt != attempt:
        return True  # a later attempt than the database's: not this reconcile's to judge
    if seen.phase is Phase.PENDING:
        return seen.started_at is None
    return seen.phase is Phase.RUNNING and state == JobState.RUNNING.value


def has_started(seen: Observation | None, attempt: int) -> bool:
    seen = of_attempt(seen, attempt)
    return seen is not None and (seen.phase is not Phase.PENDING or seen.started_at is not None)


def observe_jobs(
    executor: Executor, report: ReconcileOut, job_ids: list[int]
) -> dict[int, Observation | None]:
    """What the executor says of each job it could be asked about (None: it does not
    know the job); a job it could not be asked about is left out, and is judged on a
    later reconcile, never taken for lost. An unexpected error observing them together
    is retried one job at a time, so only the job the executor cannot read is left
    out."""
    try:
        seen = executor.observe(job_ids)
        return {job_id: seen.get(job_id) for job_id in job_ids}
    except ExecutorError as error:
        logger.warning("observing %d jobs will be retried: %s", len(job_ids), error)
        return {}
    except Exception:
        logger.exception("observing %d jobs together failed; observing one by one", len(job_ids))
    observations: dict[int, Observation | None] = {}
    for job_id in job_ids:

        def observe_one(j: int = job_id) -> None:
            observations[j] = executor.observe([j]).get(j)

        executor_call(report, job_id, "observe", observe_one)
    return observations
