"""The Python path, the PL/pgSQL path and the pure model, operation by operation.

Hypothesis draws ledger operations; each runs against two PostgreSQL databases
migrated alike, one through the Python path (``pg_ledger.python_path()``), one
through the functions of migration 0017, and against ``LedgerModel``. The two
databases must answer identically: the same result, or the same exception
with the same message and fields. After every step they must hold the same
rows (accounts, transfers, hold parts, and each transfer's audit event byte for
byte), both must pass ``verify_ledger``, and the model must agree on success or
the error's type and on every counter.

The id sequences of both databases are set alike before each example, so the
rows, ids included, can be compared as they are.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import create_migrated_postgres_database, drop_postgres_database
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from ledger_helpers import MACHINE_SETTINGS, SYSTEM, assert_matches_model, model_account
from ledger_model import LedgerModel
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from credits.db import make_engine
from credits.errors import CreditsError
from credits.ledger import pg_ledger, queries, service
from credits.ledger.errors import IdempotencyKeyReused
from credits.ledger.models import AccountKind, Currency
from credits.ledger.verify import verify_ledger

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

T0 = datetime(2031, 1, 1, tzinfo=UTC)
PROJECT, OTHER = 1, 2
# (project, currency, days until the end (None: no end), hours until the start)
ALLOCATIONS = [
    (PROJECT, "gpu", 1, None),
    (PROJECT, "gpu", 3, None),
    (PROJECT, "gpu", None, None),
    (PROJECT, "label", 2, None),
    (PROJECT, "gpu", 5, 20),
    (OTHER, "gpu", 4, None),
]
MISSING = 10**9
SINKS = ["own", "shared", "other-currency", "other-project", "allocation", "missing"]
# Notes that JSON must escape (quotes, backslashes, control characters) or keep as
# they are (non-ASCII, U+2028): the audit events' canonical JSON must match byte for byte.
NOTES = st.sampled_from(["done", None, 'a "quoted" \\ path\n\tline', "é漢字 \x01\x1f \u2028 \x7f"])
SEQUENCES = ("ledger_accounts_id_seq", "ledger_transfers_id_seq", "audit_events_id_seq")
_runs = itertools.count()


@pytest.fixture(scope="module")
def twin_engines() -> Iterator[tuple[Engine, Engine]]:
    """Two migrated databases of this module's own: the Python path's and the functions'."""
    made = [create_migrated_postgres_database() for _ in range(2)]
    engines = [make_engine(url) for url, _ in made]
    yield engines[0], engines[1]
    for engine, (url, admin_url) in zip(engines, made, strict=True):
        engine.dispose()
        drop_postgres_database(url, admin_url)


@dataclass
class World:
    """One database in one rolled-back transaction, on one path."""

    session: Session
    python: bool

    def path(self) -> AbstractContextManager[None]:
        return pg_ledger.python_path() if self.python else nullcontext()

    def run(self, call: Callable[[Session], Any]) -> tuple[Any, ...]:
        """('ok', the result as data) or ('refused', type, message, fields)."""
        try:
            with self.path(), self.session.begin_nested():
                result = call(self.session)
        except CreditsError as error:
            return ("refused", type(error), error.detail, error.extra)
        return ("ok", result.model_dump() if result is not None else None)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.session.execute(text(query))]


@dataclass
class Request:
    key: str
    call: Callable[[Session, dict[str, Any]], Any]
    params: dict[str, Any]
    changed: dict[str, Any]


# Everything both databases must hold alike (txid and the real clock's columns aside).
SNAPSHOT = (
    "SELECT id, code, status, debits_pending, debits_posted, credits_pending, credits_posted"
    " FROM ledger_accounts ORDER BY id",
    "SELECT * FROM ledger_transfers ORDER BY id",
    "SELECT * FROM ledger_hold_parts ORDER BY transfer_id",
    "SELECT id, event_type, actor, subject_id, occurred_at, canonical_json, leaf_hash"
    " FROM audit_events WHERE subject_type = 'ledger_transfer' ORDER BY id",
)


