"""Reports on a program or a project: balances, usage, burn-down, efficiency, energy.

Read-only: a report flushes nothing and may run inside any transaction. Every
money figure is a sum of ledger transfers or usage records, so it agrees with
``credits.ledger.queries.get_balance`` to the micro-credit (see
:mod:`credits.reports.schemas` for what each figure means).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from decimal import Decimal

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from credits.grants.errors import ProgramNotFound, ProjectNotFound
from credits.grants.models import Allocation, Program, Project
from credits.jobs.models import Job
from credits.ledger.models import Account
from credits.metering.energy import EnergyFootprint
from credits.metering.models import UsageRecord
from credits.reports import activity as act
from credits.reports import burndown
from credits.reports import labelling as lab
from credits.reports.energy import EnergyPolicy
from credits.reports.figures import (
    AccountFigures,
    Flows,
    add_lapsed_tranches,
    add_overage,
    add_project_overage,
    load_accounts,
    load_flows,
)
from credits.reports.schemas import (
    AllocationLine,
    Balance,
    BurnDown,
    GroupLine,
    MonthLine,
    ProgramReport,
    ProjectReport,
    ReportBody,
)

DEFAULT_POLICY = EnergyPolicy.from_values(pue=1.2, grid_g_per_kwh=350.0)


def project_report(
    session: Session,
    project_id: int,
    now: dt.datetime,
    *,
    energy: EnergyPolicy | None = None,
    visible: ColumnElement[bool] | None = None,
) -> ProjectReport:
    """The report of one project over all its allocations; raises ProjectNotFound.

    ``visible`` (a condition on accounts) narrows it to the allocations a reader
    may see, for a funder who awarded the project: then it counts those
    allocations and the jobs that drew on them alone, as a program's report does.
    """
    project = session.get(Project, project_id)
    if project is None:
        raise ProjectNotFound(f"no project has the id {project_id}")
    if visible is None:
        accounts = load_accounts(session, Account.project_id == project_id)
        add_lapsed_tranches(session, accounts, now)
        flows = load_flows(session, accounts)
        add_project_overage(session, flows, [project_id])
        activity = _activity(session, Job.project_id == project_id, project_id, energy)
        labelling = lab.labelling_figures(session, accounts)
        forecast = forecasts(flows, now)
    else:
        accounts = load_accounts(session, (Account.project_id == project_id) & visible)
        add_lapsed_tranches(session, accounts, now)
        flows = load_flows(session, accounts)
        activity = _activity(session, act.jobs_drawing_on(list(accounts)), None, energy, accounts)
        labelling = _scoped_labelling(session, flows, activity)
        forecast = _whole_project_forecasts(session, accounts, now)
    titles = {project.id: project.title}
    body = _body(flows, activity, labelling, forecast, now, titles=titles)
    return ProjectReport(
        project_id=project.id,
        title=project.title,
        institution=project.institution,
        **body.model_dump(),
    )


def _activity(
    session: Session,
    jobs: ColumnElement[bool],
    outside_project: int | None,
    energy: EnergyPolicy | None,
    accounts: Collection[int] | None = None,
) -> act.Activity:
    """The jobs matching ``jobs`` with their usage, and the outside meters' usage of
    ``outside_project`` (none when None); with ``accounts``, each job for the part
    those accounts paid."""
    # A labelling order's usage records are counted as the order's labelling spend.
    records = (
        None
        if outside_project is None
        else (UsageRecord.project_id == outside_project) & UsageRecord.labelling_order_id.is_(None)
    )
    return act.load_activity(
        session, jobs=jobs, records=records, policy=energy or DEFAULT_POLICY, accounts=accounts
    )


def _usage_overage(activity: act.Activity) -> Iterator[tuple[str, str, int]]:
    for (currency, _, month), usage in activity.usage.items():
        yield currency, month, usage.overage


def program_report(
    session: Session, program_id: int, now: dt.datetime, *, energy: EnergyPolicy | None = None
) -> ProgramReport:
    """The report of one program over the allocations it awarded; raises ProgramNotFound.

    Jobs count when their holds drew on the program's allocations; overage is
    the overage of those jobs' usage records.
    """
    program = session.get(Program, program_id)
    if program is None:
        raise ProgramNotFound(f"no program has the id {program_id}")
    accounts = load_accounts(session, Allocation.program_id == program_id)
    add_lapsed_tranches(session, accounts, now)
    flows = load_flows(session, accounts)
    activity = _activity(session, act.jobs_drawing_on(list(accounts)), None, energy, accounts)
    labelling = _scoped_labelling(session, flows, activity)
    forecast = _whole_project_forecasts(session, accounts, now)
    projects = _projects(session, {a.project_id for a in accounts.values()})
    titles = {pid: title for pid, (title, _) in projects.items()}
    body = _body(flows, activity, labelling, forecast, now, titles=titles)
    return ProgramReport(
        program_id=program.id,
        name=program.name,
        by_project=_by_project(body.allocations, projects),
        by_institution=_by_institution(body.allocations, projects),
        **body.model_dump(),
    )


def _scoped_labelling(
    session: Session, flows: Flows, activity: act.Activity
) -> lab.LabellingFigures:
    """Labelling spend of a scope narrowed to some allocations; the overage counted is
    that of the scope's jobs and of its labelling orders."""
    labelling = lab.labelling_figures(session, flows.accounts)
    add_overage(flows, _usage_overage(activity))
    add_overage(flows, lab.overage_months(session, labelling.overage_orders))
    return labelling


