"""Ops pages: the GPU pool and its rates, balance adjustments, projects, audit, health.

Only users with the ops role reach them; everyone else gets the 404 page, as
for anything out of their reach. Each form calls one service in one
transaction; a refusal is shown on the form, inline, and nothing is saved.
"""

from __future__ import annotations

import json
import secrets
from datetime import date, datetime
from typing import Any

from flask import Blueprint, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from admin_ui.confirm import confirmation, confirmed, rehearse
from admin_ui.form_dates import day_start, in_utc, next_midnight
from admin_ui.ops_health import health_report
from admin_ui.web import login_required, render, require_role, transaction
from credits import formatting as fmt
from credits.api.auth import credits_extension, job_executor
from credits.audit.queries import AuditFilter, event_types, list_audit_events, subject_types
from credits.db import utcnow
from credits.errors import CreditsError
from credits.grants import projects as project_service
from credits.grants.models import ProjectStatus
from credits.id_text import id_from_text
from credits.identity.access import list_projects_for_actor
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.people import actor_labels_matching, people_in_labels
from credits.jobs.queries import pool_status
from credits.jobs.schemas import PoolStatus
from credits.ledger import service as ledger
from credits.ledger.models import AccountKind
from credits.ledger.queries import list_accounts
from credits.money import InvalidCreditsAmount, parse_credits
from credits.pool import service as pool
from credits.pool.models import DEFAULT_CHECKPOINT_GRACE_CAP_S

blueprint = Blueprint("ui_ops", __name__, url_prefix="/ops")
PROJECT_PAGE = 50


def _ops() -> Actor:
    return require_role(Role.OPS)


def _field_of(error: CreditsError) -> str | None:
    field = error.extra.get("field")
    return field if isinstance(field, str) else None


# The pool: flavours, rates with their history, capacity and queue.


def _capacity(session: Session) -> tuple[PoolStatus | None, str | None]:
    executor = job_executor()
    try:
        capacity = executor.capacity()
    except Exception as error:  # any executor failure is shown, not raised
        return None, f"{type(error).__name__}: {error}"
    return pool_status(session, capacity, executor=executor.name), None


def _pool_page(status_code: int = 200, **context: Any) -> ResponseReturnValue:
    with transaction() as db:
        flavours = pool.list_flavours(db)
        rates = pool.list_rates(db)
        status, capacity_error = _capacity(db)
    return render(
        "ops/pool.html",
        flavours=flavours,
        rates=rates,
        status=status,
        capacity_error=capacity_error,
        now=utcnow(),
        flavour_form=context.pop("flavour_form", {}),
        flavour_errors=context.pop("flavour_errors", {}),
        rate_form=context.pop("rate_form", {}),
        rate_errors=context.pop("rate_errors", {}),
        **context,
    ), status_code


@blueprint.get("/pool", endpoint="pool")
@login_required
def pool_page() -> ResponseReturnValue:
    _ops()
    return _pool_page()


def _whole(form: dict[str, str], name: str, errors: dict[str, str]) -> int:
    try:
        return int(form.get(name, "").strip())
    except ValueError:
        errors[name] = "give a whole number"
        return 0


@blueprint.post("/pool/flavours")
@login_required
def add_flavour() -> ResponseReturnValue:
    me = _ops()
    form = {key: request.form.get(key, "") for key in _FLAVOUR_FIELDS}
    errors: dict[str, str] = {}
    memory = _whole(form, "gpu_memory_gb", errors)
    gpus = _whole(form, "gpus_per_node", errors)
    # Optional: blank keeps the default cap.
    grace_cap = (
        _whole(form, "max_checkpoint_grace_seconds", errors)
        if form["max_checkpoint_grace_seconds"].strip()
        else DEFAULT_CHECKPOINT_GRACE_CAP_S
    )
    if not errors:
        try:
            with transaction() as db:
                added = pool.add_flavour(
                    db,
                    name=form["name"],
                    node_label_value=form["node_label_value"],
                    gpu_memory_gb=memory,
                    gpus_per_node=gpus,
                    description=form["description"],
                    max_checkpoint_grace_seconds=grace_cap,
                    actor=me,
                )
        except CreditsError as error:
            errors[_field_of(error) or "form"] = str(error)
    if errors:
        return _pool_page(400, flavour_form=form, flavour_errors=errors)
    flash(f"Flavour {added.name} added. Set its rate before jobs can use it.")
    return redirect(url_for("ui_ops.pool"))


