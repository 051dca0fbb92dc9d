"""What labelling work costs, in integer micro-credits, at one price-sheet version.

Quantities are units times 1,000,000. The cost of a quantity is rounded up
once, over the whole order: an order that has delivered ``D`` units owes
``cost(D)``, and each delivery captures ``cost(D_after) - cost(D_before)``, so
the captures add up to exactly ``cost`` of everything delivered however the
deliveries were split or ordered, and the quote ``cost(Q)`` is what delivering
exactly the quoted units costs.
"""

from __future__ import annotations

from dataclasses import dataclass

from credits.errors import InvalidInput
from credits.labelling.label_schema import AnnotationValue, SchemaKind
from credits.labelling.models import BASIS_POINTS, MICRO, PriceUnit

SECONDS_PER_HOUR = 3600
# Above this, one order's quote would not fit the ledger's amounts anyway.
MAX_UNITS_MICRO = 10**15


@dataclass(frozen=True)
class Price:
    unit: PriceUnit
    micro_credits_per_unit: int
    fee_basis_points: int


def cost(units_micro: int, price: Price) -> int:
    """Micro-credits owed for ``units_micro`` units, the fee included, rounded up."""
    if units_micro < 0:
        raise ValueError("units cannot be negative")
    numerator = units_micro * price.micro_credits_per_unit * (BASIS_POINTS + price.fee_basis_points)
    denominator = MICRO * BASIS_POINTS
    return -(-numerator // denominator)


def needs_estimate(unit: PriceUnit, kind: SchemaKind) -> bool:
    """True when the units one annotation counts are unknown until it is delivered."""
    if unit is PriceUnit.ANNOTATOR_HOUR:
        return True
    return unit is PriceUnit.LABEL and kind in (SchemaKind.MULTI_LABEL, SchemaKind.TEXT_SPANS)


def units_per_annotation(unit: PriceUnit, kind: SchemaKind, estimate_micro: int | None) -> int:
    """The units one annotation is quoted at, x 1e6.

    Items and submissions count one per annotation, as does a label of a
    single-label schema; labels of a multi-label or span schema and annotator
    hours count what the order estimates (labels per item, or hours per item).
    """
    if not needs_estimate(unit, kind):
        return MICRO
    if estimate_micro is None or estimate_micro <= 0:
        what = "seconds per item" if unit is PriceUnit.ANNOTATOR_HOUR else "labels per item"
        raise InvalidInput(f"a {unit.value} price needs an estimate of the {what}")
    if unit is PriceUnit.ANNOTATOR_HOUR:
        # The estimate is seconds per item (x 1e6); the unit is the hour.
        return -(-estimate_micro // SECONDS_PER_HOUR)
    return estimate_micro


def quoted_units(
    *, items: int, redundancy: int, unit: PriceUnit, kind: SchemaKind, estimate_micro: int | None
) -> int:
    """Units the whole order is quoted at, x 1e6: every item, gold ones included, times
    the annotators per item."""
    units = items * redundancy * units_per_annotation(unit, kind, estimate_micro)
    if units > MAX_UNITS_MICRO:
        raise InvalidInput("the order is too large to quote; split it")
    return units


def delivered_units(unit: PriceUnit, value: AnnotationValue, seconds: float | None) -> int:
    """Units one delivered annotation counts, x 1e6."""
    if unit is PriceUnit.LABEL:
        return value.label_count() * MICRO
    if unit is PriceUnit.ANNOTATOR_HOUR:
        if seconds is None:
            raise InvalidInput("an annotator-hour price needs the time spent on the item")
        return round(seconds * MICRO / SECONDS_PER_HOUR)
    return MICRO
