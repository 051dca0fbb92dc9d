"""``credits reports``: a table by default, --json, --csv, errors as one line, nudges."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result
from reports_world import build_reports_world
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.reports.csv_export import COLUMNS


def _run(factory: sessionmaker[Session], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), obj={"session_factory": factory})


def test_project_report_table_json_and_csv(joined_session_factory: sessionmaker[Session]) -> None:
    world = build_reports_world(joined_session_factory)
    world.a.submit(gpus=2, duration=300)
    world.run_until_done(steps=8)
    pid = str(world.a.project_id)

    table = _run(joined_session_factory, "reports", "project", pid)
    as_json = _run(joined_session_factory, "reports", "project", pid, "--json")
    as_csv = _run(joined_session_factory, "reports", "project", pid, "--csv")

    assert table.exit_code == 0, table.output
    assert "balances (credits)" in table.output
    assert "jobs: succeeded 1" in table.output
    assert json.loads(as_json.output)["balances"][0]["awarded"] == 100_000_000
    assert as_csv.output.splitlines()[0] == ",".join(COLUMNS)


def test_program_report_of_an_unknown_program_is_one_line_error(
    joined_session_factory: sessionmaker[Session],
) -> None:
    result = _run(joined_session_factory, "reports", "program", "999999")
    assert result.exit_code == 1
    assert result.output.strip() == "error: no program has the id 999999"


def test_nudges_runs_every_sweep(joined_session_factory: sessionmaker[Session]) -> None:
    build_reports_world(joined_session_factory)
    first = _run(joined_session_factory, "reports", "nudges")
    assert first.exit_code == 0, first.output
    assert first.output == "queued 0 underused-allocation, 0 idle-GPU and 0 low-balance notices\n"
