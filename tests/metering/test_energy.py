"""Energy and carbon arithmetic: kWh from mJ, kg CO2e from kWh, PUE and grid."""

from __future__ import annotations

from decimal import Decimal

import pytest

from credits.metering.energy import MJ_PER_KWH, EnergyFootprint, co2e_kg, kwh_from_mj


def test_kwh_from_mj() -> None:
    assert kwh_from_mj(MJ_PER_KWH) == Decimal(1)
    assert kwh_from_mj(0) == Decimal(0)
    # One H100 at 700 W for an hour.
    assert kwh_from_mj(700 * 3600 * 1000) == Decimal("0.7")


def test_kwh_from_mj_refuses_negative_energy() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        kwh_from_mj(-1)


def test_co2e_is_energy_times_pue_times_intensity() -> None:
    # 10 kWh at PUE 1.2 on a 400 g/kWh grid: 10 * 1.2 * 400 / 1000 = 4.8 kg.
    assert co2e_kg(Decimal(10), pue=1.2, grid_g_per_kwh=400) == Decimal("4.8")


def test_co2e_takes_float_settings_at_their_written_value() -> None:
    # Through binary floats 1.1 * 3 would be 3.3000000000000003.
    assert co2e_kg(Decimal(1000), pue=1.1, grid_g_per_kwh=3) == Decimal("3.3")


def test_co2e_of_a_zero_carbon_grid_is_zero() -> None:
    assert co2e_kg(Decimal(5), pue=1.5, grid_g_per_kwh=0) == 0


@pytest.mark.parametrize("pue", [0.99, 0, -1, float("nan"), float("inf")])
def test_co2e_refuses_a_pue_below_one_or_not_finite(pue: float) -> None:
    with pytest.raises(ValueError, match="PUE must be a finite number of at least 1"):
        co2e_kg(Decimal(1), pue=pue, grid_g_per_kwh=400)


@pytest.mark.parametrize("intensity", [-0.1, float("nan"), float("inf")])
def test_co2e_refuses_a_negative_or_infinite_grid_intensity(intensity: float) -> None:
    with pytest.raises(ValueError, match="grid intensity must be finite and not negative"):
        co2e_kg(Decimal(1), pue=1.2, grid_g_per_kwh=intensity)


def test_co2e_refuses_negative_energy() -> None:
    with pytest.raises(ValueError, match="energy must be finite and not negative"):
        co2e_kg(Decimal(-1), pue=1.2, grid_g_per_kwh=400)


def test_footprint_from_mj() -> None:
    footprint = EnergyFootprint.from_mj(2 * MJ_PER_KWH, pue=1.25, grid_g_per_kwh=200)

    assert footprint == EnergyFootprint(kwh=Decimal(2), kg_co2e=Decimal("0.5"))


def test_footprints_add_up() -> None:
    a = EnergyFootprint(kwh=Decimal("1.5"), kg_co2e=Decimal("0.3"))
    b = EnergyFootprint(kwh=Decimal("0.5"), kg_co2e=Decimal("0.2"))

    assert a + b == a.add(b) == EnergyFootprint(kwh=Decimal(2), kg_co2e=Decimal("0.5"))
    assert EnergyFootprint.total([a, b, b]) == EnergyFootprint(
        kwh=Decimal("2.5"), kg_co2e=Decimal("0.7")
    )
    assert EnergyFootprint.total([]) == EnergyFootprint()


def test_footprints_from_different_pools_add_with_their_own_settings() -> None:
    """A job's share in a hydro-powered pool and one in a coal-heavy pool."""
    hydro = EnergyFootprint.from_mj(MJ_PER_KWH, pue=1.1, grid_g_per_kwh=20)
    coal = EnergyFootprint.from_mj(MJ_PER_KWH, pue=1.5, grid_g_per_kwh=800)

    assert hydro + coal == EnergyFootprint(kwh=Decimal(2), kg_co2e=Decimal("1.222"))


def test_a_footprint_is_never_negative() -> None:
    with pytest.raises(ValueError, match="not negative"):
        EnergyFootprint(kwh=Decimal(-1), kg_co2e=Decimal(0))