_FLAVOUR_FIELDS = (
    "name",
    "node_label_value",
    "gpu_memory_gb",
    "gpus_per_node",
    "description",
    "max_checkpoint_grace_seconds",
)
_RATE_FIELDS = ("flavour", "credits_per_gpu_hour", "effective_from", "reason")


def parse_moment(text: str) -> datetime | None:
    """A datetime-local value read as UTC; None when blank. ValueError when malformed
    or outside the years UTC can hold."""
    if not text.strip():
        return None
    return in_utc(datetime.fromisoformat(text.strip()))


@blueprint.post("/pool/rates")
@login_required
def set_rate() -> ResponseReturnValue:
    me = _ops()
    form = {key: request.form.get(key, "") for key in _RATE_FIELDS}
    errors: dict[str, str] = {}
    rate = 0
    starts: datetime | None = None
    try:
        rate = parse_credits(form["credits_per_gpu_hour"])
    except InvalidCreditsAmount as error:
        errors["credits_per_gpu_hour"] = error.detail
    try:
        starts = parse_moment(form["effective_from"])
    except ValueError:
        errors["effective_from"] = "give a date and time, or leave it blank for now"
    if not errors:
        try:
            with transaction() as db:
                pool.set_rate(
                    db,
                    flavour=form["flavour"],
                    credits_per_gpu_hour_micro=rate,
                    effective_from=starts or utcnow(),
                    reason=form["reason"],
                    actor=me,
                )
        except CreditsError as error:
            errors[_field_of(error) or "form"] = str(error)
    if errors:
        return _pool_page(400, rate_form=form, rate_errors=errors)
    flash(f"New rate for {form['flavour']} recorded.")
    return redirect(url_for("ui_ops.pool"))


# Adjustments.


def _adjustable(db: Session) -> list[Any]:
    kinds = (AccountKind.ALLOCATION.value, AccountKind.PROGRAM_POOL.value)
    return [account for account in list_accounts(db) if account.kind.value in kinds]


def _adjustments_page(status_code: int = 200, **context: Any) -> ResponseReturnValue:
    with transaction() as db:
        accounts = _adjustable(db)
        recent = list_audit_events(db, AuditFilter(event_type="ledger.adjust"), limit=20).items
    return render(
        "ops/adjustments.html",
        accounts=accounts,
        recent=[(event, _data(event.canonical_json)) for event in recent],
        form=context.pop("form", {}),
        errors=context.pop("errors", {}),
        key=secrets.token_urlsafe(16),
        **context,
    ), status_code


@blueprint.get("/adjustments")
@login_required
def adjustments() -> ResponseReturnValue:
    _ops()
    return _adjustments_page()


@blueprint.post("/adjustments")
@login_required
def adjust() -> ResponseReturnValue:
    me = _ops()
    form = {key: request.form.get(key, "") for key in ("account_id", "amount", "reason", "key")}
    errors: dict[str, str] = {}
    amount = 0
    account_id = id_from_text(form["account_id"])
    if account_id is None:
        errors["account_id"] = "choose an account"
    try:
        amount = parse_credits(form["amount"], signed=True)
    except InvalidCreditsAmount as error:
        errors["amount"] = error.detail
    if not form["reason"].strip():
        errors["reason"] = "an adjustment needs a reason"
    if account_id is not None and not errors:
        try:
            with transaction() as db:
                ledger.adjust(
                    db,
                    key=f"ui-adjust-{form['key'] or secrets.token_urlsafe(16)}",
                    account_id=account_id,
                    amount=amount,
                    reason=form["reason"],
                    actor=me,
                )
        except CreditsError as error:
            errors[_field_of(error) or "form"] = str(error)
    if errors:
        return _adjustments_page(400, form=form, errors=errors)
    flash(f"Account {account_id} adjusted by {_signed(amount)}.")
    return redirect(url_for("ui_ops.adjustments"))


def _signed(micro: int) -> str:
    return ("" if micro < 0 else "+") + fmt.money(micro)


def _labels_in(documents: list[tuple[Any, dict[str, Any]]]) -> list[str]:
    """The 'user:<id>' values in events' details, to name them."""
    return [v for _, data in documents for v in data.values() if isinstance(v, str)]


def _data(canonical: str) -> dict[str, Any]:
    try:
        document = json.loads(canonical)
    except ValueError:
        return {}
    data = document.get("data") if isinstance(document, dict) else None
    return data if isinstance(data, dict) else {}


# Projects: suspend and unsuspend with a reason.


