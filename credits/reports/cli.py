"""``credits reports``: program and project reports, and the nudges run once."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from credits import formatting as fmt
from credits.cli_support import cli_settings, cli_transaction, reports_errors
from credits.db import utcnow
from credits.reports.csv_export import to_csv
from credits.reports.energy import policy_from_settings
from credits.reports.nudges import run_nudges
from credits.reports.schemas import ProgramReport, ProjectReport
from credits.reports.service import program_report, project_report

_BALANCE = ("awarded", "released", "adjusted", "held", "used", "expired", "available", "overage")


@click.group()
def reports() -> None:
    """Reports for funders and projects, and the nudges they send."""


def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*row)
    return table


def _print(report: ProgramReport | ProjectReport, heading: str) -> None:
    console = Console(width=160)
    console.print(f"[bold]{heading}[/bold] at {fmt.when(report.generated_at)}")
    console.print(
        _table(
            "balances (credits)",
            ["currency", *_BALANCE, "forecast unused", "lapsed"],
            [
                [fmt.currency_name(b.currency)]
                + [fmt.exact_number(getattr(b, name)) for name in _BALANCE]
                + [fmt.exact_number(b.forecast_unused), fmt.exact_number(b.lapsed)]
                for b in report.balances
            ],
        )
    )
    console.print(
        _table(
            "allocations",
            ["account", "project", "expires", "used", "available", "forecast unused", "kWh"],
            [
                [
                    a.code,
                    str(a.project_id),
                    fmt.until_day(a.expires_at),
                    fmt.exact_number(a.used),
                    fmt.exact_number(a.available),
                    fmt.exact_number(a.forecast_unused),
                    f"{a.footprint.kwh:.3f}",
                ]
                for a in report.allocations
            ],
        )
    )
    console.print(
        _table(
            "usage by flavour and month",
            ["currency", "flavour", "month", "used", "overage", "GPU-hours", "jobs", "kg CO2e"],
            [
                [
                    fmt.currency_name(u.currency),
                    u.flavour,
                    u.month,
                    fmt.exact_number(u.used),
                    fmt.exact_number(u.overage),
                    f"{u.gpu_hours:.2f}",
                    str(u.jobs),
                    f"{u.footprint.kg_co2e:.3f}",
                ]
                for u in report.usage
            ],
        )
    )
    _print_spend(console, report)
    for burn in report.burndown:
        ends = fmt.latest_end(report.allocations, burn.currency)
        when = fmt.exhaustion(burn.projected_exhaustion, ends, burn.outlasts_allocations)
        rate, spendable, unused = (
            fmt.money(micro, burn.currency, exact=True)
            for micro in (burn.rate_per_day, burn.spendable, burn.forecast_unused)
        )
        console.print(
            f"burn-down {fmt.currency_name(burn.currency)}: {rate}/day, "
            f"{spendable} spendable, runs out: {when}, {unused} forecast to expire unused"
        )
    eff = report.efficiency
    util = "-" if eff.mean_gpu_util_percent is None else f"{eff.mean_gpu_util_percent:.1f}%"
    console.print(
        f"GPU efficiency {util} over {eff.measured_gpu_seconds / 3600:.2f} of "
        f"{eff.gpu_seconds / 3600:.2f} GPU-hours; energy {report.footprint.kwh:.3f} kWh, "
        f"{report.footprint.kg_co2e:.3f} kg CO2e"
    )
    outcomes = ", ".join(f"{fmt.status(o.state)} {o.jobs}" for o in report.outcomes) or "no jobs"
    console.print(f"jobs: {outcomes}")


def _print_spend(console: Console, report: ProgramReport | ProjectReport) -> None:
    """GPU and labelling spend side by side, then labelling spend by vendor and program."""
    console.print(
        _table(
            "spend by project (credits)",
            ["project", "title", "GPU used", "GPU overage", "GPU spent", "labelling spent"],
            [
                [str(s.project_id), s.title]
                + [fmt.exact_number(v) for v in (s.gpu_used, s.gpu_overage, s.gpu_spent)]
                + [fmt.exact_number(s.labelling_spent)]
                for s in report.spend
            ],
        )
    )
    money = ("captured", "overage", "refunded", "spent")
    console.print(
        _table(
            "labelling spend by vendor, program and project (credits)",
            ["vendor", "program", "project", "orders", *money],
            [
                [line.vendor, str(line.program_id or "-"), str(line.project_id), str(line.orders)]
                + [fmt.exact_number(getattr(line, name)) for name in money]
                for line in report.labelling
            ],
        )
    )
    vendors = ", ".join(
        f"{v.vendor} {fmt.exact_number(v.spent)} ({v.orders} orders)"
        for v in report.labelling_by_vendor
    )
    console.print(f"labelling spend by vendor: {vendors or 'none'}")


def _emit(report: ProgramReport | ProjectReport, heading: str, as_csv: bool, as_json: bool) -> None:
    if as_csv and as_json:
        raise click.UsageError("choose one of --csv and --json")
    if as_csv:
        click.echo(to_csv(report), nl=False)
    elif as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        _print(report, heading)


@reports.command()
@click.argument("program_id", type=click.IntRange(min=1))
@click.option("--csv", "as_csv", is_flag=True, help="Print one flat CSV table.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@reports_errors
def program(program_id: int, as_csv: bool, as_json: bool) -> None:
    """Report on a program's allocations."""
    energy = policy_from_settings(cli_settings())
    with cli_transaction(snapshot=True) as session:
        report = program_report(session, program_id, utcnow(), energy=energy)
    _emit(report, f"program {report.program_id}: {report.name}", as_csv, as_json)


@reports.command()
@click.argument("project_id", type=click.IntRange(min=1))
@click.option("--csv", "as_csv", is_flag=True, help="Print one flat CSV table.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@reports_errors
def project(project_id: int, as_csv: bool, as_json: bool) -> None:
    """Report on a project."""
    energy = policy_from_settings(cli_settings())
    with cli_transaction(snapshot=True) as session:
        report = project_report(session, project_id, utcnow(), energy=energy)
    heading = f"project {report.project_id}: {report.title} ({report.institution})"
    _emit(report, heading, as_csv, as_json)


@reports.command()
@reports_errors
def nudges() -> None:
    """Queue every nudge once: allocations expiring mostly unused, idle GPUs, low balances."""
    settings = cli_settings()
    with cli_transaction() as session:
        report = run_nudges(session, now=utcnow(), idle_percent=settings.idle_gpu_util_percent)
    click.echo(
        f"queued {report.underused} underused-allocation, {report.idle} idle-GPU "
        f"and {report.low_balance} low-balance notices"
    )
