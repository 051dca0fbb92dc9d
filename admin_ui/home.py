"""The landing page: sign-in for visitors, the dashboard of each role for users.

A researcher sees their projects, the balance per currency (available, held,
used) with a burn-down chart, their running and queued jobs, and allocations
that expire within 30 days. Other roles see links to their areas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Blueprint, redirect, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from sqlalchemy.orm import Session

from admin_ui import charts
from admin_ui.web import current_actor, render, transaction
from credits.db import utcnow
from credits.grants.queries import MAX_PAGE
from credits.identity.access import list_projects_for_actor
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.jobs.models import JobState
from credits.jobs.queries import list_jobs_for_actor
from credits.jobs.schemas import JobOut, JobQuery
from credits.ledger.availability import Availability, availability, availability_by_project
from credits.ledger.models import Currency
from credits.reports.figures import AccountFigures
from credits.reports.summary import ProjectSummary, project_summaries

blueprint = Blueprint("ui_home", __name__)

EXPIRING_WITHIN = timedelta(days=30)
ACTIVE_JOB_STATES = (JobState.RUNNING, JobState.STARTING, JobState.QUEUED)


@dataclass
class CurrencyTotals:
    currency: str
    available: int = 0  # available now (credits/ledger/availability.py)
    held: int = 0
    used: int = 0
    spendable: int = 0
    chart: Markup | None = None
    later: Availability | None = None  # starting later and suspended, shown apart


@dataclass
class ResearcherDashboard:
    reports: list[ProjectSummary]
    totals: list[CurrencyTotals]
    jobs: list[JobOut]
    expiring: list[tuple[ProjectSummary, AccountFigures]]
    titles: dict[int, str] = field(default_factory=dict)
    # Per project and currency: available now, starting later, suspended.
    available: dict[int, dict[str, Availability]] = field(default_factory=dict)


def reports_for(session: Session, me: Actor, now: datetime) -> list[ProjectSummary]:
    """The summary of every project the actor may see, newest project last, in a
    fixed number of queries however many projects there are."""
    projects = list_projects_for_actor(session, me, limit=MAX_PAGE).items
    return project_summaries(session, {project.id: project.title for project in projects}, now)


def _totals(
    reports: list[ProjectSummary], summed: dict[Currency, Availability]
) -> list[CurrencyTotals]:
    totals: dict[str, CurrencyTotals] = {}
    for available in summed.values():
        name = available.currency.value
        line = totals.setdefault(name, CurrencyTotals(name))
        line.available, line.later = available.now, available
    for report in reports:
        for balance in report.balances:
            line = totals.setdefault(balance.currency.value, CurrencyTotals(balance.currency.value))
            line.held += balance.held
            line.used += balance.used
        for burn in report.burndown:
            line = totals.setdefault(burn.currency.value, CurrencyTotals(burn.currency.value))
            line.spendable += burn.spendable
    merged = charts.merge_burn_downs(burn for report in reports for burn in report.burndown)
    today = utcnow().date()
    for currency, line in totals.items():
        # Without use yet, the chart is one point: today, nothing used.
        points = merged.get(currency) or [(today, 0)]
        line.chart = charts.burn_down_chart(currency, points, line.spendable)
    return [totals[currency] for currency in sorted(totals)]


def _expiring(
    reports: list[ProjectSummary], now: datetime
) -> list[tuple[ProjectSummary, AccountFigures]]:
    soon: list[tuple[ProjectSummary, AccountFigures]] = []
    for report in reports:
        for line in report.allocations:
            ends = line.expires_at
            if ends is not None and now < ends <= now + EXPIRING_WITHIN and line.status == "active":
                soon.append((report, line))
    return sorted(soon, key=lambda pair: pair[1].expires_at or now)


def researcher_dashboard(session: Session, me: Actor) -> ResearcherDashboard:
    now = utcnow()
    reports = reports_for(session, me, now)
    jobs: list[JobOut] = []
    for state in ACTIVE_JOB_STATES:
        jobs.extend(list_jobs_for_actor(session, me, JobQuery(state=state, limit=50)).items)
    ids = [report.project_id for report in reports]
    return ResearcherDashboard(
        reports=reports,
        totals=_totals(reports, availability(session, ids, now=now)),
        jobs=sorted(jobs, key=lambda job: job.id, reverse=True),
        expiring=_expiring(reports, now),
        titles={report.project_id: report.title for report in reports},
        available={
            project_id: {c.value: a for c, a in found.items()}
            for project_id, found in availability_by_project(session, ids, now=now).items()
        },
    )


@blueprint.get("/")
def dashboard() -> ResponseReturnValue:
    me = current_actor()
    if me is None:
        return redirect(url_for("ui_auth.login"))
    researcher = None
    if me.has_role(Role.RESEARCHER):
        with transaction() as db:
            researcher = researcher_dashboard(db, me)
    return render("home.html", researcher=researcher)
