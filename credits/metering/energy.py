"""Energy and carbon of GPU work: kWh from the energy counters, kg CO2e from kWh.

The counters measure the GPU board only. The data centre's overhead enters
through its PUE (power usage effectiveness, facility energy / IT energy, so at
least 1) and the grid's carbon intensity (g CO2e per kWh); both are settings
per pool. Decimal keeps the sums of many small jobs exact and free of float
noise in reports; rounding is the report's choice, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

MJ_PER_KWH = 3_600_000_000  # 1 kWh = 3.6 MJ = 3.6e9 mJ
_GRAMS_PER_KG = 1000


def kwh_from_mj(mj: int) -> Decimal:
    """Millijoules (what NVML and DCGM count) in kilowatt-hours."""
    if mj < 0:
        raise ValueError(f"energy must not be negative; got {mj} mJ")
    return Decimal(mj) / MJ_PER_KWH


def co2e_kg(
    kwh: Decimal | int, *, pue: float | Decimal, grid_g_per_kwh: float | Decimal
) -> Decimal:
    """kg CO2e of ``kwh`` of IT energy: kWh * PUE * grid intensity / 1000."""
    energy = Decimal(kwh)
    if not energy.is_finite() or energy < 0:
        raise ValueError(f"energy must be finite and not negative; got {kwh} kWh")
    return energy * _pue(pue) * _intensity(grid_g_per_kwh) / _GRAMS_PER_KG


def _pue(pue: float | Decimal) -> Decimal:
    value = _decimal(pue)
    if not value.is_finite() or value < 1:
        raise ValueError(f"PUE must be a finite number of at least 1; got {pue}")
    return value


def _intensity(grid_g_per_kwh: float | Decimal) -> Decimal:
    value = _decimal(grid_g_per_kwh)
    if not value.is_finite() or value < 0:
        raise ValueError(f"grid intensity must be finite and not negative; got {grid_g_per_kwh}")
    return value


def _decimal(value: float | Decimal) -> Decimal:
    # Through str: a setting of 1.2 means 1.2, not 1.1999999999999999555910790149937.
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True, slots=True)
class EnergyFootprint:
    """The energy (IT, before PUE) and emissions of some work; footprints add up
    over jobs, allocations, projects and programs."""

    kwh: Decimal = Decimal(0)
    kg_co2e: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.kwh < 0 or self.kg_co2e < 0:
            raise ValueError(f"a footprint is not negative; got {self.kwh} kWh, {self.kg_co2e} kg")

    @classmethod
    def from_mj(
        cls, mj: int, *, pue: float | Decimal, grid_g_per_kwh: float | Decimal
    ) -> EnergyFootprint:
        kwh = kwh_from_mj(mj)
        return cls(kwh=kwh, kg_co2e=co2e_kg(kwh, pue=pue, grid_g_per_kwh=grid_g_per_kwh))

    def add(self, other: EnergyFootprint) -> EnergyFootprint:
        return EnergyFootprint(kwh=self.kwh + other.kwh, kg_co2e=self.kg_co2e + other.kg_co2e)

    def __add__(self, other: EnergyFootprint) -> EnergyFootprint:
        return self.add(other)

    @classmethod
    def total(cls, footprints: Iterable[EnergyFootprint]) -> EnergyFootprint:
        """The sum; zero for none (``sum`` would need a start value)."""
        result = cls()
        for footprint in footprints:
            result = result.add(footprint)
        return result
