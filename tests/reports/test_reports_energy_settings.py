"""Energy and carbon factors come from settings, per pool and per flavour."""

from __future__ import annotations

from decimal import Decimal

import pytest

from credits.reports.energy import parse_energy_by_flavour, policy_from_settings
from credits.settings import SettingsError, load_settings

KWH_MJ = 3_600_000_000


def test_defaults_are_pue_1_2_and_350_g() -> None:
    settings = load_settings()
    assert (settings.energy_pue, settings.grid_intensity_g_per_kwh) == (1.2, 350.0)
    assert settings.idle_gpu_util_percent == 10.0
    footprint = policy_from_settings(settings).footprint(KWH_MJ, "any")
    assert footprint.kg_co2e == Decimal("0.42")


def test_flavour_override_wins_over_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_ENERGY_PUE", "1.5")
    monkeypatch.setenv("CREDITS_GRID_INTENSITY_G_PER_KWH", "400")
    monkeypatch.setenv("CREDITS_ENERGY_BY_FLAVOUR", "h100-80gb=1.1:50, a100-80gb=1.3:420")
    policy = policy_from_settings(load_settings())

    assert policy.footprint(KWH_MJ, "h100-80gb").kg_co2e == Decimal("0.055")
    assert policy.footprint(2 * KWH_MJ, "a100-80gb").kg_co2e == Decimal("1.092")
    assert policy.footprint(KWH_MJ, "l4").kg_co2e == Decimal("0.6")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a100", "is not flavour=PUE:G_PER_KWH"),
        ("a100=1.2", "is not flavour=PUE:G_PER_KWH"),
        ("a100=x:3", "the PUE in 'a100=x:3' is not a number"),
        ("a100=0.9:3", "must be at least 1"),
        ("a100=1.1:-1", "must not be negative"),
        ("a100=1.1:1,a100=1.2:2", "names 'a100' twice"),
    ],
)
def test_bad_overrides_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_energy_by_flavour(text)


def test_a_bad_override_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_ENERGY_BY_FLAVOUR", "a100=0.5:1")
    with pytest.raises(SettingsError, match="CREDITS_ENERGY_BY_FLAVOUR: the PUE"):
        load_settings()
