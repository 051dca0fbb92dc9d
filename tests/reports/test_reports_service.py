"""Reports agree with the ledger to the micro-credit on a seeded scenario."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import pytest
from jobs_world import outside_record
from reports_world import (
    AWARD_A,
    AWARD_B,
    CREDIT,
    ReportsWorld,
    add_telemetry,
    award,
    build_reports_world,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.db import session_scope
from credits.grants import funding, programs
from credits.identity.service import actor_for_email
from credits.jobs.models import Job, JobState
from credits.jobs.schemas import JobOut
from credits.ledger import service as ledger
from credits.ledger.models import Account, AccountKind, Currency, Transfer, TransferKind
from credits.ledger.overage import book_overage
from credits.ledger.queries import get_balance, project_sink_code, system_account_id
from credits.ledger.settle import void_hold
from credits.ledger.verify import verify_ledger
from credits.metering.models import UsageRecord
from credits.metering.service import settle_all_pending
from credits.reports.activity import apportion
from credits.reports.energy import EnergyPolicy
from credits.reports.schemas import ProgramReport, ProjectReport
from credits.reports.service import program_report, project_report

SYSTEM_PUE = EnergyPolicy.from_values(pue=1.5, grid_g_per_kwh=400.0)
KWH_MJ = 3_600_000_000


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> ReportsWorld:
    world = build_reports_world(joined_session_factory)
    world.a.submit(gpus=2, duration=600)
    world.a.submit(gpus=1, duration=1200, labels={"credits.dev/simulated-exit-code": "1"})
    world.b.submit(gpus=4, duration=300)
    world.run_until_done()
    return world


def _jobs(session: Session, project_id: int) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.project_id == project_id)))


def _check_lines_against_ledger(session: Session, report: ProjectReport | ProgramReport) -> None:
    for line in report.allocations:
        balance = get_balance(session, account_id=line.account_id)
        assert line.available == balance.available
        assert line.held == balance.held
        assert line.released + line.adjusted - line.used - line.expired == balance.posted
        assert line.available == (
            line.released + line.adjusted - line.used - line.expired - line.held
        )


def test_project_report_agrees_with_the_ledger(session: Session, world: ReportsWorld) -> None:
    jobs = _jobs(session, world.a.project_id)
    assert {job.state for job in jobs} == {JobState.SUCCEEDED.value, JobState.FAILED.value}
    now = world.clock()

    report = project_report(session, world.a.project_id, now)

    _check_lines_against_ledger(session, report)
    (balance,) = report.balances
    charged = sum(job.charged_micro for job in jobs)
    assert charged > 0
    assert balance.awarded == balance.released == AWARD_A
    assert balance.used == charged
    assert balance.held == 0
    assert balance.available == AWARD_A - charged
    assert balance.available == get_balance(session, account_id=world.a.account_id).available
    assert sum(line.used for line in report.usage) == charged
    assert sum(month.used for month in report.months) == charged
    assert {o.state: o.jobs for o in report.outcomes} == {"failed": 1, "succeeded": 1}
    assert sum(job.charged for job in report.jobs) == charged
    gpu_seconds = session.scalar(
        select(func.sum(UsageRecord.quantity_micro)).where(
            UsageRecord.project_id == world.a.project_id
        )
    )
    assert report.efficiency.gpu_seconds == pytest.approx(gpu_seconds / 1_000_000)
    assert report.efficiency.gpu_seconds == pytest.approx(2 * 600 + 1 * 1200, abs=120)
    assert report.efficiency.mean_gpu_util_percent is None
    assert report.usage[0].flavour == "a100-80gb"
    assert verify_ledger(session).ok


def test_program_report_sums_both_projects(session: Session, world: ReportsWorld) -> None:
    report = program_report(session, world.program_id, world.clock())

    _check_lines_against_ledger(session, report)
    (balance,) = report.balances
    used = {
        pid: sum(job.charged_micro for job in _jobs(session, pid))
        for pid in (world.a.project_id, world.b.project_id)
    }
    assert balance.awarded == AWARD_A + AWARD_B
    assert balance.used == sum(used.values())
    assert balance.available == AWARD_A + AWARD_B - sum(used.values())
    by_project = {line.project_id: line for line in report.by_project}
    assert by_project[world.a.project_id].used == used[world.a.project_id]
    assert by_project[world.b.project_id].used == used[world.b.project_id]
    assert by_project[world.b.project_id].institution == "Uni B"
    institutions = {line.institution: line.used for line in report.by_institution}
    assert institutions == {"Uni A": used[world.a.project_id], "Uni B": used[world.b.project_id]}
    assert {o.state: o.jobs for o in report.outcomes} == {"failed": 1, "succeeded": 2}
    assert {line.allocation_id for line in report.allocations} == {
        world.allocation_a,
        world.allocation_b,
    }


def test_expiry_and_overage_are_reported_where_they_belong(
    session: Session, world: ReportsWorld
) -> None:
    """An account outside the program expires in project B's report only; overage
    booked to B's usage sink shows in B's balance."""
    now = world.clock()
    extra = ledger.open_account(
        session,
        code="b-extra",
        currency=Currency.GPU,
        project_id=world.b.project_id,
        starts_at=now - timedelta(hours=1),
        expires_at=now + timedelta(hours=1),
        actor=world.a.ops,
    )
    ledger.grant(
        session,
        key="b-extra-fund",
        from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.GPU),
        to_account_id=extra.id,
        amount=5 * CREDIT,
        actor=world.a.ops,
        now=now,
    )
    book_overage(
        session,
        key="b-overage",
        project_id=world.b.project_id,
        currency=Currency.GPU,
        amount=123_457,
        actor=world.a.ops,
        now=now,
    )
    later = now + timedelta(hours=2)
    ledger.expire_account(session, account_id=extra.id, actor=world.a.ops, now=later)

    project = project_report(session, world.b.project_id, later)
    program = program_report(session, world.program_id, later)

    _check_lines_against_ledger(session, project)
    (balance,) = project.balances
    assert balance.expired == 5 * CREDIT
    assert balance.overage == 123_457
    sink_overage = session.scalar(
        select(func.sum(Transfer.amount)).where(
            Transfer.kind == TransferKind.GRANT.value,
            Transfer.credit_account_id.in_(
                select(ledger.ACCOUNTS.c.id).where(
                    ledger.ACCOUNTS.c.code == project_sink_code(world.b.project_id, Currency.GPU)
                )
            ),
        )
    )
    assert balance.overage == sink_overage
    assert program.balances[0].expired == 0
    assert project.balances[0].awarded == AWARD_B + 5 * CREDIT


def test_efficiency_and_energy_come_from_telemetry(session: Session, world: ReportsWorld) -> None:
    first, second = sorted(_jobs(session, world.a.project_id), key=lambda job: job.id)
    at = world.clock()
    add_telemetry(session, first.id, samples=10, util=80.0, energy_mj=KWH_MJ, at=at)
    add_telemetry(session, second.id, samples=10, util=20.0, energy_mj=2 * KWH_MJ, at=at)

    report = project_report(session, world.a.project_id, at, energy=SYSTEM_PUE)

    jobs = {job.job_id: job for job in report.jobs}
    weights = {job_id: jobs[job_id].gpu_seconds for job_id in jobs}
    expected = (80 * weights[first.id] + 20 * weights[second.id]) / sum(weights.values())
    assert report.efficiency.mean_gpu_util_percent == pytest.approx(expected, abs=1e-3)
    assert jobs[first.id].footprint.kwh == pytest.approx(1.0)
    # 1 kWh x PUE 1.5 x 400 g/kWh = 0.6 kg.
    assert jobs[first.id].footprint.kg_co2e == pytest.approx(0.6)
    assert report.footprint.kwh == pytest.approx(3.0)
    assert report.footprint.kg_co2e == pytest.approx(1.8)
    (line,) = report.allocations
    assert line.footprint.kg_co2e == pytest.approx(1.8)
    program = program_report(session, world.program_id, at, energy=SYSTEM_PUE)
    assert program.footprint.kwh == pytest.approx(3.0)
    (group,) = [g for g in program.by_project if g.project_id == world.a.project_id]
    assert group.footprint.kg_co2e == pytest.approx(1.8)


def test_burn_down_projects_exhaustion_from_last_week(
    session: Session, world: ReportsWorld
) -> None:
    now = world.clock()
    report = project_report(session, world.a.project_id, now)

    (burn,) = report.burndown
    used = report.balances[0].used
    assert burn.rate_per_day == used // 7
    assert burn.spendable == report.balances[0].available
    assert burn.daily[-1].cumulative_used == used
    # At this rate the credits would last over a year, but the allocation ends in 30
    # days with most of them unused: they run out when it ends.
    (allocation,) = report.allocations
    assert allocation.expires_at is not None
    assert burn.spendable / (used / 7) > 365
    assert burn.projected_exhaustion == allocation.expires_at.date()
    assert 0 < burn.forecast_unused <= burn.spendable
    quiet = project_report(session, world.a.project_id, now + timedelta(days=8))
    assert quiet.burndown[0].projected_exhaustion is None
    assert quiet.burndown[0].forecast_unused == quiet.balances[0].available


def _second_program_awarding_a(session: Session, world: ReportsWorld, amount: int) -> int:
    """Program "Bridge" awards project A ``amount``, ending before program one's award, so
    A's next hold takes from it first and the rest from program one."""
    bridge = programs.create_program(
        session,
        name="Bridge",
        description="Top-ups.",
        opens_at=world.clock() - timedelta(days=1),
        closes_at=world.clock() + timedelta(days=60),
        criteria=[{"key": "merit", "label": "Merit"}],
        min_reviewers=1,
        min_mean_score=300,
        actor=world.funder,
    )
    programs.open_program(session, program_id=bridge.id, actor=world.funder)
    funding.fund_program(
        session,
        program_id=bridge.id,
        currency=Currency.GPU,
        amount_micro=10 * CREDIT,
        key="bridge-fund",
        actor=world.funder,
        reason="FY27",
    )
    pi = actor_for_email(session, "pi_a@example.org")
    award(session, pi, world.funder, bridge.id, world.a.project_id, amount, days=10)
    return bridge.id


