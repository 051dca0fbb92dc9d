"""``credits db`` through click, the way the console script runs it: settings from the env."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import waitress
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from credits.cli import main
from credits.db import make_engine
from credits.ledger.models import Account, Transfer
from credits.migrate import alembic_config


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def _db(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["db", *args], env={"CREDITS_DATABASE_URL": database_url})


def _counts(database_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            accounts = connection.scalar(select(func.count()).select_from(Account))
            transfers = connection.scalar(select(func.count()).select_from(Transfer))
    finally:
        engine.dispose()
    return int(accounts or 0), int(transfers or 0)


def test_db_upgrade_migrates_the_database_named_in_the_environment(database_url: str) -> None:
    result = _db(database_url, "upgrade")

    assert result.exit_code == 0, result.output
    assert result.output == "database at head\n"
    assert _counts(database_url) == (10, 0)


def test_db_current_prints_the_revision_after_upgrade(database_url: str) -> None:
    assert _db(database_url, "upgrade").exit_code == 0

    result = _db(database_url, "current")

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert result.exit_code == 0, result.output
    assert f"{head} (head)" in result.output


def test_a_second_db_upgrade_changes_nothing(database_url: str) -> None:
    assert _db(database_url, "upgrade").exit_code == 0
    before = _counts(database_url)

    result = _db(database_url, "upgrade")

    assert result.exit_code == 0, result.output
    assert _counts(database_url) == before == (10, 0)


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(database_url: str) -> None:
    assert _db(database_url, "upgrade").exit_code == 0
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main,
            ["serve"],
            env={
                "CREDITS_DATABASE_URL": database_url,
                "CREDITS_HOST": "127.0.0.1",
                "CREDITS_PORT": str(port),
            },
        )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "CREDITS_PORT" in result.output
    assert "serving on" not in result.output


def test_serve_says_where_it_serves_once_the_port_is_free(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _db(database_url, "upgrade").exit_code == 0
    served: list[dict[str, object]] = []
    monkeypatch.setattr(waitress, "serve", lambda _app, **kwargs: served.append(kwargs))
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    result = CliRunner().invoke(
        main,
        ["serve"],
        env={
            "CREDITS_DATABASE_URL": database_url,
            "CREDITS_HOST": "127.0.0.1",
            "CREDITS_PORT": str(port),
            "CREDITS_EXECUTOR": "simulated",
            "CREDITS_VAR_DIR": str(tmp_path / "var"),
        },
    )
    assert result.exit_code == 0, result.output
    assert f"serving on http://127.0.0.1:{port} (Ctrl-C stops)\n" in result.output
    assert [options["port"] for options in served] == [port]
