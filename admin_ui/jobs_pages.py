"""GPU jobs in the browser: submit (with a preview of the hold), list, watch, cancel.

The job page polls two small JSON endpoints through static/live.js: the log
tail and the state, which reloads the page once the job has finished. Its
"Download the whole log" link streams the job's entire output as a file. A job
or project out of the caller's reach is a 404.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import TypedDict, TypeVar

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from sqlalchemy.orm import Session

from admin_ui.confirm import confirmation, confirmed, rehearse
from admin_ui.grants_forms import new_key
from admin_ui.job_form import (
    DEFAULTS,
    FORM_FIELDS,
    JobForm,
    checked_flavour,
    flavour_choices,
    parse_job_form,
    refusal_errors,
    spec_values,
)
from admin_ui.web import (
    actor,
    format_credits,
    login_required,
    render,
    require_role,
    transaction,
)
from credits import formatting as fmt
from credits.api.auth import credits_extension, job_executor, job_submission_limits
from credits.api.jobs import log_response
from credits.db import utcnow
from credits.errors import CreditsError, NotFound
from credits.grants.queries import MAX_PAGE
from credits.grants.schemas import ProjectDetail
from credits.id_text import id_from_text
from credits.identity.access import get_project_for_actor, list_projects_for_actor
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.jobs import service
from credits.jobs.executors.base import ExecutorError
from credits.jobs.log_download import LogUnavailable, check_log_access, open_log_download
from credits.jobs.models import FINAL_STATES, JobState
from credits.jobs.queries import get_job_detail, list_jobs_for_actor
from credits.jobs.schemas import JobDetail, JobOut, JobQuery
from credits.jobs.spec import JobSpec
from credits.ledger.availability import project_availability
from credits.ledger.models import Currency
from credits.metering.energy import MJ_PER_KWH
from credits.metering.models import JobTelemetryRow
from credits.pool.service import list_flavours

blueprint = Blueprint("ui_jobs", __name__)
T = TypeVar("T")
LOG_LINES = 200
FINAL = sorted(state.value for state in FINAL_STATES)


def _or_404(load: Callable[[], T]) -> T:
    try:
        return load()
    except NotFound:
        abort(404)


# Submitting.


def _form_page(
    project: ProjectDetail,
    form: JobForm,
    *,
    error: str | None = None,
    estimate: service.SubmissionQuote | None = None,
    copied_from: str | None = None,
    fresh: bool = False,
    status: int = 200,
) -> ResponseReturnValue:
    """The form; ``fresh`` (a new, empty form) pre-selects the first usable flavour,
    otherwise the flavour in ``form.values`` stays selected while it is usable."""
    with transaction() as db:
        choices = flavour_choices(db, utcnow())
        later = project_availability(db, project.id).get(Currency.GPU)
    page = render(
        "jobs/new.html",
        gpu_later=later,
        project=project,
        values=form.values,
        errors=form.errors,
        error=error,
        choices=choices,
        checked_flavour=checked_flavour(
            choices, None if fresh else form.values.get("flavour", "").strip()
        ),
        preview=estimate,
        # One key per rendering: a double click on Submit, or a browser's resend,
        # submits (and holds for) the job once.
        submit_key=new_key(),
        copied_from=copied_from,
        cap_minutes=credits_extension().settings.jobs_max_runtime_seconds // 60,
    )
    return page, status


@blueprint.get("/projects/<int:project_id>/jobs/new")
@login_required
def new_job(project_id: int) -> ResponseReturnValue:
    me = actor()
    copy = request.args.get("copy", "")
    values = {name: DEFAULTS.get(name, "") for name in FORM_FIELDS}
    with transaction() as db:
        project = _or_404(lambda: get_project_for_actor(db, me, project_id))
        if copy:
            values = spec_values(_copied_spec(db, me, copy, project_id))
    return _form_page(project, JobForm(values=values), copied_from=copy or None, fresh=not copy)


def _copied_spec(db: Session, me: Actor, job_id: str, project_id: int) -> JobSpec:
    """ "Copy to new job": the spec of a job of this project that the caller may read."""
    number = id_from_text(job_id)
    if number is None:
        abort(404)
    detail = _or_404(lambda: get_job_detail(db, me, number))
    if detail.project_id != project_id:
        abort(404)
    return detail.spec


@blueprint.post("/projects/<int:project_id>/jobs/new")
@login_required
def submit_job(project_id: int) -> ResponseReturnValue:
    me = actor()
    with transaction() as db:
        project = _or_404(lambda: get_project_for_actor(db, me, project_id))
    form = parse_job_form(request.form)
    if form.spec is None:
        return _form_page(project, form, error=_FIX, status=422)
    spec = form.spec
    try:
        limits = job_submission_limits()
        submission = _Submission(
            project_id=project_id,
            spec=spec,
            actor=me,
            max_runtime_cap=limits.max_runtime_cap,
            pool_nodes=limits.pool_nodes,
            image_registries=limits.image_registries,
            checkpointing=limits.checkpointing,
        )
        if request.form.get("action") != "submit":
            # The preview makes every check the submission makes, by the same service.
            with transaction() as db:
                estimate = service.quote_submission(db, **submission)
            return _form_page(project, form, estimate=estimate)
        with transaction() as db:
            job = service.submit_job(
                db, **submission, idempotency_key=request.form.get("key", "").strip() or None
            )
    except CreditsError as refusal:
        form.errors, message = refusal_errors(refusal)
        return _form_page(project, form, error=message, status=422)
    except ValidationError as invalid:  # a service re-validating what it stores
        detail = "; ".join(fmt.validation_message(problem) for problem in invalid.errors())
        return _form_page(
            project, form, error=f"Not valid: {detail}. Nothing was submitted.", status=422
        )
    flash(f"Job {job.id} submitted: {fmt.money(job.hold_micro, 'gpu')} held.")
    return redirect(url_for(".job_detail", job_id=job.id))


_FIX = "Nothing was submitted: correct the marked fields."


class _Submission(TypedDict):
    """What the preview and the submission are both called with."""

    project_id: int
    spec: JobSpec
    actor: Actor
    max_runtime_cap: int
    pool_nodes: dict[str, tuple[int, int]]
    image_registries: tuple[str, ...]
    checkpointing: bool


# Listing and watching.


@blueprint.get("/jobs")
@login_required
def list_jobs() -> ResponseReturnValue:
    me = require_role(Role.RESEARCHER, Role.OPS)
    args = {k: v for k, v in request.args.items() if v.strip() and k in _QUERY_KEYS}
    error = None
    try:
        query = JobQuery.model_validate(args)
    except ValidationError:
        query = JobQuery()
        error = "Those filters are not valid; showing all jobs."
    with transaction() as db:
        page = list_jobs_for_actor(db, me, query.model_copy(update={"limit": 100}))
        projects = list_projects_for_actor(db, me, limit=MAX_PAGE).items
        flavours = [flavour.name for flavour in list_flavours(db)]
    titles = {project.id: project.title for project in projects}
    items = sorted(page.items, key=lambda job: job.id, reverse=True)
    return render(
        "jobs/list.html",
        jobs=items,
        next_cursor=page.next_cursor,
        query=query,
        error=error,
        projects=projects,
        titles=titles,
        flavours=flavours,
        states=[state.value for state in JobState],
    )


_QUERY_KEYS = frozenset({"project", "state", "flavour", "cursor"})


@blueprint.get("/jobs/<int:job_id>")
@login_required
def job_detail(job_id: int) -> ResponseReturnValue:
    me = actor()
    with transaction() as db:
        detail = _or_404(lambda: get_job_detail(db, me, job_id))
        project = get_project_for_actor(db, me, detail.project_id)
        telemetry = db.get(JobTelemetryRow, job_id)
        samples = telemetry.samples if telemetry is not None else 0
        util = telemetry.gpu_util_sum / samples if telemetry is not None and samples else None
        kwh = telemetry.energy_mj / MJ_PER_KWH if telemetry is not None else None
    logs = _logs(job_id)
    return render(
        "jobs/detail.html",
        job=detail,
        project=project,
        command=shlex.join([*detail.spec.command, *detail.spec.args]),
        live=_live(detail),
        state_url=url_for(".job_state", job_id=job_id),
        failure=_failure(detail),
        log_text=_log_text(detail, logs),
        isolation=_isolation(job_id),
        log_lines=LOG_LINES,
        final=detail.state in FINAL_STATES,
        final_states=",".join(FINAL),
        util=util,
        kwh=kwh,
        samples=samples,
        can_cancel=detail.state not in FINAL_STATES and detail.cancel_requested_at is None,
    )


def _logs(job_id: int) -> str:
    try:
        return job_executor().logs(job_id, tail_lines=LOG_LINES)
    except ExecutorError:
        return ""


def _isolation(job_id: int) -> str | None:
    try:
        return job_executor().isolation(job_id)
    except ExecutorError:
        return None


def _detail(job_id: int) -> JobDetail:
    me = actor()
    with transaction() as db:
        return _or_404(lambda: get_job_detail(db, me, job_id))


def _live(detail: JobDetail) -> dict[str, str]:
    """The parts of the job page that change while it runs, as its page shows them."""
    return {
        "state": detail.state.value,
        "state_text": fmt.status(detail.state.value),
        "started": fmt.when(detail.started_at),
    }


def _failure(detail: JobDetail) -> str | None:
    """Why a failed or timed-out job ended, from its record and else its timeline."""
    if detail.state not in {JobState.FAILED, JobState.TIMED_OUT}:
        return None
    why = detail.reason or next((e.reason for e in reversed(detail.events) if e.reason), None)
    code = "" if detail.exit_code is None else f" with exit code {detail.exit_code}"
    ended = "timed out" if detail.state is JobState.TIMED_OUT else "failed"
    if why is None:
        return f"The job {ended}{code}; no reason was recorded."
    return f"The job {ended}{code}: {why.strip().rstrip('.')}."


def _log_text(detail: JobDetail, logs: str) -> str:
    if logs:
        return logs
    if detail.state in FINAL_STATES:
        failure = _failure(detail)
        return f"No output. {failure}" if failure else "The job wrote no output."
    return "No output yet."


@blueprint.get("/jobs/<int:job_id>/state.json")
@login_required
def job_state(job_id: int) -> ResponseReturnValue:
    """The job's state and, rendered as the page renders them, its start and timeline."""
    detail = _detail(job_id)
    timeline = render_template("jobs/timeline.html", job=detail)
    return _live(detail) | {"final": detail.state.is_final, "timeline": timeline}


