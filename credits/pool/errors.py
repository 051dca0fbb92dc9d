"""What the GPU pool refuses, each with the HTTP status the API answers with."""

from __future__ import annotations

from credits.errors import Conflict, Forbidden, InvalidInput, NotFound


class FlavourNotFound(NotFound):
    slug = "flavour-not-found"
    title = "GPU flavour not found"


class FlavourExists(Conflict):
    slug = "flavour-exists"
    title = "GPU flavour already exists"


class InvalidFlavour(InvalidInput):
    slug = "invalid-flavour"
    title = "Invalid GPU flavour"


class InvalidTime(InvalidInput):
    slug = "invalid-time"
    title = "Invalid time"


class RateInPast(InvalidInput):
    """A rate may start now or later; the past is never re-priced."""

    slug = "rate-in-past"
    title = "Rate would take effect in the past"


class RateExists(Conflict):
    slug = "rate-exists"
    title = "A rate version already takes effect at that time"


class NoRateInForce(Conflict):
    """The flavour has no rate version at or before the time asked about."""

    slug = "no-rate-in-force"
    title = "No rate in force"


class PoolChangeForbidden(Forbidden):
    slug = "pool-change-forbidden"
    title = "Changing the GPU pool needs the ops role"
