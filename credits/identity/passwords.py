"""Password hashing with Argon2id (argon2-cffi's recommended parameters)."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


@cache
def _hasher() -> PasswordHasher:
    # Built on first use, not at import: nothing in this package does work at import time.
    return PasswordHasher()


def hash_password(password: str) -> str:
    """An encoded Argon2id hash of ``password`` with a fresh random salt."""
    return _hasher().hash(password)


def verify_password(*, password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``.

    False, never an exception, for a wrong password or a hash that is not a
    valid Argon2 string (a corrupt row must not turn a login into a 500).
    """
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones.

    A string that is not an Argon2 hash at all needs replacing too.
    """
    try:
        return _hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@cache
def dummy_hash() -> str:
    """A hash of nothing anyone knows, verified when there is no user to check against.

    Verifying it costs what a real check costs, so the time a login takes does
    not tell whether the email address has an account.
    """
    return hash_password("not a password: no account has this hash")
