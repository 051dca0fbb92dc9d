"""``credits jobs``: ops look at, cancel and read the logs of GPU jobs; run the cycle by hand."""

from __future__ import annotations

from functools import partial

import click
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from credits import formatting as fmt
from credits.cli_support import (
    LIMIT_OPTION,
    ROW_ID,
    all_pages,
    at_most,
    cli_session_factory,
    cli_settings,
    cli_transaction,
    exact_duration,
    fail,
    reports_errors,
    require_migrated_database,
)
from credits.identity.access import CLI_READER
from credits.identity.service import actor_for_email
from credits.jobs import log_download, queries, service
from credits.jobs.executors.base import Executor
from credits.jobs.models import JobState
from credits.jobs.runtime import executor_for, read_capacity, reconcile_with, run_schedule
from credits.jobs.schemas import MAX_PAGE, JobOut, JobPage, JobQuery, PlacementOut, PoolStatus
from credits.settings import ExecutorName


def cli_executor() -> Executor:
    """The executor of this invocation (tests may place their own in ``obj["executor"]``)."""
    obj = click.get_current_context().find_root().obj or {}
    executor = obj.get("executor")
    if isinstance(executor, Executor):
        return executor
    return executor_for(cli_settings())


def _refuse_a_simulated_pool(command: str) -> None:
    """Refuses when this invocation would build its own simulated executor: that pool
    lives in the server's (or worker's) memory, and one made here knows no job, so a
    reconcile would fail and settle every running job. An executor a test placed in
    ``obj`` is the pool itself and is used."""
    obj = click.get_current_context().find_root().obj or {}
    if isinstance(obj.get("executor"), Executor):
        return
    if cli_settings().executor is ExecutorName.SIMULATED:
        fail(
            f"`credits {command}` cannot run with CREDITS_EXECUTOR=simulated: the simulated "
            "pool lives only inside the server or worker process, and one made here knows "
            "no jobs; let the server's own loop run it, or use the local or kubernetes executor"
        )


@click.group()
def jobs() -> None:
    """GPU jobs: list, show, cancel, logs; run a scheduling pass or a reconcile by hand."""


