"""Which PUE and grid intensity apply to a flavour's jobs: the pool's, or an override.

``energy_by_flavour`` reads ``"flavour=PUE:G_PER_KWH,..."``, e.g.
``"a100-80gb=1.1:50,h100-80gb=1.3:420"``; a flavour not named gets the pool's
``energy_pue`` and ``grid_intensity_g_per_kwh``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from credits.metering.energy import EnergyFootprint

if TYPE_CHECKING:
    from credits.settings import Settings


@dataclass(frozen=True, slots=True)
class EnergyFactors:
    pue: Decimal
    grid_g_per_kwh: Decimal


def _number(text: str, what: str, entry: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{what} in {entry!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{what} in {entry!r} is not finite")
    return value


def _entry(entry: str) -> tuple[str, EnergyFactors]:
    name, equals, factors = entry.partition("=")
    pue_text, colon, grid_text = factors.partition(":")
    if not equals or not colon or not name.strip():
        raise ValueError(f"energy_by_flavour entry {entry!r} is not flavour=PUE:G_PER_KWH")
    pue = _number(pue_text, "the PUE", entry)
    grid = _number(grid_text, "the grid intensity", entry)
    if pue < 1:
        raise ValueError(f"the PUE in {entry!r} must be at least 1")
    if grid < 0:
        raise ValueError(f"the grid intensity in {entry!r} must not be negative")
    return name.strip(), EnergyFactors(pue=pue, grid_g_per_kwh=grid)


def parse_energy_by_flavour(text: str) -> dict[str, EnergyFactors]:
    """``"a100=1.1:50,h100=1.3:420"`` → factors by flavour; raises ValueError with the entry."""
    found: dict[str, EnergyFactors] = {}
    for raw in text.split(","):
        if not raw.strip():
            continue
        name, factors = _entry(raw)
        if name in found:
            raise ValueError(f"energy_by_flavour names {name!r} twice")
        found[name] = factors
    return found


@dataclass(frozen=True, slots=True)
class EnergyPolicy:
    """The pool's factors and the per-flavour overrides, from settings."""

    default: EnergyFactors
    by_flavour: dict[str, EnergyFactors] = field(default_factory=dict)

    @classmethod
    def from_values(
        cls, *, pue: float, grid_g_per_kwh: float, by_flavour: str = ""
    ) -> EnergyPolicy:
        default = EnergyFactors(pue=Decimal(str(pue)), grid_g_per_kwh=Decimal(str(grid_g_per_kwh)))
        return cls(default=default, by_flavour=parse_energy_by_flavour(by_flavour))

    def factors(self, flavour: str) -> EnergyFactors:
        return self.by_flavour.get(flavour, self.default)

    def footprint(self, energy_mj: int, flavour: str) -> EnergyFootprint:
        factors = self.factors(flavour)
        return EnergyFootprint.from_mj(
            energy_mj, pue=factors.pue, grid_g_per_kwh=factors.grid_g_per_kwh
        )


def policy_from_settings(settings: Settings) -> EnergyPolicy:
    return EnergyPolicy.from_values(
        pue=settings.energy_pue,
        grid_g_per_kwh=settings.grid_intensity_g_per_kwh,
        by_flavour=settings.energy_by_flavour,
    )
