"""Real commits on PostgreSQL: concurrent holds never overdraw, keys never double-spend."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import click
import pytest
from click.testing import CliRunner
from conftest import create_migrated_postgres_database, drop_postgres_database
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.cli_support import cli_transaction
from credits.db import make_engine, make_session_factory, run_in_transaction, session_scope, utcnow
from credits.identity.actor import Actor
from credits.ledger import pg_ledger, queries, service
from credits.ledger.errors import CaptureExceedsHold, HoldClosed, InsufficientCredits
from credits.ledger.models import AccountKind, Currency

pytestmark = pytest.mark.postgres

SYSTEM = Actor.system("concurrency-test")
THREADS = 32
HOLD = 1_000_000


@pytest.fixture
def committed_postgres() -> Iterator[tuple[str, Engine]]:
    """A throwaway migrated database: these tests commit for real."""
    url, admin_url = create_migrated_postgres_database()
    engine = make_engine(url, pool_size=THREADS)
    yield url, engine
    engine.dispose()
    drop_postgres_database(url, admin_url)


def fund_project(factory: sessionmaker[Session], *, project_id: int, amounts: list[int]) -> None:
    with session_scope(factory) as session:
        source = queries.system_account_id(session, AccountKind.SOURCE, Currency.GPU)
        for index, amount in enumerate(amounts):
            account = service.open_account(
                session,
                code=f"p{project_id}-a{index}",
                currency="gpu",
                project_id=project_id,
                expires_at=utcnow() + timedelta(days=index + 1),
                actor=SYSTEM,
            )
            service.grant(
                session,
                key=f"fund-{account.id}",
                from_account_id=source,
                to_account_id=account.id,
                amount=amount,
                actor=SYSTEM,
            )


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Starts ``count`` threads at one barrier; returns each result or exception."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:  # the test inspects every outcome
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"threads still running after 60 s (a deadlock?): {hung}"
    assert all(result is not None for result in results)
    return results


def verify_through_cli(url: str) -> str:
    result = CliRunner().invoke(main, ["ledger", "verify"], env={"CREDITS_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    return result.output


def test_concurrent_holds_succeed_exactly_as_far_as_the_balance_covers(
    committed_postgres: tuple[str, Engine],
) -> None:
    url, engine = committed_postgres
    factory = make_session_factory(engine)
    # 11.5 holds' worth over two allocations: exactly 11 can succeed.
    fund_project(factory, project_id=1, amounts=[6 * HOLD, 5 * HOLD + HOLD // 2])

    def hold(index: int) -> Any:
        return run_in_transaction(
            factory,
            lambda session: service.place_hold(
                session,
                key=f"job-{index}",
                currency="gpu",
                amount=HOLD,
                project_id=1,
                actor=SYSTEM,
            ),
        )

    results = run_together(THREADS, hold)
    placed = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(placed) == 11
    assert all(isinstance(error, InsufficientCredits) for error in refused), refused
    with session_scope(factory) as session:
        accounts = queries.list_accounts(session, project_id=1, kind="allocation")
    assert all(account.available >= 0 for account in accounts)
    assert sum(account.available for account in accounts) == HOLD // 2
    assert "ledger OK" in verify_through_cli(url)


def test_the_same_key_sent_concurrently_holds_once(
    committed_postgres: tuple[str, Engine],
) -> None:
    url, engine = committed_postgres
    factory = make_session_factory(engine)
    # Exactly one hold's worth: a retry that re-ran instead of replaying would be refused.
    fund_project(factory, project_id=2, amounts=[HOLD])

    def hold(_: int) -> Any:
        return run_in_transaction(
            factory,
            lambda session: service.place_hold(
                session, key="same-job", currency="gpu", amount=HOLD, project_id=2, actor=SYSTEM
            ),
        )

    results = run_together(8, hold)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(1 for r in results if not r.replayed) == 1
    assert len({tuple(part.transfer_id for part in r.parts) for r in results}) == 1
    with session_scope(factory) as session:
        (account,) = queries.list_accounts(session, project_id=2, kind="allocation")
    assert account.debits_pending == HOLD
    assert "ledger OK" in verify_through_cli(url)


def test_concurrent_captures_never_exceed_the_hold(committed_postgres: tuple[str, Engine]) -> None:
    url, engine = committed_postgres
    factory = make_session_factory(engine)
    fund_project(factory, project_id=3, amounts=[10 * HOLD])
    with session_scope(factory) as session:
        service.place_hold(
            session, key="h", currency="gpu", amount=10 * HOLD, project_id=3, actor=SYSTEM
        )

    def capture(index: int) -> Any:
        return run_in_transaction(
            factory,
            lambda session: service.capture(
                session, key=f"c-{index}", hold_key="h", amount=HOLD, actor=SYSTEM
            ),
        )

    results = run_together(16, capture)
    assert sum(1 for r in results if not isinstance(r, Exception)) == 10
    refused = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(error, (CaptureExceedsHold, HoldClosed)) for error in refused), refused
    with session_scope(factory) as session:
        hold = queries.get_hold(session, hold_key="h")
    assert (hold.captured, hold.remaining) == (10 * HOLD, 0)
    assert "ledger OK" in verify_through_cli(url)


def test_the_same_capture_and_void_sent_concurrently_settle_once(
    committed_postgres: tuple[str, Engine],
) -> None:
    url, engine = committed_postgres
    factory = make_session_factory(engine)
    fund_project(factory, project_id=4, amounts=[2 * HOLD])
    with session_scope(factory) as session:
        for key in ("h1", "h2"):
            service.place_hold(
                session, key=key, currency="gpu", amount=HOLD, project_id=4, actor=SYSTEM
            )

    def settle(index: int) -> Any:
        if index % 2:
            return run_in_transaction(
                factory,
                lambda session: service.void_hold(session, key="v", hold_key="h2", actor=SYSTEM),
            )
        return run_in_transaction(
            factory,
            lambda session: service.capture(
                session, key="c", hold_key="h1", amount=HOLD, actor=SYSTEM
            ),
        )

    results = run_together(8, settle)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(1 for r in results if not r.replayed) == 2
    with session_scope(factory) as session:
        captured = queries.get_hold(session, hold_key="h1")
        voided = queries.get_hold(session, hold_key="h2")
    assert (captured.captured, voided.voided) == (HOLD, HOLD)
    assert "ledger OK" in verify_through_cli(url)


def test_verify_reads_one_snapshot_on_postgresql(committed_postgres: tuple[str, Engine]) -> None:
    _, engine = committed_postgres
    factory = make_session_factory(engine)

    @click.command()
    def show() -> None:
        with cli_transaction(snapshot=True) as session:
            level = session.execute(text("SHOW transaction_isolation")).scalar()
            read_only = session.execute(text("SHOW transaction_read_only")).scalar()
        click.echo(f"{level} {read_only}")

    result = CliRunner().invoke(show, obj={"session_factory": factory})
    assert result.output.strip() == "repeatable read on"


def test_hold_capture_void_and_grant_are_one_statement_each(
    committed_postgres: tuple[str, Engine],
) -> None:
    """On PostgreSQL the services call migration 0017's functions: one round trip
    (besides the driver's BEGIN and COMMIT); ``python_path()`` takes the old way."""
    url, engine = committed_postgres
    factory = make_session_factory(engine)
    fund_project(factory, project_id=5, amounts=[3 * HOLD])
    with session_scope(factory) as session:
        source = queries.system_account_id(session, AccountKind.SOURCE, Currency.GPU)
        (account,) = queries.list_accounts(session, project_id=5, kind="allocation")
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    calls: dict[str, Callable[[Session], Any]] = {
        "ledger_transfer_v1": lambda s: service.grant(
            s, key="g5", from_account_id=source, to_account_id=account.id, amount=1, actor=SYSTEM
        ),
        "ledger_place_hold_v1": lambda s: service.place_hold(
            s, key="h5", currency="gpu", amount=2 * HOLD, project_id=5, actor=SYSTEM
        ),
        "ledger_capture_v1": lambda s: service.capture(
            s, key="c5", hold_key="h5", amount=HOLD, actor=SYSTEM
        ),
        "ledger_void_v1": lambda s: service.void_hold(s, key="v5", hold_key="h5", actor=SYSTEM),
    }
    for function, call in calls.items():
        sent.clear()
        with session_scope(factory) as session:
            call(session)
        assert len(sent) == 1, sent
        assert function in sent[0], sent
    sent.clear()
    with pg_ledger.python_path(), session_scope(factory) as session:
        service.place_hold(session, key="h6", currency="gpu", amount=1, project_id=5, actor=SYSTEM)
    assert len(sent) > 1
    assert all("ledger_place_hold" not in statement for statement in sent)
    assert "ledger OK" in verify_through_cli(url)
