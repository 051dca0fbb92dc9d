"""Who is acting: a user (through a token or a login) or the platform itself."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from credits.identity.models import Role, Scope


class Actor(BaseModel):
    """A resolved caller. ``scopes`` is None when the credential is not narrowed."""

    model_config = ConfigDict(frozen=True)

    label: str
    user_id: int | None = None
    email: str | None = None
    roles: frozenset[Role] = frozenset()
    scopes: frozenset[Scope] | None = None
    token_id: int | None = None

    @classmethod
    def system(cls, component: str) -> Actor:
        """The platform acting on its own (a sweep, the scheduler, a migration)."""
        return cls(label=f"system:{component}")

    @classmethod
    def for_user(
        cls,
        *,
        user_id: int,
        email: str,
        roles: frozenset[Role],
        scopes: frozenset[Scope] | None = None,
        token_id: int | None = None,
    ) -> Actor:
        return cls(
            label=f"user:{user_id}",
            user_id=user_id,
            email=email,
            roles=roles,
            scopes=scopes,
            token_id=token_id,
        )

    def has_role(self, role: Role) -> bool:
        return role in self.roles

    def allows_scope(self, scope: Scope) -> bool:
        return self.scopes is None or scope in self.scopes or Scope.ADMIN in self.scopes
