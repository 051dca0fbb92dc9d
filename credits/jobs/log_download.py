"""A job's whole log for a download: who may read it, and opening it.

The API, the portal and the CLI answer a download the same way. The caller must
see the job's project (otherwise :class:`JobNotFound`, a 404 like every job
read). The executor finds and opens the log before anything is sent, so a pool
that cannot be reached is a clear 503 rather than a file cut short; the chunks
are then read one at a time while they are sent, never the whole log at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.orm import Session

from credits.errors import CreditsError
from credits.identity.actor import Actor
from credits.jobs.executors.base import Executor, ExecutorError
from credits.jobs.queries import load_job_for_actor

LOG_MEDIA_TYPE = "text/plain; charset=utf-8"


class LogUnavailable(CreditsError):
    status = 503
    slug = "log-unavailable"
    title = "The job's log cannot be read now"


@dataclass(frozen=True, slots=True)
class LogDownload:
    """An opened log: its chunks, oldest first, and the file name to save it as."""

    job_id: int
    chunks: Iterator[bytes]

    @property
    def filename(self) -> str:
        return f"job-{self.job_id}-output.log"

    @property
    def content_disposition(self) -> str:
        return f'attachment; filename="{self.filename}"'


def check_log_access(session: Session, actor: Actor, job_id: int) -> None:
    """Raises JobNotFound unless the actor may see the job (and so read its log)."""
    load_job_for_actor(session, actor, job_id)


def tail_log(executor: Executor, job_id: int, tail_lines: int) -> str:
    """The last ``tail_lines`` lines of the job's log; call once the caller may read
    the job. LogUnavailable when the executor cannot reach the log now."""
    try:
        return executor.logs(job_id, tail_lines=tail_lines)
    except ExecutorError as error:
        raise LogUnavailable(f"the log of job {job_id} cannot be read now: {error}") from error


def open_log_download(executor: Executor, job_id: int) -> LogDownload:
    """The job's whole log, opened; call once :func:`check_log_access` has passed
    (outside the transaction: a cluster's answer may take a while). LogUnavailable
    when the executor cannot reach the log now."""
    try:
        chunks = executor.log_stream(job_id)
    except ExecutorError as error:
        raise LogUnavailable(f"the log of job {job_id} cannot be read now: {error}") from error
    return LogDownload(job_id, chunks)
