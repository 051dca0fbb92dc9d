"""``credits programs`` and ``credits projects``: one transaction and one service call each.

Commands that change something act as the user named by ``--as``, whose
rights the service checks; listings and shows read as ops
(:data:`credits.identity.access.CLI_READER`), since whoever can run the CLI
against the database can read it all anyway.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from credits import formatting as fmt
from credits.cli_support import ROW_ID, all_pages, cli_transaction, reports_errors
from credits.grants import programs as program_service
from credits.grants import projects as project_service
from credits.grants import queries
from credits.grants.funding import fund_program as fund_program_service
from credits.grants.schemas import ProgramOut, ProjectDetail, ProjectOut
from credits.identity.access import (
    CLI_READER,
    get_program_for_actor,
    get_project_for_actor,
    list_programs_for_actor,
    list_projects_for_actor,
)
from credits.identity.service import actor_for_email, get_user_by_email
from credits.ledger.models import Currency
from credits.money import parse_credits
from credits.schema_types import EARLIEST_YEAR, LATEST_YEAR

CURRENCY_CHOICE = click.Choice([currency.value for currency in Currency])


def _parse_time(text: str, option: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 time with a zone, or a bare date (UTC).

    A bare date opens at its first instant; as a closing time (``end_of_day``)
    it takes in the whole day and closes at the next midnight. A time without a
    zone is refused rather than guessed.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=option) from None
    # The API's bounds (ApiTime): a year far out overflows when moved to UTC or a day on.
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise click.BadParameter(
            f"{text!r}: the year must lie between {EARLIEST_YEAR} and {LATEST_YEAR}",
            param_hint=option,
        )
    if len(text.strip()) == len("2027-03-31"):
        day = moment.replace(tzinfo=UTC)
        return day + timedelta(days=1) if end_of_day else day
    if moment.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} has no timezone; add one (e.g. Z or +01:00) or give a bare date",
            param_hint=option,
        )
    return moment


def _parse_criterion(text: str) -> dict[str, str]:
    key, colon, label = text.partition(":")
    if not colon:
        raise click.BadParameter(f"{text!r} is not key:Label", param_hint="--criteria")
    return {"key": key.strip(), "label": label.strip()}


def _parse_score(text: str) -> int:
    """'3.5' → 350 hundredths; finer than a hundredth is refused."""
    try:
        hundredths = Decimal(text) * 100
    except InvalidOperation:
        raise click.BadParameter(
            f"{text!r} is not a number", param_hint="--min-mean-score"
        ) from None
    if not hundredths.is_finite() or hundredths != hundredths.to_integral_value():
        raise click.BadParameter(
            f"{text!r} has more than two decimals", param_hint="--min-mean-score"
        )
    return int(hundredths)


def _all_programs(session: Session) -> list[ProgramOut]:
    def fetch(cursor: int | None) -> tuple[list[ProgramOut], int | None]:
        page = list_programs_for_actor(session, CLI_READER, cursor=cursor, limit=queries.MAX_PAGE)
        return page.items, page.next_cursor

    return list(all_pages(fetch))


def _all_projects(session: Session) -> list[ProjectOut]:
    def fetch(cursor: int | None) -> tuple[list[ProjectOut], int | None]:
        page = list_projects_for_actor(session, CLI_READER, cursor=cursor, limit=queries.MAX_PAGE)
        return page.items, page.next_cursor

    return list(all_pages(fetch))


def _print_table(headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
    table = Table(title=title)
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


def _score(hundredths: int) -> str:
    return f"{Decimal(hundredths) / 100:.2f}"


def _remaining(program: ProgramOut, currency: Currency) -> str:
    line = next((b for b in program.budget if b.currency is currency), None)
    return fmt.NOTHING if line is None else fmt.exact_number(line.remaining)


# Programs.


@click.group()
def programs() -> None:
    """Funding calls: create, open, close, fund and inspect programs."""


@programs.command("create")
@click.option("--name", required=True)
@click.option("--description", required=True)
@click.option("--owner", "owners", multiple=True, help="Email of an owner funder; repeatable.")
@click.option(
    "--opens", required=True, help="When the call opens: a time with a zone, or a date (UTC)."
)
@click.option(
    "--closes",
    required=True,
    help="When it closes: a time with a zone, or a date (UTC; the whole day is open).",
)
@click.option("--criteria", "criteria", multiple=True, required=True, help="key:Label; repeatable.")
@click.option("--min-reviewers", type=int, required=True)
@click.option("--min-mean-score", required=True, help="1 to 5, two decimals at most (3.5).")
@click.option("--initial-share-percent", type=int, default=None, help="Released at award.")
@click.option("--as", "as_email", required=True, help="Email of the funder or ops user.")
@reports_errors
def create_program(
    *,
    name: str,
    description: str,
    owners: tuple[str, ...],
    opens: str,
    closes: str,
    criteria: tuple[str, ...],
    min_reviewers: int,
    min_mean_score: str,
    initial_share_percent: int | None,
    as_email: str,
) -> None:
    """Create a draft program; a funder creating it becomes an owner."""
    opens_at = _parse_time(opens, "--opens")
    closes_at = _parse_time(closes, "--closes", end_of_day=True)
    parsed_criteria = [_parse_criterion(item) for item in criteria]
    score = _parse_score(min_mean_score)
    with cli_transaction() as session:
        actor = actor_for_email(session, as_email)
        program = program_service.create_program(
            session,
            name=name,
            description=description,
            opens_at=opens_at,
            closes_at=closes_at,
            criteria=parsed_criteria,
            min_reviewers=min_reviewers,
            min_mean_score=score,
            initial_share_percent=initial_share_percent,
            owner_ids=[get_user_by_email(session, email).id for email in owners],
            actor=actor,
        )
    owner_list = ", ".join(owner.email for owner in program.owners)
    click.echo(f"created program {program.id} {program.name!r} (draft), owners: {owner_list}")


@programs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (micro-credits) instead.")
@reports_errors
def list_programs(as_json: bool) -> None:
    """List every program with what is left of its budget."""
    with cli_transaction() as session:
        found = _all_programs(session)
    if as_json:
        click.echo(json.dumps([program.model_dump(mode="json") for program in found]))
        return
    rows = [
        [
            str(p.id),
            p.name,
            fmt.status(p.status),
            fmt.from_day(p.opens_at),
            fmt.until_day(p.closes_at),
            ", ".join(owner.email for owner in p.owners),
            _remaining(p, Currency.GPU),
            _remaining(p, Currency.LABEL),
        ]
        for p in found
    ]
    headers = [
        "id", "name", "status", "opens", "closes", "owners",
        "GPU credits left", "labelling credits left",
    ]  # fmt: skip
    _print_table(headers, rows)


@programs.command("show")
@click.argument("program_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (micro-credits) instead.")
@reports_errors
def show_program(program_id: int, as_json: bool) -> None:
    """Show one program: window, review policy, owners and budget."""
    with cli_transaction() as session:
        program = get_program_for_actor(session, CLI_READER, program_id)
    if as_json:
        click.echo(program.model_dump_json())
        return
    share = program.initial_share_percent
    click.echo(f"program {program.id} {program.name!r} ({fmt.status(program.status)})")
    click.echo(f"window: {fmt.from_day(program.opens_at)} to {fmt.until_day(program.closes_at)}")
    click.echo(
        f"review: {program.min_reviewers} reviewer(s), mean score at least "
        f"{_score(program.min_mean_score)}; released at award: "
        + ("all" if share is None else f"{share}%")
    )
    click.echo("criteria: " + ", ".join(f"{c.key} ({c.label})" for c in program.criteria))
    click.echo("owners: " + ", ".join(owner.email for owner in program.owners))
    rows = [
        [
            f"{fmt.currency_name(line.currency)} credits",
            str(line.account_id),
            *(
                fmt.exact_number(v)
                for v in (line.funded, line.awarded, line.held, line.promised, line.remaining)
            ),
        ]
        for line in program.budget
    ]
    _print_table(
        ["currency", "account", "funded", "awarded", "held", "promised", "remaining"], rows
    )


@programs.command("fund")
@click.argument("program_id", type=ROW_ID)
@click.option("--currency", type=CURRENCY_CHOICE, required=True)
@click.option("--amount", required=True, help="Credits to move into the pool (e.g. 1000).")
@click.option("--reason", required=True, help="Why; kept in the journal and the audit log.")
@click.option("--as", "as_email", required=True, help="Email of an owner funder or ops user.")
@click.option("--key", help="Idempotency key; a random one is used when omitted.")
@reports_errors
def fund_program(
    *, program_id: int, currency: str, amount: str, reason: str, as_email: str, key: str | None
) -> None:
    """Move credits from the mint into the program's pool (an audited grant)."""
    micro = parse_credits(amount)
    with cli_transaction() as session:
        funding = fund_program_service(
            session,
            program_id=program_id,
            currency=currency,
            amount_micro=micro,
            key=key or f"cli:{uuid.uuid4()}",
            actor=actor_for_email(session, as_email),
            reason=reason,
        )
    note = " (replayed)" if funding.replayed else ""
    remaining = fmt.money(funding.budget.remaining, currency, exact=True)
    click.echo(
        f"transfer {funding.transfer.id}: {fmt.money(micro, currency, exact=True)} into "
        f"program {program_id}; remaining {remaining}{note}"
    )