def forecasts(flows: Flows, now: dt.datetime) -> dict[int, int]:
    """Forecast unused per account, each project and currency at its own 7-day rate."""
    groups: dict[tuple[int, str], list[AccountFigures]] = defaultdict(list)
    for account in flows.accounts.values():
        groups[(account.project_id, account.currency)].append(account)
    forecast: dict[int, int] = {}
    for members in groups.values():
        ids = {a.id for a in members}
        rate = burndown.rate_per_second((c for c in flows.captures if c.account_id in ids), now)
        forecast.update(burndown.forecast_unused(members, rate, now))
    return forecast


def _whole_project_forecasts(
    session: Session, accounts: dict[int, AccountFigures], now: dt.datetime
) -> dict[int, int]:
    """A project spends all its allocations, whoever funded them: the forecast of some
    of them (a program's, or those a funder may see) comes from each project's whole
    set of accounts, so a funder reads the same figure on the program's dashboard and
    on the project's report."""
    project_ids = {a.project_id for a in accounts.values()}
    if not project_ids:
        return {}
    everything = load_accounts(session, Account.project_id.in_(project_ids))
    return forecasts(load_flows(session, everything), now)


def _body(
    flows: Flows,
    activity: act.Activity,
    labelling: lab.LabellingFigures,
    forecast: dict[int, int],
    now: dt.datetime,
    *,
    titles: dict[int, str],
) -> ReportBody:
    footprints = act.account_footprints(activity)
    allocations = [_allocation_line(a, forecast, footprints) for a in flows.accounts.values()]
    currencies = sorted({a.currency for a in flows.accounts.values()} | set(flows.overage))
    return ReportBody(
        generated_at=now,
        balances=[_balance(c, allocations, flows.overage.get(c, 0)) for c in currencies],
        allocations=allocations,
        usage=act.usage_lines(activity),
        months=_months(flows),
        burndown=[currency_burn_down(c, flows, forecast, now) for c in currencies],
        efficiency=act.efficiency(activity),
        footprint=act.footprint_out(act.scope_footprint(activity)),
        outcomes=act.outcomes(activity),
        jobs=act.job_lines(activity),
        spend=lab.spend_by_project(flows.accounts.values(), activity, labelling.lines, titles),
        labelling=labelling.lines,
        labelling_by_vendor=labelling.vendors,
    )


