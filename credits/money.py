"""Amounts of credits as people type and read them: the one parser and the one formatter.

The ledger counts integer micro-credits (1 credit = 1,000,000); people type
credits. Every amount typed on the command line or into a portal form goes
through :func:`parse_credits`, and every amount shown goes through
:func:`format_credits`, so the two always agree on what an amount looks like:

- digits, optionally with a point and at most six decimals (``2.5``, ``.5``,
  ``1000.000001``);
- optionally a comma between each group of three digits before the point
  (``1,000.25``, ``12,500``). A comma anywhere else is refused rather than
  guessed at: ``1,5`` could be a decimal comma;
- optionally a sign: ``+`` always, ``-`` only where the caller takes a
  signed amount (an adjustment); zero only where the caller takes it (a
  proposal's request for nothing yet);
- never an exponent (``1e9``), ``NaN``, ``Infinity``, spaces inside,
  or digits other than 0-9; at most :data:`MAX_MICRO` micro-credits either way,
  the ledger's limit for one transfer.

The parser works on integers only, so no input can overflow a decimal context,
and it raises nothing but :class:`InvalidCreditsAmount`.
"""

from __future__ import annotations

import re

from credits.errors import InvalidInput
from credits.formatting import exact_number
from credits.ledger.journal import MAX_AMOUNT
from credits.ledger.models import MICRO_PER_CREDIT

DECIMALS = 6
MAX_MICRO = MAX_AMOUNT
# Longer than any amount within MAX_MICRO however it is written; checked before
# the pattern so that a megabyte of digits costs nothing.
MAX_TEXT_LENGTH = 40
_AMOUNT = re.compile(
    r"(?P<sign>[+-]?)"
    r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]*)"
    r"(?:\.(?P<fraction>[0-9]+))?",
    re.ASCII,
)
EXAMPLES = "e.g. 2.5 or 1,000.25"
_ABOVE_ZERO = "enter an amount above zero"
_AT_LEAST_ZERO = "enter an amount of zero or more"


class InvalidCreditsAmount(InvalidInput):
    """Text that is not an amount of credits this caller accepts; the detail says why."""

    slug = "invalid-credits-amount"
    title = "Invalid amount of credits"


def parse_credits(text: str, *, signed: bool = False, zero: bool = False) -> int:
    """'1,000.25' credits → 1_000_250_000 micro-credits.

    Surrounding whitespace is ignored. Only amounts above zero are accepted,
    unless ``signed`` (an adjustment, which may remove credits) accepts
    negative ones too, and ``zero`` (a request for nothing yet) accepts zero.
    Raises InvalidCreditsAmount, and nothing else, for any other text.
    """
    cleaned = text.strip()
    if not cleaned:
        raise InvalidCreditsAmount(f"enter an amount of credits, {EXAMPLES}")
    if len(cleaned) > MAX_TEXT_LENGTH:
        raise InvalidCreditsAmount(
            f"that is too long for an amount of credits (at most {MAX_TEXT_LENGTH} characters)"
        )
    match = _AMOUNT.fullmatch(cleaned)
    if match is None or not (match.group("whole") or match.group("fraction")):
        raise InvalidCreditsAmount(
            f"enter a number of credits, {EXAMPLES}: digits and at most one point,"
            " commas only between groups of three digits, no exponent"
        )
    fraction = match.group("fraction") or ""
    if len(fraction) > DECIMALS:
        raise InvalidCreditsAmount(
            f"credits have at most {DECIMALS} decimal places (one micro-credit)"
        )
    whole = int(match.group("whole").replace(",", "") or "0")
    micro = whole * MICRO_PER_CREDIT + int(fraction.ljust(DECIMALS, "0"))
    return _checked(-micro if match.group("sign") == "-" else micro, signed=signed, zero=zero)


def _checked(micro: int, *, signed: bool, zero: bool) -> int:
    """``micro`` when the caller takes it; raises InvalidCreditsAmount otherwise."""
    if micro == 0 and not zero:
        raise InvalidCreditsAmount("enter an amount other than zero" if signed else _ABOVE_ZERO)
    if micro < 0 and not signed:
        raise InvalidCreditsAmount(_AT_LEAST_ZERO if zero else _ABOVE_ZERO)
    if abs(micro) > MAX_MICRO:
        raise InvalidCreditsAmount(_too_large())
    return micro


def _too_large() -> str:
    return f"an amount is at most {format_credits(MAX_MICRO, grouping=True)} credits"


def format_credits(micro: int, *, grouping: bool = False) -> str:
    """12_500_000 → '12.5'; with ``grouping``, 1_000_250_000 → '1,000.25'.

    Exact for every integer, with no trailing zeros; :func:`parse_credits`
    reads back whatever this writes for an amount within :data:`MAX_MICRO`.
    The text is :func:`credits.formatting.exact_number`'s (the one formatting
    module); pages round to a hundredth with :func:`credits.formatting.money`.
    """
    text = exact_number(micro)
    return text if grouping else text.replace(",", "")