@programs.command("open")
@click.argument("program_id", type=ROW_ID)
@click.option("--as", "as_email", required=True, help="Email of an owner funder or ops user.")
@reports_errors
def open_program(program_id: int, as_email: str) -> None:
    """Open a draft program for proposals."""
    with cli_transaction() as session:
        program = program_service.open_program(
            session, program_id=program_id, actor=actor_for_email(session, as_email)
        )
    click.echo(f"program {program.id} {program.name!r} is {fmt.status(program.status)}")


@programs.command("close")
@click.argument("program_id", type=ROW_ID)
@click.option("--as", "as_email", required=True, help="Email of an owner funder or ops user.")
@reports_errors
def close_program(program_id: int, as_email: str) -> None:
    """Close an open program to new proposals."""
    with cli_transaction() as session:
        program = program_service.close_program(
            session, program_id=program_id, actor=actor_for_email(session, as_email)
        )
    click.echo(f"program {program.id} {program.name!r} is {fmt.status(program.status)}")


# Projects.


@click.group()
def projects() -> None:
    """Research projects: inspect, suspend and unsuspend them."""


def _project_rows(found: list[ProjectOut]) -> list[list[str]]:
    return [
        [
            str(p.id),
            p.title,
            next((m.email for m in p.members if m.user_id == p.pi_user_id), str(p.pi_user_id)),
            fmt.status(p.status),
            p.institution,
            p.field_of_science,
            str(len(p.members)),
        ]
        for p in found
    ]


