"""Every ``credits`` command but ``db`` first checks that its database is migrated:
run in the wrong directory, or against a database that is missing, empty, not a
database or unreachable, it is refused in one line and leaves nothing behind."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import create_postgres_database, drop_postgres_database
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from credits.cli import main

CONSOLE_SCRIPT = Path(sys.executable).parent / "credits"


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no checkout in it, and CREDITS_VAR_DIR at its default."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    monkeypatch.chdir(directory)
    monkeypatch.delenv("CREDITS_VAR_DIR", raising=False)
    return directory


def _credits(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ")
    assert result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_a_command_run_away_from_the_checkout_is_one_line_and_makes_no_var_folder(
    elsewhere: Path,
) -> None:
    for command in (("jobs", "list"), ("users", "list"), ("pool", "status"), ("serve",)):
        line = _one_error_line(_credits(*command))

        assert f"no database at {elsewhere / 'var' / 'credits.db'}" in line
        assert "credits db upgrade" in line
        assert "CREDITS_VAR_DIR" in line and "CREDITS_DATABASE_URL" in line
        assert list(elsewhere.iterdir()) == [], command


def test_the_console_script_run_away_from_the_checkout_says_so_in_one_line(
    elsewhere: Path,
) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CREDITS_")}

    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "jobs", "list"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: no database at ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert list(elsewhere.iterdir()) == []


def test_db_upgrade_makes_the_database_there_and_then_commands_run(elsewhere: Path) -> None:
    upgraded = _credits("db", "upgrade")
    listed = _credits("users", "list")

    assert upgraded.exit_code == 0, upgraded.output
    assert (elsewhere / "var" / "credits.db").is_file()
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith("ID")


def test_help_needs_no_database(elsewhere: Path) -> None:
    for command in (("jobs", "list", "--help"), ("transparency", "witness-key", "--help")):
        result = _credits(*command)
        assert result.exit_code == 0, result.output
    assert list(elsewhere.iterdir()) == []


def test_an_empty_database_file_is_refused_as_not_migrated_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    database = tmp_path / "empty.db"
    database.touch()

    line = _one_error_line(
        _credits("users", "list", env={"CREDITS_DATABASE_URL": f"sqlite:///{database}"})
    )

    assert f"the database at {database} is not migrated" in line
    assert "credits db upgrade" in line
    assert database.stat().st_size == 0
    assert sorted(path.name for path in tmp_path.iterdir() if path.name != "var") == ["empty.db"]


def test_a_database_a_newer_release_migrated_still_serves_commands(tmp_path: Path) -> None:
    """Migrations only expand the schema, so a rolled-back release keeps working on
    it (docs/operations.md): a revision this code does not know is not refused."""
    database = tmp_path / "newer.db"
    env = {"CREDITS_DATABASE_URL": f"sqlite:///{database}"}
    assert _credits("db", "upgrade", env=env).exit_code == 0
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")

    result = _credits("jobs", "list", env=env)

    assert result.exit_code == 0, result.output


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    database = tmp_path / "notes.db"
    database.write_text("not a database, " * 100)

    line = _one_error_line(
        _credits("users", "list", env={"CREDITS_DATABASE_URL": f"sqlite:///{database}"})
    )

    assert f"cannot read the database at {database}" in line
    assert database.read_text() == "not a database, " * 100


def test_an_unreachable_postgresql_is_one_line_that_never_shows_its_password(
    elsewhere: Path,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql://ops:hunter2-secret@127.0.0.1:{port}/credits?password=hunter2-secret"

    line = _one_error_line(_credits("ledger", "verify", env={"CREDITS_DATABASE_URL": url}))

    assert f"cannot connect to the database at postgresql://ops:***@127.0.0.1:{port}/credits" in (
        line
    )
    assert "CREDITS_DATABASE_URL" in line
    assert "hunter2" not in line
    assert list(elsewhere.iterdir()) == []


def test_on_postgresql_an_empty_database_and_a_role_without_rights_are_told_apart(
    elsewhere: Path, postgres_url: str
) -> None:
    empty, admin_url = create_postgres_database()
    role = f"credits_reader_{os.getpid()}"
    admin = create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        limited = make_url(postgres_url).set(username=role).render_as_string(hide_password=False)

        not_migrated = _one_error_line(
            _credits("ledger", "verify", env={"CREDITS_DATABASE_URL": empty})
        )
        no_rights = _one_error_line(
            _credits("ledger", "verify", env={"CREDITS_DATABASE_URL": limited})
        )

        assert "is not migrated" in not_migrated
        assert "cannot read the database" in no_rights and "permission denied" in no_rights
    finally:
        drop_postgres_database(empty, admin_url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'DROP OWNED BY "{role}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
