"""What the ledger refuses, each with the HTTP status the API answers with."""

from __future__ import annotations

from credits.errors import Conflict, CreditsError, Forbidden, InvalidInput, NotFound


class InvalidAmount(InvalidInput):
    slug = "invalid-amount"
    title = "Invalid amount"


class AccountNotFound(NotFound):
    slug = "account-not-found"
    title = "Account not found"


class HoldNotFound(NotFound):
    slug = "hold-not-found"
    title = "Hold not found"


class CurrencyMismatch(InvalidInput):
    slug = "currency-mismatch"
    title = "Currency mismatch"


class InsufficientCredits(CreditsError):
    status = 402
    slug = "insufficient-credits"
    title = "Insufficient credits"


class AccountNotActive(Conflict):
    slug = "account-not-active"
    title = "Account is not active"


class CaptureExceedsHold(Conflict):
    slug = "capture-exceeds-hold"
    title = "Capture exceeds what the hold has left"


class HoldClosed(Conflict):
    slug = "hold-closed"
    title = "Hold is closed"


class IdempotencyKeyReused(InvalidInput):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused with a different request"


class AdjustmentForbidden(Forbidden):
    slug = "adjustment-forbidden"
    title = "Adjustments need the ops role"


class ReasonRequired(InvalidInput):
    slug = "reason-required"
    title = "A reason is required"


class NotExpired(Conflict):
    slug = "not-expired"
    title = "Account has not reached its end date"


class StatusChangeForbidden(Forbidden):
    slug = "status-change-forbidden"
    title = "Changing an account's status needs the ops role"
