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

from werkzeug.routing.converters import IntegerConverter

ID_DIGITS = 18
MAX_ID = 10**ID_DIGITS - 1  # below 2**63 - 1, so every id that matches fits a BIGINT


class IdConverter(IntegerConverter):
    """Werkzeug's ``int`` for at most 18 digits: longer numbers match no route."""

    regex = rf"\d{{1,{ID_DIGITS}}}"
