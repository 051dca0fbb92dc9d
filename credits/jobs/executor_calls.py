"""One job's call to the executor, as the reconciler makes it: a failure never stops
the other jobs' reconcile.

An :class:`ExecutorError` is the executor saying the pool could not be asked (a
transient failure) or refused; any other exception is a fault of the executor or of
the job's data (a full disk on the local executor, a label it cannot read). Both
leave the call to be made again on the next reconcile; the unexpected kind is also
logged with its traceback and reported in ``errors``, so an operator sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from credits.jobs.executors.base import ExecutorError
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
