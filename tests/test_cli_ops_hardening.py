"""What ops type into the CLI: refused in one line rather than a traceback, settled only
one way, listed to the last row, refused for system accounts, and a replay said so."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result
from grants_helpers import person
from jobs_world import FLAVOUR, JobsWorld, build_jobs_world
from labelling_world import CREDIT, LabellingWorld
from labelling_world import build_world as build_labelling_world
from proposal_helpers import awarded
from proposal_helpers import world as grants_world
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.identity.models import Role
from credits.labelling import listing
from credits.labelling.queries import get_order
from credits.ledger import queries as ledger_queries
from credits.settings import load_settings

Invoke = Callable[..., Result]
FAR = "9999-12-31T23:59:59-14:00"
HUGE = "99999999999999999999999"
FUNDER = "fay@funder.example"


@pytest.fixture
def invoke(joined_session_factory: sessionmaker[Session]) -> Invoke:
    def run(*args: str) -> Result:
        return CliRunner(env={"COLUMNS": "300"}).invoke(
            main,
            list(args),
            obj={"session_factory": joined_session_factory, "settings": load_settings()},
        )

    return run


@pytest.fixture
def jobs(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


@pytest.fixture
def labelling(session: Session) -> LabellingWorld:
    world = build_labelling_world(session, label_credits=10 * CREDIT)
    session.flush()
    return world


def _email(actor: object) -> str:
    email = getattr(actor, "email", None)
    assert isinstance(email, str)
    return email


def _one_line_error(result: Result, *words: str) -> None:
    """``error: …`` on one line and exit 1: a refusal, not a traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]


