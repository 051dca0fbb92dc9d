"""No table or summary of the ``credits`` CLI shows people machine text.

The demo is seeded and used as in ``tests/ui/test_ui_readable_amounts.py`` (a
job held for 7 minutes, an award that starts in 8 days, an adjustment of
1.500001 credits), a labelling vendor gets a price and a dataset a draft; then
every listing and show command runs without ``--json``: none prints a raw
micro-credit amount, an ISO time (with microseconds or a ``T``), a state or
kind with an underscore, or a person as ``user:4``. The ``--json`` outputs
stay machine-readable (integers and ISO times).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_ui_readable_amounts import FLAVOUR, MICROSECONDS, RAW_MICRO, USER_LABEL, _use

from credits.cli import main
from credits.cli_support import exact_duration
from credits.db import utcnow
from credits.demo import DOMAIN, seed_demo
from credits.grants.models import Allocation, Program, Project
from credits.identity.tokens import TOKEN_DISPLAY_LENGTH, TOKEN_PREFIX
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.models import Job
from credits.ledger.models import Account
from credits.settings import load_settings

Invoke = Callable[..., Result]
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
# An account code (system:usage_sink:gpu) is an identifier ops type back, not a state.
UNDERSCORED = re.compile(r"(?<![\w:])[a-z]+_[a-z_]+(?![\w:])")
# A token's shown prefix (crd_ and eight random base64url characters) is an
# identifier too: crd_g-L55Xxs is not a state, whatever its random part is.
SHOWN_TOKEN = re.compile(
    rf"{re.escape(TOKEN_PREFIX)}[\w-]{{{TOKEN_DISPLAY_LENGTH - len(TOKEN_PREFIX)}}}"
)
OPS = f"demo-ops@{DOMAIN}"
RESEARCHER = f"demo-researcher@{DOMAIN}"


@pytest.fixture
def invoke(joined_session_factory: sessionmaker[Session], session: Session) -> Invoke:
    executor = SimulatedExecutor(
        [NodeCapacity(name="node-0", flavour=FLAVOUR, gpus=4)], clock=utcnow
    )
    seed_demo(session, flavour=FLAVOUR, gpus_per_node=4)
    _use(session)
    session.commit()

    def run(*args: str) -> Result:
        return CliRunner(env={"COLUMNS": "300"}).invoke(
            main,
            list(args),
            obj={
                "session_factory": joined_session_factory,
                "executor": executor,
                "settings": load_settings(),
            },
        )

    return run


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _seed_more(invoke: Invoke, project_id: int, tmp_path: Path) -> None:
    """A token, a labelling vendor with a price, a quoted order and a draft dataset,
    as ops and the researcher type them."""
    _ok(invoke("labelling", "vendors", "add", "Acme", "--adapter", "invoice",
               "--kinds", "single_label,text_spans", "--as", OPS))  # fmt: skip
    _ok(invoke("labelling", "prices", "set", "acme", "--unit", "label", "--price", "0.05",
               "--fee-percent", "2.5", "--as", OPS))  # fmt: skip
    _ok(invoke("tokens", "create", "--email", OPS, "--name", "ci"))
    items = tmp_path / "reviews.csv"
    items.write_text("id,text,gold\nr1,Loved it.,positive\nr2,Hated it.,\n")
    _ok(invoke("labelling", "create", str(items), "--project", str(project_id),
               "--vendor", "acme", "--title", "Sentiment", "--kind", "single_label",
               "--labels", "positive,negative", "--as", RESEARCHER))  # fmt: skip
    _ok(invoke("labelling", "quote", "1", "--as", RESEARCHER))
    _ok(invoke("datasets", "create", "--project", str(project_id), "--title", "Corpus",
               "--as", RESEARCHER))  # fmt: skip


def _commands(session: Session) -> list[tuple[str, ...]]:
    project = session.scalars(select(Project)).first()
    program = session.scalars(select(Program)).first()
    job = session.scalars(select(Job)).first()
    account = session.scalars(select(Account).where(Account.project_id.is_not(None))).first()
    allocation = session.scalars(select(Allocation)).first()
    assert project and program and job and account and allocation
    return [
        ("users", "list"),
        ("tokens", "list", "--email", OPS),
        ("ledger", "balance", "--account", str(account.id)),
        ("ledger", "verify"),
        ("ledger", "accounts"),
        ("ledger", "accounts", "--project", str(project.id)),
        ("pool", "flavours", "list"),
        ("pool", "rates", "list"),
        ("pool", "status"),
        ("programs", "list"),
        ("programs", "show", str(program.id)),
        ("projects", "list"),
        ("projects", "show", str(project.id)),
        ("allocations", "list", "--project", str(project.id)),
        ("notifications", "list"),
        ("jobs", "list"),
        ("jobs", "show", str(job.id)),
        ("reports", "program", str(program.id)),
        ("reports", "project", str(project.id)),
        ("datasets", "list"),
        ("datasets", "show", "1"),
        ("labelling", "vendors", "list"),
        ("labelling", "prices", "list", "acme"),
        ("labelling", "orders"),
        ("labelling", "show", "1"),
        ("transparency", "status"),
    ]


def _problems(command: tuple[str, ...], output: str) -> list[str]:
    checks = [
        ("raw micro-credits", RAW_MICRO),
        ("microseconds", MICROSECONDS),
        ("an ISO time", ISO_TIME),
        ("an underscored value", UNDERSCORED),
        ("a user label", USER_LABEL),
    ]
    output = SHOWN_TOKEN.sub("crd-token", output)
    return [
        f"{' '.join(command)}: {name} {m.group()!r} in "
        f"{output[max(0, m.start() - 60) : m.end() + 20]!r}"
        for name, pattern in checks
        for m in pattern.finditer(output)
    ]


def test_no_listing_or_show_command_prints_machine_text(
    invoke: Invoke, session: Session, tmp_path: Path
) -> None:
    project = session.scalars(select(Project)).first()
    assert project is not None
    _seed_more(invoke, project.id, tmp_path)
    problems = []
    for command in _commands(session):
        result = invoke(*command)
        if result.exit_code != 0:
            problems.append(f"{' '.join(command)}: exit {result.exit_code}: {result.output}")
        problems += _problems(command, result.output)
    assert problems == [], "\n".join(problems)


def test_json_outputs_keep_integers_and_iso_times(invoke: Invoke, session: Session) -> None:
    job = session.scalars(select(Job)).first()
    assert job is not None
    detail = json.loads(_ok(invoke("jobs", "show", str(job.id), "--json")))
    assert isinstance(detail["hold_micro"], int)
    assert detail["hold_micro"] == 116_667  # 7 minutes of one GPU, in micro-credits
    assert "T" in detail["events"][0]["at"]


@pytest.mark.parametrize(
    ("count", "shown"),
    [(45, "45 s"), (90, "1 min 30 s"), (300, "5 min"), (7 * 86_400, "7 days")],
)
def test_a_setting_in_seconds_reads_as_a_duration_keeping_every_second(
    count: int, shown: str
) -> None:
    assert exact_duration(count) == shown
