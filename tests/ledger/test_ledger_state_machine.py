"""Hypothesis drives the ledger services and a pure-Python model side by side.

After every step: debits equal credits per currency, counters equal the
journal, no flagged account is below zero, every hold's captured + voided is
within its amount (``verify_ledger``), and the model equals the database.
Runs on SQLite and, when configured, on PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
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
from ledger_helpers import (
    MACHINE_SETTINGS,
    OPS,
    RESEARCHER,
    SYSTEM,
    assert_matches_model,
    model_account,
)
from ledger_model import LedgerModel
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from credits.errors import CreditsError
from credits.ledger import queries, service
from credits.ledger.errors import IdempotencyKeyReused
from credits.ledger.models import AccountKind, Currency
from credits.ledger.verify import verify_ledger

T0 = datetime(2031, 1, 1, tzinfo=UTC)
PROJECT = 1
# (currency, days until the allocation ends; None: no end date)
ALLOCATIONS = [("gpu", 1), ("gpu", 3), ("gpu", None), ("label", 2)]
_runs = itertools.count()


@dataclass
class Request:
    """A request that succeeded, kept to replay it unchanged and changed."""

    key: str
    call: Callable[[dict[str, Any]], Any]
    params: dict[str, Any]
    changed: dict[str, Any]


def ledger_machine(engine: Engine) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        holds = Bundle("holds")

        def __init__(self) -> None:
            super().__init__()
            self.connection = engine.connect()
            self.outer = self.connection.begin()
            self.session = Session(bind=self.connection, join_transaction_mode="create_savepoint")
            self.now = T0
            self.run = next(_runs)
            self.keys = itertools.count()
            self.requests: list[Request] = []

        def teardown(self) -> None:
            self.session.close()
            self.outer.rollback()
            self.connection.close()

        def key(self, kind: str) -> str:
            return f"{kind}-{self.run}-{next(self.keys)}"

        @initialize()
        def open_accounts(self) -> None:
            self.allocation_ids = [
                service.open_account(
                    self.session,
                    code=f"sm-{self.run}-{index}",
                    currency=currency,
                    project_id=PROJECT,
                    expires_at=T0 + timedelta(days=days) if days is not None else None,
                    actor=SYSTEM,
                ).id
                for index, (currency, days) in enumerate(ALLOCATIONS)
            ]
            self.sources = {
                c: queries.system_account_id(self.session, AccountKind.SOURCE, c) for c in Currency
            }
            self.model = LedgerModel(
                accounts={a.id: model_account(a) for a in queries.list_accounts(self.session)},
                sinks={
                    **{
                        f"project:{PROJECT}:{c.value}": self._code_id(
                            f"project:{PROJECT}:usage:{c.value}"
                        )
                        for c in Currency
                    },
                    **{
                        f"{name}:{c.value}": queries.system_account_id(self.session, kind, c)
                        for c in Currency
                        for name, kind in (
                            ("adjustments", AccountKind.ADJUSTMENTS),
                            ("expiry", AccountKind.EXPIRY_SINK),
                        )
                    },
                },
            )

        def _code_id(self, code: str) -> int:
            return queries.get_account_by_code(self.session, code=code).id

        def both(self, db_call: Callable[[], Any], model_call: Callable[[LedgerModel], Any]) -> Any:
            """Runs the call on both; they must agree on success or on the error."""
            trial = self.model.snapshot()
            try:
                expected = model_call(trial)
                model_error: type[CreditsError] | None = None
            except CreditsError as error:
                expected, model_error = None, type(error)
            try:
                with self.session.begin_nested():
                    result = db_call()
            except CreditsError as error:
                assert model_error is not None, f"database refused {error!r}; model allowed it"
                assert isinstance(error, model_error), f"{error!r} != {model_error}"
                return None
            assert model_error is None, f"model refused with {model_error}; database allowed"
            self.model = trial
            return result if expected is None else (result, expected)

        @rule(index=st.integers(0, len(ALLOCATIONS) - 1), amount=st.integers(1, 10_000))
        def grant(self, index: int, amount: int) -> None:
            target = self.allocation_ids[index]
            source = self.sources[Currency(self.model.accounts[target].currency)]
            params = {"from_account_id": source, "to_account_id": target, "amount": amount}
            self._remember(
                "grant",
                call=lambda p: service.grant(self.session, actor=SYSTEM, now=self.now, **p),
                params=params,
                model_call=lambda m: m.grant(source, target, amount, self.now),
                changed={**params, "amount": amount + 1},
            )

        @rule(
            target=holds,
            amount=st.integers(1, 12_000),
            on_account=st.one_of(st.none(), st.integers(0, len(ALLOCATIONS) - 1)),
            currency=st.sampled_from(["gpu", "gpu", "label"]),
        )
        def place_hold(self, amount: int, on_account: int | None, currency: str) -> Any:
            account_id = self.allocation_ids[on_account] if on_account is not None else None
            if account_id is not None:
                currency = self.model.accounts[account_id].currency
            key = self.key("hold")
            params = {
                "currency": currency,
                "amount": amount,
                "project_id": None if account_id else PROJECT,
                "account_id": account_id,
            }
            ok = self._remember(
                key,
                call=lambda p: service.place_hold(self.session, actor=SYSTEM, now=self.now, **p),
                params=params,
                model_call=lambda m: m.place_hold(
                    key,
                    project_id=params["project_id"],
                    account_id=account_id,
                    currency=currency,
                    amount=amount,
                    now=self.now,
                ),
                changed={**params, "amount": amount + 1},
                given_key=key,
            )
            return key if ok else multiple()

        @rule(hold=holds, amount=st.integers(1, 8_000))
        def capture(self, hold: str, amount: int) -> None:
            params = {"hold_key": hold, "amount": amount}
            self._remember(
                "capture",
                call=lambda p: service.capture(self.session, actor=SYSTEM, now=self.now, **p),
                params=params,
                model_call=lambda m: m.capture(hold, amount),
                changed={**params, "amount": amount + 1},
            )

        @rule(hold=holds)
        def void(self, hold: str) -> None:
            params = {"hold_key": hold, "reason": "done"}
            self._remember(
                "void",
                call=lambda p: service.void_hold(self.session, actor=SYSTEM, now=self.now, **p),
                params=params,
                model_call=lambda m: m.void(hold),
                changed={**params, "reason": "changed"},
            )

        @rule(
            index=st.integers(0, len(ALLOCATIONS) - 1),
            amount=st.integers(-6_000, 6_000).filter(bool),
            as_ops=st.booleans(),
        )
        def adjust(self, index: int, amount: int, as_ops: bool) -> None:
            account_id = self.allocation_ids[index]
            actor = OPS if as_ops else RESEARCHER
            params = {"account_id": account_id, "amount": amount, "reason": "correction"}
            self._remember(
                "adjust",
                call=lambda p: service.adjust(self.session, actor=actor, now=self.now, **p),
                params=params,
                model_call=lambda m: m.adjust(account_id, amount, is_ops=as_ops, now=self.now),
                changed={**params, "amount": amount * 2},
            )

        @rule(index=st.integers(0, len(ALLOCATIONS) - 1))
        def expire(self, index: int) -> None:
            account_id = self.allocation_ids[index]
            outcome = self.both(
                lambda: service.expire_account(
                    self.session, account_id=account_id, actor=SYSTEM, now=self.now
                ),
                lambda m: m.expire(account_id, self.now),
            )
            if outcome is not None:
                result, remainder = outcome
                assert result.amount == remainder

        @rule(hours=st.integers(1, 40))
        def advance_clock(self, hours: int) -> None:
            self.now += timedelta(hours=hours)

        @rule(data=st.data())
        def replay_unchanged(self, data: st.DataObject) -> None:
            if not self.requests:
                return
            request = data.draw(st.sampled_from(self.requests))
            before = self.model.snapshot()
            result = request.call({"key": request.key, **request.params})
            assert result.replayed
            self._assert_model_matches(before)

        @rule(data=st.data())
        def replay_changed(self, data: st.DataObject) -> None:
            if not self.requests:
                return
            request = data.draw(st.sampled_from(self.requests))
            with pytest.raises(IdempotencyKeyReused), self.session.begin_nested():
                request.call({"key": request.key, **request.changed})

        def _remember(
            self,
            kind: str,
            *,
            call: Callable[[dict[str, Any]], Any],
            params: dict[str, Any],
            model_call: Callable[[LedgerModel], Any],
            changed: dict[str, Any],
            given_key: str | None = None,
        ) -> bool:
            key = given_key or self.key(kind)
            outcome = self.both(lambda: call({"key": key, **params}), model_call)
            if outcome is None:
                return False
            self.requests.append(Request(key=key, call=call, params=params, changed=changed))
            return True

        @invariant()
        def books_verify(self) -> None:
            if not hasattr(self, "model"):
                return
            report = verify_ledger(self.session)
            assert report.ok, report.problems

        @invariant()
        def database_equals_model(self) -> None:
            if hasattr(self, "model"):
                self._assert_model_matches(self.model)

        def _assert_model_matches(self, model: LedgerModel) -> None:
            assert_matches_model(self.session, model)

    return LedgerMachine


@pytest.mark.slow
def test_ledger_matches_its_model_on_sqlite(sqlite_engine: Engine) -> None:
    run_state_machine_as_test(ledger_machine(sqlite_engine), settings=MACHINE_SETTINGS)


@pytest.mark.slow
@pytest.mark.postgres
def test_ledger_matches_its_model_on_postgresql(postgres_engine: Engine) -> None:
    run_state_machine_as_test(ledger_machine(postgres_engine), settings=MACHINE_SETTINGS)
