"""The base of every domain error; the API turns these into problem details."""

from __future__ import annotations

from typing import Any, ClassVar


class CreditsError(Exception):
    """A refusal a user can act on.

    ``status`` and ``slug`` become the problem's HTTP status and ``type``;
    ``extra`` adds members to the problem document (RFC 9457 extensions).
    """

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(CreditsError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Forbidden(CreditsError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class Unauthenticated(CreditsError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"


class InvalidInput(CreditsError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class Conflict(CreditsError):
    status = 409
    slug = "conflict"
    title = "Conflict"