@blueprint.get("/jobs/<int:job_id>/logs.json")
@login_required
def job_logs(job_id: int) -> ResponseReturnValue:
    detail = _detail(job_id)
    return {"state": detail.state.value, "text": _log_text(detail, _logs(job_id))}


@blueprint.get("/jobs/<int:job_id>/output.log")
@login_required
def download_log(job_id: int) -> ResponseReturnValue:
    """The job's whole output as a file, streamed; the same rule as the job page."""
    me = actor()
    with transaction() as db:
        _or_404(lambda: check_log_access(db, me, job_id))
    try:
        download = open_log_download(job_executor(), job_id)
    except LogUnavailable as error:
        return render("error.html", title="Log unavailable", message=f"{error} Try again."), 503
    return log_response(download)


@blueprint.post("/jobs/<int:job_id>/cancel")
@login_required
def cancel_job(job_id: int) -> ResponseReturnValue:
    me = actor()
    # A refusal other than "not found" (the job finished meanwhile: a 409) is an error page.
    try:
        if not confirmed():
            would = rehearse(lambda db: service.cancel_job(db, job_id=job_id, actor=me))
            return _confirm_cancel(would)
        with transaction() as db:
            job = service.cancel_job(db, job_id=job_id, actor=me)
    except NotFound:
        abort(404)
    if job.state is JobState.CANCELLED:
        flash(f"Job {job_id} was cancelled; its held credits were released.")
    else:
        flash(f"Cancelling job {job_id}: it will be charged only for what it ran.")
    return redirect(url_for(".job_detail", job_id=job_id))


def _confirm_cancel(would: JobOut) -> ResponseReturnValue:
    held = f"{format_credits(would.hold_micro)} credits"
    if would.state is JobState.CANCELLED:
        effect = (
            f"cancel job {would.id}, {would.name}, before it starts."
            f" Its hold of {held} is released."
        )
    else:
        effect = (
            f"cancel job {would.id}, {would.name}, which is {would.state.value}. It is stopped,"
            f" charged for what it ran, and the rest of its hold of {held} is released."
        )
    return confirmation(
        title=f"Cancel job {would.id}?",
        effect=effect,
        warning="This cannot be undone: to run it again, submit a new job.",
        confirm_label="Cancel the job",
        back=url_for(".job_detail", job_id=would.id),
    )