def _allocation_line(
    account: AccountFigures, forecast: dict[int, int], footprints: dict[int, EnergyFootprint]
) -> AllocationLine:
    return AllocationLine(
        account_id=account.id,
        allocation_id=account.allocation_id,
        program_id=account.program_id,
        project_id=account.project_id,
        code=account.code,
        currency=account.currency,
        status=account.status,
        starts_at=account.starts_at,
        expires_at=account.expires_at,
        awarded=account.awarded,
        released=account.released,
        adjusted=account.adjusted,
        held=account.held,
        used=account.used,
        expired=account.expired,
        available=account.available,
        forecast_unused=forecast.get(account.id, 0),
        footprint=act.footprint_out(footprints.get(account.id, EnergyFootprint())),
        lapsed=account.lapsed,
    )


def _balance(currency: str, lines: list[AllocationLine], overage: int) -> Balance:
    mine = [line for line in lines if line.currency.value == currency]
    return Balance(
        currency=currency,
        awarded=sum(line.awarded for line in mine),
        released=sum(line.released for line in mine),
        adjusted=sum(line.adjusted for line in mine),
        held=sum(line.held for line in mine),
        used=sum(line.used for line in mine),
        expired=sum(line.expired for line in mine),
        available=sum(line.available for line in mine),
        overage=overage,
        forecast_unused=sum(line.forecast_unused for line in mine),
        lapsed=sum(line.lapsed for line in mine),
    )


def _months(flows: Flows) -> list[MonthLine]:
    return [
        MonthLine(
            currency=currency,
            month=month,
            released=figures.released,
            used=figures.used,
            expired=figures.expired,
            overage=figures.overage,
        )
        for (currency, month), figures in sorted(flows.months.items())
    ]


def currency_burn_down(
    currency: str, flows: Flows, forecast: dict[int, int], now: dt.datetime
) -> BurnDown:
    accounts = [a for a in flows.accounts.values() if a.currency == currency]
    captures = [c for c in flows.captures if c.currency == currency]
    return burndown.burn_down(currency, accounts, captures, forecast, now)


def _projects(session: Session, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    rows = session.execute(
        select(Project.id, Project.title, Project.institution).where(Project.id.in_(list(ids)))
    )
    return {int(row.id): (str(row.title), str(row.institution)) for row in rows}


def _group(
    lines: list[AllocationLine], key: str, project_id: int | None, title: str, institution: str
) -> GroupLine:
    return GroupLine(
        project_id=project_id,
        title=title,
        institution=institution,
        currency=key,
        awarded=sum(line.awarded for line in lines),
        released=sum(line.released for line in lines),
        held=sum(line.held for line in lines),
        used=sum(line.used for line in lines),
        expired=sum(line.expired for line in lines),
        available=sum(line.available for line in lines),
        forecast_unused=sum(line.forecast_unused for line in lines),
        lapsed=sum(line.lapsed for line in lines),
        footprint=act.footprint_out(
            EnergyFootprint.total(
                EnergyFootprint(
                    kwh=Decimal(str(line.footprint.kwh)),
                    kg_co2e=Decimal(str(line.footprint.kg_co2e)),
                )
                for line in lines
            )
        ),
    )


def _by_project(
    lines: list[AllocationLine], projects: dict[int, tuple[str, str]]
) -> list[GroupLine]:
    groups: dict[tuple[int, str], list[AllocationLine]] = defaultdict(list)
    for line in lines:
        groups[(line.project_id, line.currency.value)].append(line)
    return [
        _group(members, currency, pid, *projects.get(pid, ("", "")))
        for (pid, currency), members in sorted(groups.items())
    ]


def _by_institution(
    lines: list[AllocationLine], projects: dict[int, tuple[str, str]]
) -> list[GroupLine]:
    groups: dict[tuple[str, str], list[AllocationLine]] = defaultdict(list)
    for line in lines:
        institution = projects.get(line.project_id, ("", ""))[1]
        groups[(institution, line.currency.value)].append(line)
    return [
        _group(members, currency, None, "", institution)
        for (institution, currency), members in sorted(groups.items())
    ]