def _refused_not_raised(result: Result) -> None:
    """Refused by the option (click's usage error) or in one line; never an exception."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (1, 2), result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(("error: ", "Error: ")), result.output


# Resolving a dispute settles one way only.


@pytest.mark.parametrize(
    "outcomes",
    [
        ("--accept", "--cancel"),
        ("--cancel", "--accept"),
        ("--accept", "--refund", "1"),
        ("--cancel", "--refund", "1"),
        (),
    ],
    ids=["accept+cancel", "cancel+accept", "accept+refund", "cancel+refund", "none"],
)
def test_resolve_with_other_than_exactly_one_outcome_is_refused_and_settles_nothing(
    labelling: LabellingWorld, invoke: Invoke, session: Session, outcomes: tuple[str, ...]
) -> None:
    order = labelling.placed(session, items=2, redundancy=2)
    labelling.deliver_all(session, order.id)
    disputed = invoke(
        "labelling", "dispute", str(order.id), "--reason", "bad", "--as", _email(labelling.pi)
    )
    assert disputed.exit_code == 0, disputed.output
    available = labelling.available(session)

    result = invoke(
        "labelling", "resolve", str(order.id), *outcomes,
        "--note", "x", "--as", _email(labelling.ops),
    )  # fmt: skip

    _one_line_error(result, "exactly one")
    assert get_order(session, labelling.ops, order_id=order.id).status == "disputed"
    assert labelling.available(session) == available


def test_resolve_with_cancel_alone_cancels(
    labelling: LabellingWorld, invoke: Invoke, session: Session
) -> None:
    order = labelling.placed(session, items=2, redundancy=2)
    labelling.deliver_all(session, order.id)
    invoke("labelling", "dispute", str(order.id), "--reason", "bad", "--as", _email(labelling.pi))

    result = invoke(
        "labelling", "resolve", str(order.id), "--cancel", "--note", "x",
        "--as", _email(labelling.ops),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert get_order(session, labelling.ops, order_id=order.id).resolution == "cancelled"


# Listings follow next_cursor to the last row, as programs and allocations list do.


def test_labelling_orders_lists_every_order_past_one_page(
    labelling: LabellingWorld, invoke: Invoke, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "MAX_PAGE", 2)  # a page of two: five orders take three
    made = [labelling.draft(session, items=1).id for _ in range(5)]
    session.flush()

    listed = invoke("labelling", "orders", "--json")
    table = invoke("labelling", "orders", "--project", str(labelling.project_id))

    assert listed.exit_code == 0, listed.output
    assert [order["id"] for order in json.loads(listed.output)["items"]] == made
    assert json.loads(listed.output)["next_cursor"] is None
    assert f"│ {made[-1]} " in table.output


def test_jobs_list_lists_every_job_past_one_page(
    jobs: JobsWorld, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 55 jobs: more than the old default of 50, and three pages of 20.
    monkeypatch.setattr("credits.jobs.cli.MAX_PAGE", 20, raising=False)
    made = [jobs.submit(name=f"j{n}", gpus=1, max_runtime_seconds=60).id for n in range(55)]

    listed = invoke("jobs", "list", "--json")
    table = invoke("jobs", "list")

    assert listed.exit_code == 0, listed.output
    assert [job["id"] for job in json.loads(listed.output)["items"]] == made
    assert table.exit_code == 0 and "j54" in table.output


def test_limit_caps_the_listing_to_its_oldest_rows_across_pages(
    labelling: LabellingWorld,
    jobs: JobsWorld,
    invoke: Invoke,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listing, "MAX_PAGE", 2)
    monkeypatch.setattr("credits.jobs.cli.MAX_PAGE", 2, raising=False)
    orders = [labelling.draft(session, items=1).id for _ in range(5)]
    session.flush()
    made = [jobs.submit(name=f"j{n}", gpus=1, max_runtime_seconds=60).id for n in range(5)]

    listed_orders = invoke("labelling", "orders", "--limit", "3", "--json")
    listed_jobs = invoke("jobs", "list", "--limit", "3", "--json")
    refused = invoke("jobs", "list", "--limit", "0")

    assert [o["id"] for o in json.loads(listed_orders.output)["items"]] == orders[:3]
    assert [j["id"] for j in json.loads(listed_jobs.output)["items"]] == made[:3]
    assert refused.exit_code != 0 and "--limit" in refused.output


# Bad ids, far times and refused filters: one line, never a traceback.


@pytest.mark.parametrize(
    "args",
    [
        ("ledger", "balance", "--account", HUGE),
        ("ledger", "set-status", "--account", HUGE, "--status", "suspended", "--reason", "x",
         "--as", "ops@example.org"),
        ("jobs", "show", str(2**63)),
        ("jobs", "cancel", HUGE, "--as", "ops@example.org"),
        ("jobs", "list", "--project", "0"),
        ("jobs", "list", "--project", HUGE),
        ("labelling", "orders", "--project", "0"),
        ("labelling", "show", HUGE),
        ("allocations", "adjust", HUGE, "--amount", "1", "--reason", "x",
         "--as", "ops@example.org"),
        ("projects", "show", HUGE),
        ("datasets", "list", "--project", HUGE),
        ("datasets", "show", HUGE),
        ("tokens", "revoke", HUGE),
        ("notifications", "list", "--limit", "1" + "0" * 23),
        ("programs", "create", "--name", "P", "--description", "D", "--opens", "2031-01-01",
         "--closes", FAR, "--criteria", "merit:Merit", "--min-reviewers", "1",
         "--min-mean-score", "3", "--as", FUNDER),
        ("programs", "create", "--name", "P", "--description", "D", "--opens", "2031-01-01",
         "--closes", "9999-12-31", "--criteria", "merit:Merit", "--min-reviewers", "1",
         "--min-mean-score", "3", "--as", FUNDER),
        ("pool", "rates", "set", "--flavour", FLAVOUR, "--credits-per-gpu-hour", "1",
         "--effective-from", FAR, "--as", "ops@example.org"),
    ],
    ids=lambda args: " ".join(args[:2]),
)  # fmt: skip
def test_an_out_of_range_id_number_or_time_is_refused_not_raised(
    jobs: JobsWorld, invoke: Invoke, session: Session, args: tuple[str, ...]
) -> None:
    person(session, FUNDER, Role.FUNDER)  # so that a program's time is what is refused
    _refused_not_raised(invoke(*args))


def test_a_rate_from_a_year_the_api_refuses_is_refused_by_name(
    jobs: JobsWorld, invoke: Invoke
) -> None:
    result = invoke(
        "pool", "rates", "set", "--flavour", FLAVOUR, "--credits-per-gpu-hour", "1",
        "--effective-from", FAR, "--as", "ops@example.org",
    )  # fmt: skip

    _one_line_error(result, "the year must lie between 1970 and 9000")


def test_a_filter_the_query_model_refuses_is_one_line(jobs: JobsWorld, invoke: Invoke) -> None:
    _one_line_error(invoke("jobs", "list", "--flavour", "x" * 64), "flavour")


# System accounts keep their status.


@pytest.mark.parametrize("code", ["system:source:gpu", "system:overage:gpu"])
def test_set_status_refuses_to_suspend_a_system_account(
    jobs: JobsWorld, invoke: Invoke, session: Session, code: str
) -> None:
    account = ledger_queries.get_account_by_code(session, code=code)

    result = invoke(
        "ledger", "set-status", "--account", str(account.id), "--status", "suspended",
        "--reason", "x", "--as", "ops@example.org",
    )  # fmt: skip

    _one_line_error(result, "only allocation and program-pool accounts")
    assert ledger_queries.get_account(session, account_id=account.id).status == "active"


# A replayed adjustment says so.


def test_allocations_adjust_marks_a_replay_by_key(session: Session, invoke: Invoke) -> None:
    w = grants_world(session)
    (allocation,) = awarded(session, w).allocations
    args = (
        "allocations", "adjust", str(allocation.id), "--amount", "2.5", "--reason", "fix",
        "--as", "ops@platform.example", "--key", "adj-1",
    )  # fmt: skip

    first, again = invoke(*args), invoke(*args)

    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert "(replayed)" not in first.output
    assert again.output.strip().endswith("(replayed)")
    assert ledger_queries.get_account(session, account_id=allocation.account_id).available == (
        allocation.available_micro + 2_500_000
    )
