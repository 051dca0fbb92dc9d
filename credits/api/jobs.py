"""GPU job routes: submit into a project, list and read jobs, tail or download logs, cancel.

A submission holds credits for the job's worst case (GPUs x max runtime x the
flavour's rate in force) in the same transaction that queues it; without
enough credits it is a 402 problem naming ``required`` and ``available``.
It needs an ``Idempotency-Key`` header: a retried submission returns the first
job (200), also when the retry races the first request.
"""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from credits.api.answers import json_answer
from credits.api.auth import (
    current_actor,
    job_executor,
    job_submission_limits,
    session_factory,
)
from credits.api.openapi import operation
from credits.api.paging import next_page_link
from credits.api.parsing import NoInput, idempotency_key, json_body, optional_json_body
from credits.db import read_connection, run_in_transaction, session_scope
from credits.identity.access import require_actor, require_scope
from credits.identity.actor import Actor
from credits.identity.models import Scope
from credits.jobs import log_download, queries, service
from credits.jobs.runtime import read_capacity
from credits.jobs.schemas import JobDetail, JobLogs, JobOut, JobPage, JobQuery, PoolStatus
from credits.jobs.spec import JobSpec

blueprint = Blueprint("jobs", __name__, url_prefix="/api/v1")

MAX_TAIL_LINES = 10_000


class LogQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tail: int = Field(default=200, ge=1, le=MAX_TAIL_LINES, description="lines from the end")


def _caller(scope: Scope) -> Actor:
    actor = require_actor(current_actor())
    require_scope(actor, scope)
    return actor


@blueprint.post("/projects/<int:project_id>/jobs")
@operation(
    "Submit a GPU job",
    body=JobSpec,
    response=JobOut,
    status=201,
    idempotency_key=True,
    replay_status=200,
    problems=(400, 402, 403, 404, 409, 415, 422, 503),
)
def submit_job(project_id: int) -> ResponseReturnValue:
    """Validates the JobSpec, holds credits for its worst case and queues it. A
    replay of an ``Idempotency-Key`` answers 200 with the first job."""
    actor = _caller(Scope.WRITE)
    key = idempotency_key("submitting a job")
    spec = json_body(JobSpec)
    limits = job_submission_limits()
    job = run_in_transaction(
        session_factory(),
        lambda session: service.submit_job(
            session,
            project_id=project_id,
            spec=spec,
            actor=actor,
            max_runtime_cap=limits.max_runtime_cap,
            pool_nodes=limits.pool_nodes,
            image_registries=limits.image_registries,
            checkpointing=limits.checkpointing,
            idempotency_key=key,
        ),
    )
    headers = {"Location": url_for(".get_job", job_id=job.id)}
    return job.model_dump(mode="json"), 200 if job.replayed else 201, headers


@blueprint.get("/jobs")
@operation("List jobs", response=JobPage, query=JobQuery, problems=(403,))
def list_jobs() -> ResponseReturnValue:
    """Jobs of the projects the caller may see, by id, filtered by project, state and flavour."""
    actor = _caller(Scope.READ)
    query = JobQuery.model_validate(request.args.to_dict())
    with read_connection(session_factory()) as connection:
        page = queries.list_jobs_for_actor(connection, actor, query)
    return json_answer(page, headers=next_page_link(query, cursor=page.next_cursor))


@blueprint.get("/jobs/<int:job_id>")
@operation("Get a job", response=JobDetail, problems=(403, 404))
def get_job(job_id: int) -> ResponseReturnValue:
    """The job with its spec, state timeline (events) and runs; charges in micro-credits."""
    actor = _caller(Scope.READ)
    with session_scope(session_factory()) as session:
        detail = queries.get_job_detail(session, actor, job_id)
    return detail.model_dump(mode="json")


@blueprint.get("/jobs/<int:job_id>/logs")
@operation("Tail a job's logs", response=JobLogs, query=LogQuery, problems=(403, 404, 503))
def job_logs(job_id: int) -> ResponseReturnValue:
    """The last ``tail`` lines of the job's output, from its executor; 503 when the
    executor cannot reach the log now."""
    actor = _caller(Scope.READ)
    query = LogQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        queries.load_job_for_actor(session, actor, job_id)
    text = log_download.tail_log(job_executor(), job_id, query.tail)
    return JobLogs(job_id=job_id, tail_lines=query.tail, text=text).model_dump(mode="json")


@blueprint.get("/jobs/<int:job_id>/logs/download")
@operation(
    "Download a job's whole log",
    media_type="text/plain",
    headers=(("Content-Disposition", 'attachment; filename="job-<id>-output.log"'),),
    problems=(403, 404, 503),
)
def download_job_logs(job_id: int) -> ResponseReturnValue:
    """The job's whole output (its latest attempt's) as a text file, streamed as it is
    read; a running job's log as far as it goes now. 503 when its executor cannot
    reach the log now."""
    actor = _caller(Scope.READ)
    with session_scope(session_factory()) as session:
        log_download.check_log_access(session, actor, job_id)
    return log_response(log_download.open_log_download(job_executor(), job_id))


def log_response(download: log_download.LogDownload) -> Response:
    """The opened log as a streamed ``text/plain`` attachment (the portal answers the
    same): each chunk is read from the executor as it is sent."""
    return Response(
        download.chunks,
        content_type=log_download.LOG_MEDIA_TYPE,
        headers={"Content-Disposition": download.content_disposition},
    )


@blueprint.post("/jobs/<int:job_id>/cancel")
@operation(
    "Cancel a job",
    body=NoInput,
    body_required=False,
    response=JobOut,
    problems=(403, 404, 409),
)
def cancel_job(job_id: int) -> ResponseReturnValue:
    """A queued job is cancelled at once and its hold voided; a starting or running
    one is stopped by the executor and charged for what ran. A finished job is a 409."""
    actor = _caller(Scope.WRITE)
    optional_json_body(NoInput)
    with session_scope(session_factory()) as session:
        job = service.cancel_job(session, job_id=job_id, actor=actor)
    return job.model_dump(mode="json")


@blueprint.get("/pool/status")
@operation("Pool capacity and queue", response=PoolStatus, problems=(403, 503))
def pool_status() -> ResponseReturnValue:
    """Nodes, GPUs, GPUs in use and free, and the queue, per flavour; 503 when the
    pool cannot be read now."""
    _caller(Scope.READ)
    executor = job_executor()
    capacity = read_capacity(executor)
    with session_scope(session_factory()) as session:
        status = queries.pool_status(session, capacity, executor=executor.name)
    return status.model_dump(mode="json")
