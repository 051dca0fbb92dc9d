"""``credits notifications send|list`` through click, on the rolled-back connection."""

from __future__ import annotations

import json
import mailbox
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.db import session_scope
from credits.notifications.service import enqueue_notification
from credits.settings import load_settings

Run = Callable[..., Result]


@pytest.fixture
def run(joined_session_factory: sessionmaker[Session]) -> Run:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), obj={"session_factory": joined_session_factory})

    return invoke


@pytest.fixture
def queued(joined_session_factory: sessionmaker[Session]) -> list[int]:
    ids = []
    with session_scope(joined_session_factory) as session:
        for n in range(3):
            row_id = enqueue_notification(
                session,
                recipient_email=f"user{n}@uni.example",
                kind="test",
                subject=f"Message {n}",
                body="Hello.\n",
                dedupe_key=f"test:{n}",
            )
            assert row_id is not None
            ids.append(row_id)
    return ids


def test_send_delivers_into_the_embedded_maildir(run: Run, queued: list[int]) -> None:
    result = run("notifications", "send", "--limit", "2")

    assert result.exit_code == 0, result.output
    assert result.output == "sent 2, failed 0\n"
    maildir = load_settings().var_dir / "maildir"
    subjects = sorted(m["Subject"] for m in mailbox.Maildir(maildir, create=False).values())
    assert subjects == ["Message 0", "Message 1"]

    listed = run("notifications", "list", "--pending", "--json")
    assert listed.exit_code == 0, listed.output
    assert [row["id"] for row in json.loads(listed.output)] == [queued[2]]


def test_list_shows_every_notification_newest_first(run: Run, queued: list[int]) -> None:
    result = run("notifications", "list", "--json")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["id"] for row in rows] == queued[::-1]
    assert rows[0]["subject"] == "Message 2"
    assert rows[0]["sent_at"] is None

    table = run("notifications", "list")
    assert table.exit_code == 0, table.output
    assert "Message 2" in table.output


def test_send_in_production_without_smtp_says_what_is_missing(
    run: Run, queued: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        "CREDITS_PROFILE": "production",
        "CREDITS_DATABASE_URL": "postgresql://credits@db.example.org/credits",
        "CREDITS_BROKER_URL": "redis://broker.example.org:6379/0",
        "CREDITS_STORAGE_URL": "s3://credits-datasets",
        "CREDITS_SECRET_KEY": "k" * 40,
    }.items():
        monkeypatch.setenv(name, value)

    result = run("notifications", "send")

    assert result.exit_code == 1
    assert "error: CREDITS_SMTP_HOST is required" in result.output
