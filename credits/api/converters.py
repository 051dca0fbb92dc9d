"""The URL converter for the ids in API paths.

Every ``<int:...>`` of an API route is a database id, a 64-bit integer.
Werkzeug's own ``int`` converter takes any number of digits, so a path such as
``/api/v1/accounts/99999999999999999999`` reached the database, where SQLite
refuses a bound parameter that large with an OverflowError (a 500). With
:class:`IdConverter` registered as ``int``, such a path matches no route and
answers 404, like any other id that does not exist.

The bound is in the regular expression, not a ``max``: Werkzeug checks a
rule's method before it converts the value, so a ``max`` refusal on
PATCH /programs/<huge> would answer 405 (the GET rule matched the path).
"""

from __future__ import annotations

from werkzeug.routing.converters import BaseConverter, IntegerConverter

ID_DIGITS = 18
MAX_ID = 10**ID_DIGITS - 1  # below 2**63 - 1, so every id that matches fits a BIGINT


class IdConverter(IntegerConverter):
    """Werkzeug's ``int`` for at most 18 digits: longer numbers match no route."""

    regex = rf"\d{{1,{ID_DIGITS}}}"


# A C2SP tlog-tiles path below ``tile/``: ``<L>/<N>[.p/<W>]`` or ``entries/<N>[.p/<W>]``
# with N in 3-digit groups, all but the last prefixed with ``x``.
TILE_PATH_PATTERN = r"(?:[0-9]{1,2}|entries)/(?:x[0-9]{3}/){0,6}[0-9]{3}(?:\.p/[0-9]{1,3})?"

TILE_PATH_MIN_LENGTH = len("0/000")
TILE_PATH_MAX_LENGTH = len("entries/" + "x000/" * 6 + "000.p/255")


class TilePathConverter(BaseConverter):
    """``<tile:...>``: a tile path; anything else matches no route (404)."""

    regex = TILE_PATH_PATTERN
    part_isolating = False
