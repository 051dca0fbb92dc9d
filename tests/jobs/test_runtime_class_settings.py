"""CREDITS_SCHEDULER_CLASS_BOUNDS_HOURS and CREDITS_SCHEDULER_CLASS_AGING_HOURS reach the
scheduler's Policy, and a bad value is refused when the settings load."""

from __future__ import annotations

import pytest

from credits.jobs.runtime import policy_from_settings
from credits.settings import SettingsError, load_settings

HOUR = 3600


def test_by_default_there_is_one_class_and_4_hours_aging() -> None:
    policy = policy_from_settings(load_settings())
    assert policy.class_bounds_s == ()
    assert policy.class_aging_s == 4 * HOUR


def test_class_bounds_and_aging_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_SCHEDULER_CLASS_BOUNDS_HOURS", "1,4,24")
    assert policy_from_settings(load_settings()).class_bounds_s == (HOUR, 4 * HOUR, 24 * HOUR)
    monkeypatch.setenv("CREDITS_SCHEDULER_CLASS_BOUNDS_HOURS", "0.5, 2,48")
    monkeypatch.setenv("CREDITS_SCHEDULER_CLASS_AGING_HOURS", "0")
    policy = policy_from_settings(load_settings())
    assert policy.class_bounds_s == (HOUR // 2, 2 * HOUR, 48 * HOUR)
    assert policy.class_aging_s == 0


def test_empty_bounds_put_every_job_in_one_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_SCHEDULER_CLASS_BOUNDS_HOURS", "")
    assert policy_from_settings(load_settings()).class_bounds_s == ()


@pytest.mark.parametrize("value", ["4,1", "1,1", "0,4", "-1", "one,four"])
def test_bounds_not_positive_and_increasing_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CREDITS_SCHEDULER_CLASS_BOUNDS_HOURS", value)
    with pytest.raises(SettingsError, match="CREDITS_SCHEDULER_CLASS_BOUNDS_HOURS"):
        load_settings()
