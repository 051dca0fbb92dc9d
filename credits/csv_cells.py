"""CSV that a spreadsheet opens as data, never as formulas.

Spreadsheet programs evaluate a cell that starts with ``=``, ``+``, ``-`` or
``@`` (and some after a leading tab or carriage return) as a formula, so a
project title such as ``=HYPERLINK("http://…")`` in a funder's export would run
when the file is opened (CSV injection). Every CSV the platform writes goes
through :func:`write_csv`, which gives such a text cell a leading ``'``, the
prefix spreadsheets read as "this is text". Numbers are written as numbers:
``-5`` is a value, not a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_PREFIX = "'"


def safe_cell(value: object) -> object:
    """``value`` as a CSV cell: numbers as they are, None as empty, anything else as
    text, with a leading ``'`` when it starts like a formula."""
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return TEXT_PREFIX + text
    return text


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> str:
    """A header of ``columns`` and one line per row (missing keys empty), every cell
    made safe by :func:`safe_cell`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([safe_cell(column) for column in columns])
    for row in rows:
        unknown = set(row) - set(columns)
        if unknown:
            raise ValueError(f"cells outside the columns: {sorted(unknown)}")
        writer.writerow([safe_cell(row.get(column)) for column in columns])
    return out.getvalue()