def _split_job(factory: sessionmaker[Session]) -> tuple[ReportsWorld, int, JobOut]:
    """A world whose project A is awarded by a second program too, and a job of A whose
    hold takes half a credit from that program's award and the rest from program one."""
    world = build_reports_world(factory)
    with session_scope(factory) as session:
        bridge = _second_program_awarding_a(session, world, CREDIT // 2)
    return world, bridge, world.a.submit(gpus=2, duration=1800)


def test_a_job_paid_by_two_programs_counts_once_across_their_reports(
    joined_session_factory: sessionmaker[Session],
) -> None:
    world, bridge, _ = _split_job(joined_session_factory)
    world.run_until_done()
    with session_scope(joined_session_factory) as session:
        (job,) = _jobs(session, world.a.project_id)
        assert job.charged_micro > CREDIT // 2  # more than the bridge award: the job split
        now = world.clock()
        reports = [program_report(session, pid, now) for pid in (world.program_id, bridge)]
        whole = project_report(session, world.a.project_id, now)

    for report in reports:
        (balance,) = report.balances
        assert sum(line.used for line in report.usage) == balance.used > 0
        assert [line.job_id for line in report.jobs] == [job.id]
    assert reports[1].balances[0].used == CREDIT // 2
    assert sum(r.balances[0].used for r in reports) == job.charged_micro
    assert sum(line.used for r in reports for line in r.usage) == job.charged_micro
    hours = [sum(line.gpu_hours for line in r.usage) for r in reports]
    assert sum(hours) == pytest.approx(sum(line.gpu_hours for line in whole.usage))
    assert hours[1] / sum(hours) == pytest.approx((CREDIT // 2) / job.charged_micro)
    seconds = [r.efficiency.gpu_seconds for r in reports]
    assert sum(seconds) == pytest.approx(whole.efficiency.gpu_seconds, abs=0.01)


def test_a_scoped_job_with_nothing_captured_yet_counts_where_its_hold_drew_first(
    joined_session_factory: sessionmaker[Session],
) -> None:
    world, bridge, job = _split_job(joined_session_factory)
    with session_scope(joined_session_factory) as session:
        add_telemetry(session, job.id, samples=1, util=50.0, energy_mj=KWH_MJ, at=world.clock())
        now = world.clock()
        main, top_up = (program_report(session, pid, now) for pid in (world.program_id, bridge))

    assert top_up.balances[0].held == CREDIT // 2 and main.balances[0].held > 0
    assert top_up.footprint.kwh == pytest.approx(1.0)
    assert main.footprint.kwh == 0
    assert [line.job_id for line in main.jobs] == [line.job_id for line in top_up.jobs] == [job.id]


@pytest.mark.parametrize(
    ("amounts", "weight"),
    [
        ([3, 3, 3], Fraction(1, 2)),
        ([1, 0, 7, 2], Fraction(2, 3)),
        ([5], Fraction(0)),
        ([], Fraction(1, 3)),
    ],
)
def test_apportioned_credits_add_up_to_the_weighted_total(
    amounts: list[int], weight: Fraction
) -> None:
    shares = apportion(amounts, weight)
    assert sum(shares) == round(sum(amounts) * weight)
    assert all(
        abs(share - amount * weight) < 1 for share, amount in zip(shares, amounts, strict=True)
    )


def test_a_split_jobs_overage_counts_where_its_hold_drew_first(
    joined_session_factory: sessionmaker[Session],
) -> None:
    world, bridge, job = _split_job(joined_session_factory)
    world.a.cycle()
    world.clock.advance(60)
    with session_scope(joined_session_factory) as session:
        # A hold released early covers none of the usage: all of it is overage.
        void_hold(
            session, key="split-void", hold_key=job.hold_key, actor=world.funder, now=world.clock()
        )
    world.run_until_done()
    with session_scope(joined_session_factory) as session:
        overage = session.get_one(Job, job.id).overage_micro
        assert overage > 0
        now = world.clock()
        main, top_up = (program_report(session, pid, now) for pid in (world.program_id, bridge))

    assert top_up.balances[0].overage == sum(line.overage for line in top_up.usage) == overage
    assert main.balances[0].overage == 0
    assert main.usage == []  # no line of zeros for a job that is wholly the bridge's
    assert [line.gpu_overage for line in top_up.spend] == [overage]


def test_a_funders_view_of_a_project_forecasts_as_their_programs_report_does(
    joined_session_factory: sessionmaker[Session],
) -> None:
    """The project spent program one's credits last week; program "Bridge" awards it
    more, ending sooner. Spent first, Bridge's credits are forecast to run low at the
    project's rate, whoever reads them."""
    world = build_reports_world(joined_session_factory)
    world.a.submit(gpus=2, duration=1800)
    world.run_until_done()
    with session_scope(joined_session_factory) as session:
        bridge = _second_program_awarding_a(session, world, 2 * CREDIT)
        now = world.clock()
        program = program_report(session, bridge, now)
        seen = Account.id.in_([line.account_id for line in program.allocations])
        project = project_report(session, world.a.project_id, now, visible=seen)

    (line,) = program.allocations
    assert line.forecast_unused < line.available == 2 * CREDIT
    assert [(a.account_id, a.forecast_unused) for a in project.allocations] == [
        (line.account_id, line.forecast_unused)
    ]
    assert project.balances[0].forecast_unused == line.forecast_unused


def _outside_usage(world: ReportsWorld, amount: int) -> None:
    """An outside meter reports ``amount`` credits of project A's, settled at once."""
    with session_scope(world.factory) as session:
        session.add(outside_record(world.a.project_id, f"outside-{amount}", amount, world.clock()))
    assert settle_all_pending(world.factory, batch_size=100, clock=world.clock).records == 1


def test_a_programs_usage_lines_count_outside_meters_it_paid_for(
    joined_session_factory: sessionmaker[Session],
) -> None:
    """Bridge ends sooner, so an outside record of 2 credits takes its 0.5 first and the
    rest from program one: each report's usage adds up to its balances' used."""
    world = build_reports_world(joined_session_factory)
    with session_scope(joined_session_factory) as session:
        bridge = _second_program_awarding_a(session, world, CREDIT // 2)
    _outside_usage(world, 2 * CREDIT)
    with session_scope(joined_session_factory) as session:
        now = world.clock()
        main, top_up = (program_report(session, pid, now) for pid in (world.program_id, bridge))

    assert top_up.balances[0].used == CREDIT // 2
    assert main.balances[0].used == 2 * CREDIT - CREDIT // 2
    for report in (main, top_up):
        assert sum(line.used for line in report.usage) == report.balances[0].used
        assert {line.flavour for line in report.usage} == {"(external)"}
        assert all(line.jobs == 0 for line in report.usage)
