"""Shapes identity returns: users and tokens, never a password hash or a token hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from credits.identity.models import Role, Scope


class UserOut(BaseModel):
    """A user with their roles sorted, so two reads of the same user compare equal."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    institution: str | None
    orcid: str | None
    roles: list[Role]
    is_active: bool
    created_at: datetime

    @field_validator("roles", mode="before")
    @classmethod
    def _role_names(cls, value: Any) -> Any:
        """Accepts ``UserRole`` rows (the ORM relationship) as well as role names."""
        if isinstance(value, list | tuple | set | frozenset):
            return sorted(str(getattr(item, "role", item)) for item in value)
        return value


class TokenOut(BaseModel):
    """An API token as listings show it: its prefix, never its secret or hash.

    ``scopes`` is empty when the token carries every right of its user.
    """

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @field_validator("scopes", mode="before")
    @classmethod
    def _split_scopes(cls, value: Any) -> Any:
        """The table stores scopes space-separated; the API shows a sorted list."""
        if isinstance(value, str):
            return sorted(value.split())
        return value


class CreatedToken(BaseModel):
    """A new token and its secret, which exists only in this object and is shown once."""

    token: TokenOut
    # Kept out of repr so that a logged CreatedToken does not leak the secret.
    secret: str = Field(repr=False)