def _projects_page(status_code: int = 200, **context: Any) -> ResponseReturnValue:
    wanted = request.args.get("status", "")
    status = ProjectStatus(wanted) if wanted in {s.value for s in ProjectStatus} else None
    # A cursor that names no row (malformed, or too long for an id) starts at the top.
    cursor = id_from_text(request.args.get("after", ""))
    with transaction() as db:
        page = list_projects_for_actor(db, _ops(), status=status, cursor=cursor, limit=PROJECT_PAGE)
    return render(
        "ops/projects.html",
        projects=page.items,
        next_cursor=page.next_cursor,
        statuses=[s.value for s in ProjectStatus],
        status=wanted if status else "",
        errors=context.pop("errors", {}),
        reasons=context.pop("reasons", {}),
        **context,
    ), status_code


@blueprint.get("/projects")
@login_required
def projects() -> ResponseReturnValue:
    _ops()
    return _projects_page()


def _change_project(project_id: int, *, suspend: bool) -> ResponseReturnValue:
    me = _ops()
    reason = request.form.get("reason", "")
    change = project_service.suspend_project if suspend else project_service.unsuspend_project
    try:
        if suspend and not confirmed():
            would = rehearse(lambda db: change(db, project_id=project_id, actor=me, reason=reason))
            return confirmation(
                title=f"Suspend project {would.id}?",
                effect=(
                    f"suspend project {would.id}, {would.title}. Its allocations freeze: no"
                    " new job can hold its credits (jobs already running go on)."
                ),
                details=[("Reason", reason.strip())],
                warning="It stays suspended until ops unsuspend it, with a reason.",
                confirm_label="Suspend the project",
                back=url_for("ui_ops.projects", status=request.args.get("status") or None),
            )
        with transaction() as db:
            changed = change(db, project_id=project_id, actor=me, reason=reason)
    except CreditsError as error:
        return _projects_page(
            404 if error.status == 404 else 400,
            errors={project_id: str(error)},
            reasons={project_id: reason},
        )
    flash(f"Project {changed.id} ({changed.title}) is {changed.status.value}.")
    return redirect(url_for("ui_ops.projects", status=request.args.get("status", "")))


@blueprint.post("/projects/<int:project_id>/suspend")
@login_required
def suspend_project(project_id: int) -> ResponseReturnValue:
    return _change_project(project_id, suspend=True)


@blueprint.post("/projects/<int:project_id>/unsuspend")
@login_required
def unsuspend_project(project_id: int) -> ResponseReturnValue:
    return _change_project(project_id, suspend=False)


# The audit log.


def _audit_filter(errors: dict[str, str]) -> AuditFilter:
    args = request.args

    def moment(name: str, *, whole_day: bool = False) -> datetime | None:
        text = args.get(name, "").strip()
        if not text:
            return None
        try:
            day = date.fromisoformat(text)
            return next_midnight(day) if whole_day else day_start(day)
        except ValueError:
            errors[name] = "give a date like 2030-01-31"
            return None

    return AuditFilter(
        event_type=args.get("event_type", "").strip() or None,
        actor=args.get("actor", "").strip() or None,
        subject_type=args.get("subject_type", "").strip() or None,
        subject_id=args.get("subject_id", "").strip() or None,
        since=moment("since"),
        # The end date is included: events before the next midnight.
        until=moment("until", whole_day=True),
    )


@blueprint.get("/audit")
@login_required
def audit() -> ResponseReturnValue:
    _ops()
    errors: dict[str, str] = {}
    wanted = _audit_filter(errors)
    before = id_from_text(request.args.get("before", ""))
    with transaction() as db:
        if wanted.actor:
            wanted = wanted.model_copy(
                update={"actor_labels": actor_labels_matching(db, wanted.actor)}
            )
        page = list_audit_events(db, wanted, before=before)
        types, subjects = event_types(db), subject_types(db)
        documents = [(event, _data(event.canonical_json)) for event in page.items]
        people = people_in_labels(db, [event.actor for event in page.items] + _labels_in(documents))
    kept = {
        name: request.args.get(name, "")
        for name in ("event_type", "actor", "subject_type", "subject_id", "since", "until")
    }
    return render(
        "ops/audit.html",
        events=[
            (event, {key: fmt.detail(key, value, people) for key, value in data.items()})
            for event, data in documents
        ],
        next_before=page.next_before,
        types=types,
        subjects=subjects,
        args=kept,
        filtered=any(kept.values()),
        errors=errors,
    ), 400 if errors else 200


# Health.


@blueprint.get("/health")
@login_required
def health() -> ResponseReturnValue:
    _ops()
    settings = credits_extension().settings
    with transaction() as db:
        report = health_report(db, job_executor(), settings)
    return render("ops/health.html", report=report)
