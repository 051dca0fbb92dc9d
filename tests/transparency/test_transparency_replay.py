"""The ledger replay of credits-verify on hand-made entries: the four counters
move as the ledger moves them, and impossible entries are refused by index."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credits.transparency.replay import ReplayError, compare_balances, replay

_ids = iter(range(1, 10**9))


def entry(kind: str, debit: int, credit: int, amount: int, pending_id: int | None = None) -> bytes:
    data = {
        "id": next(_ids),
        "kind": kind,
        "currency": "gpu",
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        "pending": kind == "hold",
        "pending_id": pending_id,
    }
    document = {
        "type": f"ledger.{kind}",
        "actor": "system:test",
        "subject": {"type": "ledger_transfer", "id": str(data["id"])},
        "at": "2026-12-03T00:00:00+00:00",
        "data": data,
    }
    return json.dumps(document).encode()


def transfer_id(raw: bytes) -> int:
    return int(json.loads(raw)["data"]["id"])


def test_a_hold_captured_in_part_then_voided() -> None:
    grant = entry("grant", 1, 2, 100)
    hold = entry("hold", 2, 3, 40)
    entries = [
        b'{"type":"user.created","subject":{"type":"user","id":"1"},"data":{}}',
        grant,
        hold,
        entry("capture", 2, 3, 15, transfer_id(hold)),
        entry("void", 2, 3, 25, transfer_id(hold)),
        entry("adjust", 4, 2, 5),
        entry("expire", 2, 5, 10),
    ]
    accounts = replay(entries).accounts
    assert accounts[2].as_dict() == {
        "debits_pending": 0,
        "debits_posted": 25,
        "credits_pending": 0,
        "credits_posted": 105,
    }
    assert accounts[3].as_dict()["credits_posted"] == 15


def test_an_open_hold_stays_pending() -> None:
    accounts = replay([entry("grant", 1, 2, 100), entry("hold", 2, 3, 40)]).accounts
    assert (accounts[2].debits_pending, accounts[3].credits_pending) == (40, 40)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("capture", 2, 3, 1, 999)], r"entry 0 \(capture transfer"),
        ([b'{"type":"ledger.grant"'], "entry 0 is not JSON"),
        ([entry("grant", 1, 2, 0)], "not a positive amount"),
    ],
)
def test_impossible_entries_are_named(entries: list[bytes], message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        replay(entries)


def test_settling_more_than_held_or_other_accounts_is_refused() -> None:
    hold = entry("hold", 2, 3, 10)
    with pytest.raises(ReplayError, match=r"entry 2 .* settles 12 of the 10 held at entry 0"):
        replay(
            [
                hold,
                entry("capture", 2, 3, 6, transfer_id(hold)),
                entry("void", 2, 3, 6, transfer_id(hold)),
            ]
        )
    with pytest.raises(ReplayError, match="other accounts than its hold"):
        replay([hold, entry("capture", 2, 4, 1, transfer_id(hold))])


def test_a_repeated_transfer_is_refused() -> None:
    grant = entry("grant", 1, 2, 5)
    with pytest.raises(ReplayError, match="entry 1 repeats transfer"):
        replay([grant, grant])


def test_differences_say_which_account_and_by_how_much() -> None:
    replayed = replay([entry("grant", 1, 2, 100)])
    rows: list[dict[str, Any]] = [
        {
            "account_id": 2,
            "currency": "gpu",
            "debits_pending": 0,
            "debits_posted": 0,
            "credits_pending": 0,
            "credits_posted": 150,
        },
    ]
    assert compare_balances(replayed, rows, complete=True) == [
        "account 2: credits_posted published 150, the log gives 100 (published is 50 more)",
        "account 1: the log moves it ({'debits_pending': 0, 'debits_posted': 100, "
        "'credits_pending': 0, 'credits_posted': 0}), the published balances lack it",
    ]


operations = st.lists(
    st.tuples(st.sampled_from(["grant", "hold"]), st.integers(1, 50), st.integers(0, 50)),
    max_size=30,
)


@given(operations)
def test_debits_equal_credits_and_settled_holds_leave_nothing_pending(
    ops: list[tuple[str, int, int]],
) -> None:
    entries = []
    for kind, amount, captured in ops:
        raw = entry(kind, 1, 2, amount)
        entries.append(raw)
        if kind == "hold":
            taken = min(captured, amount)
            if taken:
                entries.append(entry("capture", 1, 2, taken, transfer_id(raw)))
            if amount - taken:
                entries.append(entry("void", 1, 2, amount - taken, transfer_id(raw)))
    accounts = replay(entries).accounts
    total = sum(a for k, a, c in ops if k == "grant") + sum(
        min(c, a) for k, a, c in ops if k == "hold"
    )
    if entries:
        assert accounts[1].debits_posted == accounts[2].credits_posted == total
        assert accounts[1].debits_pending == accounts[2].credits_pending == 0


def test_an_escaped_transfer_is_not_skipped_by_the_quick_filter() -> None:
    escaped = entry("grant", 1, 2, 7).replace(b'"ledger.grant"', b'"\\u006cedger.grant"')
    escaped = escaped.replace(b'"ledger_transfer"', b'"\\u006cedger_transfer"')
    assert b"ledger" not in escaped
    assert replay([escaped]).accounts[2].credits_posted == 7
