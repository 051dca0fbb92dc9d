"""Burn-down arithmetic: the 7-day rate, exhaustion, and the spend-order forecast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credits import formatting as fmt
from credits.reports.burndown import burn_down, forecast_unused, rate_per_second, walk
from credits.reports.figures import AccountFigures, Capture
from credits.reports.schemas import BurnDown

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
DAY = Decimal(86400)


def _account(account_id: int, available: int, days_left: float, **extra: object) -> AccountFigures:
    values: dict[str, object] = {
        "id": account_id,
        "code": f"a{account_id}",
        "currency": "gpu",
        "project_id": 1,
        "status": "active",
        "starts_at": NOW - timedelta(days=30),
        "expires_at": NOW + timedelta(days=days_left),
        "held": 0,
        "available": available,
    } | extra
    return AccountFigures(**values)  # type: ignore[arg-type]


def _capture(days_ago: float, amount: int) -> Capture:
    return Capture(account_id=1, currency="gpu", at=NOW - timedelta(days=days_ago), amount=amount)


def test_rate_counts_only_the_last_seven_days() -> None:
    captures = [_capture(1, 700), _capture(6.9, 700), _capture(7.5, 10_000)]
    assert rate_per_second(captures, NOW) * DAY * 7 == 1400


def test_no_use_forecasts_everything_unused_and_no_exhaustion() -> None:
    accounts = [_account(1, 1000, 10)]
    forecast = forecast_unused(accounts, Decimal(0), NOW)
    burn = burn_down("gpu", accounts, [], forecast, NOW)
    assert forecast == {1: 1000}
    assert burn.projected_exhaustion is None
    assert burn.daily == []


def test_spend_order_fills_the_soonest_expiring_first() -> None:
    """100/day: the first (5 days, 300) runs out on day 3; the second then has 7
    days of its 10 left and uses 700 of 1000; the third starts only on day 10."""
    rate = Decimal(100) / DAY
    accounts = [_account(2, 1000, 10), _account(1, 300, 5), _account(3, 500, 12)]
    assert forecast_unused(accounts, rate, NOW) == {1: 0, 2: 300, 3: 300}


def test_exhaustion_date_and_daily_series() -> None:
    accounts = [_account(1, 7000, 365)]
    captures = [_capture(d + 0.1, 100) for d in range(7)]
    burn = burn_down("gpu", accounts, captures, forecast_unused(accounts, Decimal(0), NOW), NOW)
    assert burn.rate_per_day == 100
    assert burn.projected_exhaustion == (NOW + timedelta(days=70)).date()
    assert [day.used for day in burn.daily] == [100] * 7
    assert burn.daily[-1].cumulative_used == 700


def test_an_account_not_yet_started_waits_for_its_start() -> None:
    rate = Decimal(100) / DAY
    later = _account(1, 1000, 20, starts_at=NOW + timedelta(days=15))
    assert forecast_unused([later], rate, NOW) == {1: 500}


def _burn(accounts: list[AccountFigures], per_day: int) -> BurnDown:
    captures = [_capture(d + 0.1, per_day) for d in range(7)]
    return burn_down("gpu", accounts, captures, forecast_unused(accounts, Decimal(0), NOW), NOW)


def test_credits_that_expire_unused_do_not_push_exhaustion_later() -> None:
    """100/day: the first allocation (10 days, 5,000) spends 1,000 and ends with 4,000
    unused; the second (1 year, 500) then lasts 5 days: out on day 15, not day 55."""
    burn = _burn([_account(1, 5000, 10), _account(2, 500, 365)], per_day=100)

    assert burn.spendable == 5500
    assert burn.projected_exhaustion == (NOW + timedelta(days=15)).date()


def test_allocations_used_up_before_they_end_last_one_after_another() -> None:
    burn = _burn([_account(2, 1000, 365), _account(1, 300, 5)], per_day=100)
    assert burn.projected_exhaustion == (NOW + timedelta(days=13)).date()


@pytest.mark.parametrize(
    "ends",
    [
        datetime(2027, 3, 11, tzinfo=UTC),  # an allocation's end: midnight after its last day
        datetime(2027, 3, 11, 17, 0, tzinfo=UTC),  # an end set to the minute through the API
    ],
)
def test_the_last_allocation_ending_unused_runs_out_at_its_end(ends: datetime) -> None:
    burn = _burn([_account(1, 5000, 0, expires_at=ends)], per_day=100)
    assert burn.projected_exhaustion == ends.date()
    assert burn.outlasts_allocations
    shown = fmt.exhaustion(burn.projected_exhaustion, ends, burn.outlasts_allocations)
    assert shown == "not within the allocation's period"


def test_an_account_without_an_end_is_spent_last_and_never_expires() -> None:
    burn = _burn([_account(1, 1000, 0, expires_at=None), _account(2, 200, 1)], per_day=100)
    assert burn.projected_exhaustion == (NOW + timedelta(days=11)).date()


def test_an_ended_or_suspended_account_gives_nothing_and_a_later_one_takes_over() -> None:
    """100/day: the 300 of account 4 from now; from tomorrow account 2 (same end, lower
    id) is spent first, 1,000 over 10 days; then the 200 left of account 4."""
    accounts = [
        _account(1, 1000, 30, status="suspended"),
        _account(2, 1000, 30, starts_at=NOW + timedelta(days=1)),
        _account(3, 1000, -1),
        _account(4, 300, 30),
    ]
    burn = _burn(accounts, per_day=100)
    assert burn.projected_exhaustion == (NOW + timedelta(days=13)).date()
    assert not burn.outlasts_allocations
    assert forecast_unused(accounts, Decimal(100) / DAY, NOW) == {1: 1000, 2: 0, 3: 1000, 4: 0}


def test_a_gap_before_the_next_allocation_starts_is_running_out() -> None:
    later = _account(2, 1000, 40, starts_at=NOW + timedelta(days=20))
    burn = _burn([_account(1, 300, 30), later], per_day=100)
    assert burn.projected_exhaustion == (NOW + timedelta(days=3)).date()
    assert not burn.outlasts_allocations
    assert forecast_unused([later], Decimal(100) / DAY, NOW) == {2: 0}


def test_a_project_without_recent_use_does_not_push_a_programs_exhaustion() -> None:
    """Project 2 is idle with 5,000 ending in 10 days; project 1 spends 100/day from 500."""
    idle = _account(2, 5000, 10, project_id=2)
    burn = _burn([_account(1, 500, 365), idle], per_day=100)
    assert burn.projected_exhaustion == (NOW + timedelta(days=5)).date()
    assert not burn.outlasts_allocations


_accounts = st.lists(
    st.builds(
        lambda available, start_day, length, active, ends: _account(
            0,
            available,
            0,
            starts_at=NOW + timedelta(days=start_day),
            expires_at=NOW + timedelta(days=start_day + length) if ends else None,
            status="active" if active else "suspended",
        ),
        st.integers(min_value=-50, max_value=5_000),
        st.integers(min_value=-30, max_value=30),
        st.integers(min_value=1, max_value=60),
        st.booleans(),
        st.booleans(),
    ),
    max_size=6,
)


@given(accounts=_accounts, per_day=st.integers(min_value=1, max_value=2_000))
def test_a_walk_never_spends_more_than_there_is_nor_runs_out_later_when_faster(
    accounts: list[AccountFigures], per_day: int
) -> None:
    for index, account in enumerate(accounts):
        account.id = index + 1
    slow = walk(accounts, Decimal(per_day) / DAY, NOW)
    fast = walk(accounts, Decimal(2 * per_day) / DAY, NOW)
    for account in accounts:
        if account.expires_at is not None:
            assert (
                0 <= fast.unused[account.id] <= slow.unused[account.id] <= max(account.available, 0)
            )
    assert slow.runs_out is None or slow.runs_out >= NOW
    if slow.runs_out is not None:
        assert fast.runs_out is not None and fast.runs_out <= slow.runs_out


def test_credits_that_never_end_walk_without_overflowing() -> None:
    forever = [_account(i, 100 * 365 * 900, 0, expires_at=None) for i in range(1, 11)]
    walked = walk(forever, Decimal(100) / DAY, NOW)
    assert walked.runs_out is None and walked.unused == {}
    assert _burn(forever, per_day=100).projected_exhaustion is not None


def test_outlasting_means_a_whole_micro_credit_left_in_any_allocation_ending() -> None:
    # Used up but for a fraction of a micro-credit: used up.
    nearly = walk([_account(1, 2_592_002, 10)], Decimal(604800 * 3 + 1) / 604800, NOW)
    assert (nearly.unused, nearly.outlasts) == ({1: 0}, False)
    # One runs out exactly at the end both share; the other ends with 500 left.
    tied = walk([_account(1, 1000, 10), _account(2, 500, 10)], Decimal(100) / DAY, NOW)
    assert (tied.unused, tied.outlasts) == ({1: 0, 2: 500}, True)
    # An empty allocation starting later changes nothing.
    empty_later = _account(2, 0, 60, starts_at=NOW + timedelta(days=20))
    assert walk([_account(1, 5000, 10), empty_later], Decimal(100) / DAY, NOW).outlasts