@projects.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")
@reports_errors
def list_projects(as_json: bool) -> None:
    """List every project with its PI and status."""
    with cli_transaction() as session:
        found = _all_projects(session)
    if as_json:
        click.echo(json.dumps([project.model_dump(mode="json") for project in found]))
        return
    headers = ["id", "title", "pi", "status", "institution", "field", "members"]
    _print_table(headers, _project_rows(found))


def _print_project(project: ProjectDetail) -> None:
    click.echo(f"project {project.id} {project.title!r} ({fmt.status(project.status)})")
    click.echo(f"institution: {project.institution}; field: {project.field_of_science}")
    members = [[str(m.user_id), m.email, m.name, fmt.status(m.role)] for m in project.members]
    _print_table(["user", "email", "name", "role"], members, title="members")
    accounts = [
        [
            str(a.id),
            a.code,
            fmt.status(a.kind),
            fmt.status(a.status),
            fmt.until_day(a.expires_at) if a.expires_at else "",
            fmt.money(a.available, a.currency, exact=True),
        ]
        for a in project.accounts
    ]
    _print_table(["id", "code", "kind", "status", "ends", "available"], accounts, title="accounts")


@projects.command("show")
@click.argument("project_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (micro-credits) instead.")
@reports_errors
def show_project(project_id: int, as_json: bool) -> None:
    """Show one project with its members and ledger accounts."""
    with cli_transaction() as session:
        project = get_project_for_actor(session, CLI_READER, project_id)
    if as_json:
        click.echo(project.model_dump_json())
        return
    _print_project(project)


@projects.command("suspend")
@click.argument("project_id", type=ROW_ID)
@click.option("--reason", required=True, help="Why; kept in the audit log.")
@click.option("--as", "as_email", required=True, help="Email of the ops user.")
@reports_errors
def suspend_project(project_id: int, reason: str, as_email: str) -> None:
    """Suspend a project and its allocations: no new holds (ops only)."""
    with cli_transaction() as session:
        project = project_service.suspend_project(
            session, project_id=project_id, actor=actor_for_email(session, as_email), reason=reason
        )
    click.echo(f"project {project.id} {project.title!r} is {fmt.status(project.status)}")


@projects.command("unsuspend")
@click.argument("project_id", type=ROW_ID)
@click.option("--reason", required=True, help="Why; kept in the audit log.")
@click.option("--as", "as_email", required=True, help="Email of the ops user.")
@reports_errors
def unsuspend_project(project_id: int, reason: str, as_email: str) -> None:
    """Make a suspended project and its allocations active again (ops only)."""
    with cli_transaction() as session:
        project = project_service.unsuspend_project(
            session, project_id=project_id, actor=actor_for_email(session, as_email), reason=reason
        )
    click.echo(f"project {project.id} {project.title!r} is {fmt.status(project.status)}")
