"""What identity refuses, each with the HTTP status the API answers with."""

from __future__ import annotations

from credits.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated


class UserNotFound(NotFound):
    slug = "user-not-found"
    title = "User not found"


class EmailTaken(Conflict):
    slug = "email-taken"
    title = "Email address already in use"


class OrcidTaken(Conflict):
    slug = "orcid-taken"
    title = "ORCID iD already in use"


class InvalidEmail(InvalidInput):
    slug = "invalid-email"
    title = "Invalid email address"


class InvalidOrcid(InvalidInput):
    slug = "invalid-orcid"
    title = "Invalid ORCID iD"


class InvalidName(InvalidInput):
    slug = "invalid-name"
    title = "Invalid name"


class InvalidRole(InvalidInput):
    slug = "invalid-role"
    title = "Invalid role"


class WeakPassword(InvalidInput):
    slug = "weak-password"
    title = "Password does not meet the rules"


class InvalidScope(InvalidInput):
    slug = "invalid-scope"
    title = "Invalid token scope"


class InvalidExpiry(InvalidInput):
    slug = "invalid-expiry"
    title = "Invalid token expiry"


class TokenNotFound(NotFound):
    slug = "token-not-found"
    title = "API token not found"


class TokenAlreadyRevoked(Conflict):
    slug = "token-already-revoked"
    title = "API token already revoked"


class InvalidCredentials(Unauthenticated):
    """Email or password wrong; one message for both so accounts cannot be probed."""

    slug = "invalid-credentials"
    title = "Invalid credentials"


class AccountInactive(InvalidCredentials):
    """The password was right but the account is deactivated."""

    slug = "account-inactive"
    title = "Account deactivated"


class InvalidToken(Unauthenticated):
    """No token has this secret."""

    slug = "invalid-token"
    title = "Invalid API token"


class TokenRevoked(InvalidToken):
    slug = "token-revoked"
    title = "API token revoked"


class TokenExpired(InvalidToken):
    slug = "token-expired"
    title = "API token expired"


class TokenOwnerInactive(InvalidToken):
    slug = "token-owner-inactive"
    title = "API token belongs to a deactivated account"


class AuthenticationRequired(Unauthenticated):
    slug = "authentication-required"
    title = "Authentication required"


class MissingScope(Forbidden):
    slug = "missing-scope"
    title = "Token lacks the scope this needs"


class MissingRole(Forbidden):
    slug = "missing-role"
    title = "Role required"


class UnverifiedEmail(Unauthenticated):
    """An OpenID Connect provider did not vouch for the e-mail it sent."""

    slug = "unverified-email"
    title = "Email address not verified"


class NoAccountForEmail(Forbidden):
    slug = "no-account-for-email"
    title = "No account for this email address"


class OidcSubjectMismatch(Forbidden):
    """The account is bound to another identity at the same provider."""

    slug = "oidc-subject-mismatch"
    title = "Account linked to another identity"