def differential_machine(engines: tuple[Engine, Engine]) -> type[RuleBasedStateMachine]:
    class Differential(RuleBasedStateMachine):
        holds = Bundle("holds")

        def __init__(self) -> None:
            super().__init__()
            self.connections = [engine.connect() for engine in engines]
            self.outers = [connection.begin() for connection in self.connections]
            self.worlds = [
                World(
                    Session(bind=connection, join_transaction_mode="create_savepoint"),
                    python=index == 0,
                )
                for index, connection in enumerate(self.connections)
            ]
            self.now = T0
            self.run = next(_runs)
            self.keys = itertools.count()
            self.requests: list[Request] = []
            self._align_sequences()

        def teardown(self) -> None:
            for world, outer, connection in zip(
                self.worlds, self.outers, self.connections, strict=True
            ):
                world.session.close()
                outer.rollback()
                connection.close()

        def _align_sequences(self) -> None:
            for sequence in SEQUENCES:
                query = f"SELECT last_value FROM {sequence}"  # noqa: S608 - fixed names
                start = max(w.session.scalar(text(query)) for w in self.worlds) + 1
                for world in self.worlds:
                    world.session.execute(text(f"SELECT setval('{sequence}', {start})"))

        def each(self, call: Callable[[Session], Any]) -> tuple[Any, ...]:
            """Runs ``call`` in both databases; they must answer alike."""
            python, functions = (world.run(call) for world in self.worlds)
            assert python == functions, f"Python path {python} != functions {functions}"
            return python

        @initialize()
        def open_accounts(self) -> None:
            def open_all(session: Session) -> Any:
                for index, (project, currency, days, starts) in enumerate(ALLOCATIONS):
                    service.open_account(
                        session,
                        code=f"diff-{self.run}-{index}",
                        currency=currency,
                        project_id=project,
                        starts_at=T0 + timedelta(hours=starts) if starts else None,
                        expires_at=T0 + timedelta(days=days) if days is not None else None,
                        actor=SYSTEM,
                    )

            self.each(open_all)
            self.each(self._fund_all)
            session = self.worlds[0].session
            accounts = queries.list_accounts(session)
            self.ids = {a.code: a.id for a in accounts}
            self.allocation_ids = [
                self.ids[f"diff-{self.run}-{index}"] for index in range(len(ALLOCATIONS))
            ]
            self.mints = {
                c.value: queries.system_account_id(session, AccountKind.SOURCE, c) for c in Currency
            }
            self.model = LedgerModel(
                accounts={a.id: model_account(a) for a in accounts},
                sinks={
                    **{
                        f"project:{p}:{c.value}": self.ids[f"project:{p}:usage:{c.value}"]
                        for p in (PROJECT, OTHER)
                        for c in Currency
                        if f"project:{p}:usage:{c.value}" in self.ids
                    },
                    **{
                        f"{name}:{c.value}": queries.system_account_id(session, kind, c)
                        for c in Currency
                        for name, kind in (
                            ("usage", AccountKind.USAGE_SINK),
                            ("adjustments", AccountKind.ADJUSTMENTS),
                            ("expiry", AccountKind.EXPIRY_SINK),
                        )
                    },
                },
            )

        def _fund_all(self, session: Session) -> None:
            """Each allocation that has started gets credits from its currency's mint."""
            for index, (_, currency, _, starts) in enumerate(ALLOCATIONS):
                if starts is None:
                    service.grant(
                        session,
                        key=f"fund-{self.run}-{index}",
                        from_account_id=queries.system_account_id(
                            session, AccountKind.SOURCE, Currency(currency)
                        ),
                        to_account_id=queries.get_account_by_code(
                            session, code=f"diff-{self.run}-{index}"
                        ).id,
                        amount=5_000,
                        actor=SYSTEM,
                        now=self.now,
                    )

        def key(self, kind: str) -> str:
            return f"{kind}-{self.run}-{next(self.keys)}"

        def both(
            self,
            call: Callable[[Session], Any],
            model_call: Callable[[LedgerModel], Any],
        ) -> tuple[Any, ...]:
            """Both databases alike, and the model agrees on success or the error's type."""
            outcome = self.each(call)
            trial = self.model.snapshot()
            try:
                model_call(trial)
            except CreditsError as error:
                assert outcome[0] == "refused", f"model refused with {error!r}; databases: ok"
                assert outcome[1] is type(error), f"databases {outcome}; model {error!r}"
                return outcome
            assert outcome[0] == "ok", f"model allowed it; databases: {outcome}"
            self.model = trial
            return outcome

        def request(
            self,
            key: str,
            call: Callable[[Session, dict[str, Any]], Any],
            params: dict[str, Any],
            model_call: Callable[[LedgerModel], Any],
            changed: dict[str, Any],
        ) -> bool:
            outcome = self.both(lambda s: call(s, {"key": key, **params}), model_call)
            if outcome[0] != "ok":
                return False
            self.requests.append(Request(key, call, params, changed))
            return True

        def _account(self, choice: int) -> int:
            handles = [*self.allocation_ids, self.mints["gpu"], self.mints["label"], MISSING]
            return handles[choice]

        @rule(
            payer=st.integers(0, len(ALLOCATIONS) + 2),
            payee=st.integers(0, len(ALLOCATIONS) + 2),
            amount=st.integers(1, 10_000),
        )
        def grant(self, payer: int, payee: int, amount: int) -> None:
            """Between any two accounts, the missing one included."""
            from_id, to_id = self._account(payer), self._account(payee)
            if from_id != to_id:
                self._grant(from_id, to_id, amount)

        def _grant(self, from_id: int, to_id: int, amount: int) -> None:
            params = {"from_account_id": from_id, "to_account_id": to_id, "amount": amount}
            self.request(
                self.key("grant"),
                lambda s, p: service.grant(s, actor=SYSTEM, now=self.now, **p),
                params,
                lambda m: m.grant(from_id, to_id, amount, self.now),
                {**params, "amount": amount + 1},
            )

        def _sink(self, choice: str | None, currency: str) -> int | None:
            other = "label" if currency == "gpu" else "gpu"
            return {
                None: None,
                "own": self.model.sinks[f"project:{PROJECT}:{currency}"],
                "shared": self.model.sinks[f"usage:{currency}"],
                "other-currency": self.model.sinks[f"project:{PROJECT}:{other}"],
                "other-project": self.model.sinks[f"project:{OTHER}:gpu"],
                "allocation": self.allocation_ids[0],
                "missing": MISSING,
            }[choice]

        @rule(
            target=holds,
            amount=st.integers(1, 12_000),
            on_account=st.one_of(st.none(), st.integers(0, len(ALLOCATIONS))),
            currency=st.sampled_from(["gpu", "gpu", "label"]),
            sink=st.one_of(st.none(), st.none(), st.sampled_from(SINKS)),
        )
        def place_hold(
            self, amount: int, on_account: int | None, currency: str, sink: str | None
        ) -> Any:
            account_id = None
            if on_account is not None:
                account_id = self._account(on_account)
                known = self.model.accounts.get(account_id)
                currency = known.currency if known and amount % 5 else currency
            sink_id = self._sink(sink, currency)
            key = self.key("hold")
            params = {
                "currency": currency,
                "amount": amount,
                "project_id": None if account_id else PROJECT,
                "account_id": account_id,
                "sink_account_id": sink_id,
                "reference": f"job:{amount}",
            }
            ok = self.request(
                key,
                lambda s, p: service.place_hold(s, actor=SYSTEM, now=self.now, **p),
                params,
                lambda m: m.place_hold(
                    key,
                    project_id=params["project_id"],
                    account_id=account_id,
                    currency=currency,
                    amount=amount,
                    now=self.now,
                    sink_id=sink_id,
                ),
                {**params, "amount": amount + 1},
            )
            return key if ok else multiple()

        @rule(index=st.integers(0, len(ALLOCATIONS) - 1), amount=st.integers(1, 10_000))
        def fund(self, index: int, amount: int) -> None:
            """From the mint: what makes holds possible."""
            mint = self.mints[ALLOCATIONS[index][1]]
            self._grant(mint, self.allocation_ids[index], amount)

        @rule(
            hold=st.one_of(holds, holds, st.just("no-such-hold")),
            amount=st.integers(1, 8_000),
            note=NOTES,
        )
        def capture(self, hold: str, amount: int, note: str | None) -> None:
            params = {"hold_key": hold, "amount": amount, "reference": note}
            self.request(
                self.key("capture"),
                lambda s, p: service.capture(s, actor=SYSTEM, now=self.now, **p),
                params,
                lambda m: m.capture(hold, amount),
                {**params, "amount": amount + 1},
            )

        @rule(hold=st.one_of(holds, holds, st.just("no-such-hold")), note=NOTES)
        def void(self, hold: str, note: str | None) -> None:
            params = {"hold_key": hold, "reason": note}
            self.request(
                self.key("void"),
                lambda s, p: service.void_hold(s, actor=SYSTEM, now=self.now, **p),
                params,
                lambda m: m.void(hold),
                {**params, "reason": f"{note} changed"},
            )

        @rule(index=st.integers(0, len(ALLOCATIONS) - 1), suspend=st.booleans())
        def set_status(self, index: int, suspend: bool) -> None:
            account_id = self.allocation_ids[index]
            status = "suspended" if suspend else "active"

            def model_call(model: LedgerModel) -> None:
                if model.accounts[account_id].status != "expired":
                    model.accounts[account_id].status = status

            if self.model.accounts[account_id].status == "expired":
                return
            self.both(
                lambda s: service.set_account_status(
                    s, account_id=account_id, status=status, actor=SYSTEM, reason="test"
                ),
                model_call,
            )

        @rule(index=st.integers(0, len(ALLOCATIONS) - 1))
        def expire(self, index: int) -> None:
            account_id = self.allocation_ids[index]
            self.both(
                lambda s: service.expire_account(
                    s, account_id=account_id, actor=SYSTEM, now=self.now
                ),
                lambda m: m.expire(account_id, self.now),
            )

        @rule(hours=st.integers(1, 40))
        def advance_clock(self, hours: int) -> None:
            self.now += timedelta(hours=hours)

        @rule(data=st.data(), changed=st.booleans())
        def replay(self, data: st.DataObject, changed: bool) -> None:
            if not self.requests:
                return
            request = data.draw(st.sampled_from(self.requests))
            params = request.changed if changed else request.params
            outcome = self.each(lambda s: request.call(s, {"key": request.key, **params}))
            if changed:
                assert outcome[:2] == ("refused", IdempotencyKeyReused)
            else:
                assert outcome[0] == "ok"
                assert outcome[1]["replayed"]

        @invariant()
        def databases_hold_the_same_rows(self) -> None:
            python, functions = self.worlds
            for query in SNAPSHOT:
                assert python.rows(query) == functions.rows(query), query

        @invariant()
        def books_verify_and_match_the_model(self) -> None:
            if not hasattr(self, "model"):
                return
            for world in self.worlds:
                report = verify_ledger(world.session)
                assert report.ok, report.problems
            assert_matches_model(self.worlds[0].session, self.model)

    return Differential


def test_python_path_functions_and_model_agree_on_postgresql(
    twin_engines: tuple[Engine, Engine],
) -> None:
    run_state_machine_as_test(differential_machine(twin_engines), settings=MACHINE_SETTINGS)