@jobs.command("list")
@click.option("--project", type=ROW_ID, help="Only this project's jobs.")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="Only this state.")
@click.option("--flavour", help="Only this GPU flavour.")
@LIMIT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def list_jobs(
    *,
    project: int | None,
    state: str | None,
    flavour: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Every job by id, oldest first (as ``programs list`` and ``allocations list``),
    or the first ``--limit`` of them."""
    query = JobQuery(
        project=project, state=JobState(state) if state else None, flavour=flavour, limit=MAX_PAGE
    )
    with cli_transaction(snapshot=True) as session:
        found = at_most(all_pages(partial(_jobs_page, session, query)), limit)
        page = JobPage(items=found, next_cursor=None)
    if as_json:
        click.echo(page.model_dump_json(indent=2))
        return
    money = ("held (GPU credits)", "charged (GPU credits)")
    table = Table("id", "project", "name", "state", "flavour", "GPUs", *money)
    for job in page.items:
        table.add_row(
            str(job.id),
            str(job.project_id),
            job.name,
            fmt.status(job.state),
            job.flavour,
            str(job.gpus),
            fmt.exact_number(job.hold_micro),
            fmt.exact_number(job.charged_micro),
        )
    Console().print(table)


def _jobs_page(
    session: Session, query: JobQuery, cursor: int | None
) -> tuple[list[JobOut], int | None]:
    page = queries.list_jobs_for_actor(
        session, CLI_READER, query.model_copy(update={"cursor": cursor})
    )
    return page.items, page.next_cursor


@jobs.command("show")
@click.argument("job_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_errors
def show_job(*, job_id: int, as_json: bool) -> None:
    """One job: spec, timeline, runs and charges."""
    with cli_transaction(snapshot=True) as session:
        detail = queries.get_job_detail(session, CLI_READER, job_id)
    if as_json:
        click.echo(detail.model_dump_json(indent=2))
        return
    click.echo(
        f"job {detail.id} {detail.name!r} ({fmt.status(detail.state)}) project {detail.project_id}"
    )
    runtime = exact_duration(detail.max_runtime_seconds)
    click.echo(f"  {fmt.gpus(detail.gpus)} of {detail.flavour}, max runtime {runtime}")
    held = fmt.money(detail.hold_micro, "gpu", exact=True)
    charged = fmt.money(detail.charged_micro, "gpu", exact=True)
    rate = fmt.money(detail.micro_credits_per_gpu_hour, "gpu", exact=True)
    click.echo(f"  held {held}, charged {charged} at {rate} per GPU-hour")
    if detail.reason:
        click.echo(f"  reason: {detail.reason}")
    if detail.checkpointable:
        click.echo(
            f"  checkpointable, grace {exact_duration(detail.checkpoint_grace_seconds)}, "
            f"moved {detail.move_count} time(s)"
        )
    for moved in detail.moves:
        click.echo(f"  move {moved.number} at {fmt.when(moved.requested_at)}: {moved.reason}")
        click.echo(
            f"    from {_nodes(moved.from_placement)} to {_nodes(moved.to_placement)}"
            + (f", restarted as attempt {moved.to_attempt}" if moved.to_attempt else "")
        )
    for event in detail.events:
        source = fmt.status(event.from_state) if event.from_state else "-"
        note = f"  ({event.reason})" if event.reason else ""
        click.echo(f"  {fmt.when(event.at)}  {source} -> {fmt.status(event.to_state)}{note}")


def _nodes(placement: list[PlacementOut]) -> str:
    return ", ".join(f"{part.node} ({part.gpus} GPUs)" for part in placement) or "-"


@jobs.command("cancel")
@click.argument("job_id", type=ROW_ID)
@click.option("--as", "as_email", required=True, help="Email of the ops user cancelling it.")
@reports_errors
def cancel(*, job_id: int, as_email: str) -> None:
    """Cancel a job: a queued one at once, an active one at the next reconcile."""
    with cli_transaction() as session:
        job = service.cancel_job(session, job_id=job_id, actor=actor_for_email(session, as_email))
    if job.state is JobState.CANCELLED:
        click.echo(f"job {job.id} cancelled; its hold was released")
    else:
        click.echo(f"job {job.id} is {fmt.status(job.state)}; the executor will stop it")


@jobs.command("logs")
@click.argument("job_id", type=ROW_ID)
@click.option("--tail", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.option(
    "--all", "whole", is_flag=True, help="The whole log, streamed as it is read (not with --tail)."
)
@reports_errors
def logs(*, job_id: int, tail: int, whole: bool) -> None:
    """The last lines of a job's output, or with --all all of it."""
    context = click.get_current_context()
    if whole and context.get_parameter_source("tail") is not ParameterSource.DEFAULT:
        raise click.UsageError("--all and --tail do not go together")
    with cli_transaction(snapshot=True) as session:
        log_download.check_log_access(session, CLI_READER, job_id)
    if not whole:
        click.echo(log_download.tail_log(cli_executor(), job_id, tail), nl=False)
        return
    download = log_download.open_log_download(cli_executor(), job_id)
    for chunk in download.chunks:
        click.echo(chunk, nl=False)  # bytes go to stdout's binary stream, as they are


@jobs.command("limit")
@click.argument("project_id", type=ROW_ID)
@click.argument("max_gpus", type=int, required=False)
@click.option("--as", "as_email", required=True, help="Email of the ops user.")
@reports_errors
def limit(*, project_id: int, max_gpus: int | None, as_email: str) -> None:
    """Cap the GPUs a project's jobs may hold at once; without MAX_GPUS, remove the cap."""
    with cli_transaction() as session:
        service.set_project_gpu_limit(
            session,
            project_id=project_id,
            max_concurrent_gpus=max_gpus,
            actor=actor_for_email(session, as_email),
        )
    shown = "no cap" if max_gpus is None else f"at most {max_gpus} GPUs at once"
    click.echo(f"project {project_id}: {shown}")


@jobs.command("schedule")
@reports_errors
def schedule() -> None:
    """Run one scheduling pass now."""
    executor = cli_executor()  # a pool that cannot start is named before the database
    require_migrated_database()
    out = run_schedule(cli_session_factory(), executor, cli_settings())
    moved = f"; moving {len(out.moved)}" if out.moved else ""
    click.echo(f"started {len(out.started)} job(s); {out.queued} still queued{moved}")


@jobs.command("reconcile")
@reports_errors
def reconcile_now() -> None:
    """Run one reconcile now: launch, stop, observe, settle."""
    _refuse_a_simulated_pool("jobs reconcile")
    executor = cli_executor()  # a pool that cannot start is named before the database
    require_migrated_database()
    out = reconcile_with(cli_session_factory(), executor, cli_settings())
    click.echo(
        f"launched {len(out.launched)}, stopping {len(out.cancelled)}, "
        f"moving {len(out.moving)}, "
        f"{len(out.transitions)} transition(s), settled {len(out.settled)}"
    )


def pool_status_command(*, as_json: bool) -> None:
    """``credits pool status``: capacity, free GPUs and the queue per flavour."""
    executor = cli_executor()
    capacity = read_capacity(executor)
    with cli_transaction(snapshot=True) as session:
        status = queries.pool_status(session, capacity, executor=executor.name)
    if as_json:
        click.echo(status.model_dump_json(indent=2))
        return
    _print_pool(status)


def _print_pool(status: PoolStatus) -> None:
    table = Table("flavour", "nodes", "GPUs", "in use", "free", "queued jobs", "queued GPUs")
    for row in status.flavours:
        table.add_row(
            row.flavour,
            str(row.nodes),
            str(row.gpus),
            str(row.gpus_in_use),
            str(row.gpus_free),
            str(row.queued_jobs),
            str(row.queued_gpus),
        )
    Console().print(f"executor: {status.executor}")
    Console().print(table)
