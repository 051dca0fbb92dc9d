"""Users, roles, passwords and API tokens: the only code that changes identity rows.

Every function takes the caller's session, validates before it writes, flushes
and never commits. A refused call changes nothing. Every change that matters to
a funder appends an audit event in the caller's transaction, so the event and
the change commit or roll back together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.service import record_event, record_events
from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.identity.errors import (
    AccountInactive,
    EmailTaken,
    InvalidCredentials,
    InvalidEmail,
    InvalidName,
    InvalidOrcid,
    InvalidRole,
    OrcidTaken,
    UserNotFound,
    WeakPassword,
)
from credits.identity.models import Role, Scope, User, UserRole
from credits.identity.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from credits.identity.schemas import UserOut

MIN_PASSWORD_LENGTH = 12
# Argon2 hashes any length, but a megabyte "password" is a cheap way to burn CPU.
MAX_PASSWORD_LENGTH = 1024
NAME_MAX_LENGTH = 200
ORCID_PATTERN = re.compile(r"[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{3}[0-9X]")
BAD_CREDENTIALS = "email or password is incorrect"
ALLOWED_ROLES = ", ".join(role.value for role in Role)


# Validation: pure functions, each raising the error that names what is wrong.


def normalize_email(email: str) -> str:
    """``email`` stripped, lowercased and syntax-checked (no DNS lookup).

    Raises InvalidEmail.
    """
    text = email.strip().lower()
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidEmail(f"{text!r} is not a valid email address: {error}") from None
    # email-validator may rewrite the address (Unicode NFC); the table's CHECK wants lowercase.
    return info.normalized.lower()


def orcid_check_digit(base_digits: str) -> str:
    """The ISO 7064 MOD 11-2 check character of an ORCID iD's first fifteen digits."""
    total = 0
    for digit in base_digits:
        total = (total + int(digit)) * 2
    result = (12 - total % 11) % 11
    return "X" if result == 10 else str(result)


def _clean_orcid(orcid: str | None) -> str | None:
    """An ORCID iD in its 0000-0000-0000-000X form, or None when absent or blank.

    Raises InvalidOrcid for a wrong shape or a failed checksum.
    """
    text = (orcid or "").strip().upper()
    if not text:
        return None
    if not ORCID_PATTERN.fullmatch(text):
        raise InvalidOrcid(f"{text!r} is not an ORCID iD: expected the form 0000-0000-0000-000X")
    digits = text.replace("-", "")
    if orcid_check_digit(digits[:-1]) != digits[-1]:
        raise InvalidOrcid(f"{text} fails the ORCID checksum: look for a mistyped digit")
    return text


def clean_name(name: str, *, limit: int = NAME_MAX_LENGTH, required: bool = True) -> str:
    """``name`` stripped; raises InvalidName when required and blank, or too long."""
    text = name.strip()
    if required and not text:
        raise InvalidName("a name is required")
    if len(text) > limit:
        raise InvalidName(f"a name has at most {limit} characters, not {len(text)}")
    return text


def _clean_institution(institution: str | None) -> str | None:
    """``institution`` stripped, None when blank; raises InvalidInput when too long."""
    text = (institution or "").strip()
    if len(text) > NAME_MAX_LENGTH:
        raise InvalidInput(
            f"an institution has at most {NAME_MAX_LENGTH} characters", field="institution"
        )
    return text or None


def _check_password(password: str) -> str:
    """``password`` unchanged when its length is allowed; raises WeakPassword."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def _parse_role(role: Role | str) -> Role:
    try:
        return Role(str(role).strip().lower())
    except ValueError:
        raise InvalidRole(
            f"unknown role {str(role)!r}; allowed roles: {ALLOWED_ROLES}",
            allowed=[r.value for r in Role],
        ) from None


def _parse_roles(roles: Iterable[Role | str]) -> list[Role]:
    """Distinct roles, sorted; raises InvalidRole for an unknown one or none at all."""
    # A bare string is an iterable of characters; read it as one role instead.
    items = [roles] if isinstance(roles, str) else list(roles)
    parsed = sorted({_parse_role(item) for item in items})
    if not parsed:
        raise InvalidRole(f"a user needs at least one role; allowed roles: {ALLOWED_ROLES}")
    return parsed


# Loading and rendering.


def load_user(session: Session, email: str) -> User:
    """The user with ``email`` (compared lowercased); raises UserNotFound."""
    key = email.strip().lower()
    user = session.scalar(select(User).where(User.email == key))
    if user is None:
        raise UserNotFound(f"no user has the email address {key!r}", email=key)
    return user


def _refuse_taken(session: Session, *, email: str, orcid: str | None) -> None:
    """Raises EmailTaken or OrcidTaken when another user already has either."""
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken(f"a user with the email address {email!r} already exists", email=email)
    if orcid is None:
        return
    if session.scalar(select(User.id).where(User.orcid == orcid)) is not None:
        raise OrcidTaken(f"a user with the ORCID iD {orcid} already exists", orcid=orcid)


def actor_for(
    user: User, *, scopes: frozenset[Scope] | None = None, token_id: int | None = None
) -> Actor:
    return Actor.for_user(
        user_id=user.id,
        email=user.email,
        roles=frozenset(Role(held.role) for held in user.roles),
        scopes=scopes,
        token_id=token_id,
    )


def _user_event(event_type: str, user: User, actor: Actor, **data: Any) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "actor": actor.label,
        "subject_type": "user",
        "subject_id": str(user.id),
        # Users are named by id alone: the public log keeps no e-mail, name or ORCID.
        "data": dict(data),
    }


# Users and roles.


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    roles: Iterable[Role | str],
    institution: str | None = None,
    orcid: str | None = None,
    password: str | None = None,
    actor: Actor,
) -> UserOut:
    """Creates an active user holding ``roles``, with a password when one is given.

    The email is stripped and lowercased; a blank institution or ORCID iD is
    stored as none; an ORCID iD must pass its ISO 7064 checksum; a password has
    12 to 1024 characters. Appends ``user.created`` and one ``role.granted``
    per role.

    Raises InvalidEmail, InvalidName, InvalidInput (institution), InvalidOrcid,
    InvalidRole, WeakPassword, EmailTaken, OrcidTaken. (Two concurrent creations
    of one email both pass the check; the second fails at the UNIQUE constraint.)
    """
    clean_email = normalize_email(email)
    cleaned_name = clean_name(name)
    clean_institution = _clean_institution(institution)
    clean_orcid = _clean_orcid(orcid)
    granted = _parse_roles(roles)
    checked_password = None if password is None else _check_password(password)
    _refuse_taken(session, email=clean_email, orcid=clean_orcid)
    user = User(
        email=clean_email,
        name=cleaned_name,
        institution=clean_institution,
        orcid=clean_orcid,
        # Hashing is the slow step, so it comes after every cheap refusal.
        password_hash=None if checked_password is None else hash_password(checked_password),
        is_active=True,
        roles=[UserRole(role=role.value) for role in granted],
    )
    session.add(user)
    session.flush()
    roles_data = [role.value for role in granted]
    created = _user_event("user.created", user, actor, roles=roles_data)
    grants = [_user_event("role.granted", user, actor, role=role) for role in roles_data]
    record_events(session, [created, *grants])
    return UserOut.model_validate(user)


def list_users(session: Session) -> list[UserOut]:
    """Every user, oldest first."""
    return [
        UserOut.model_validate(user) for user in session.scalars(select(User).order_by(User.id))
    ]


def get_user_by_email(session: Session, email: str) -> UserOut:
    """The user with ``email`` (any case, surrounding spaces ignored); raises UserNotFound."""
    return UserOut.model_validate(load_user(session, email))


def actor_for_email(session: Session, email: str) -> Actor:
    """The actor an operator names on the command line (``--as``); raises UserNotFound.

    Only the CLI, run by someone with shell access to the platform, acts as
    another user this way; what the actor may do is still checked by services.
    """
    return actor_for(load_user(session, email))


def grant_role(session: Session, *, email: str, role: Role | str, actor: Actor) -> UserOut:
    """Gives the user ``role``, ends their portal sessions and appends ``role.granted``.

    Granting a role the user already holds changes nothing and appends no
    event: a retried grant is harmless and the log records only real changes.

    Raises InvalidRole, UserNotFound.
    """
    wanted = _parse_role(role)
    user = load_user(session, email)
    if any(held.role == wanted.value for held in user.roles):
        return UserOut.model_validate(user)
    user.roles.append(UserRole(role=wanted.value))
    _end_sessions(user)
    session.flush()
    record_event(session, **_user_event("role.granted", user, actor, role=wanted.value))
    return UserOut.model_validate(user)


def revoke_role(session: Session, *, email: str, role: Role | str, actor: Actor) -> UserOut:
    """Takes ``role`` from the user, ends their portal sessions and appends ``role.revoked``.

    Revoking a role the user does not hold changes nothing and appends no
    event, for the same reason as in ``grant_role``.

    Raises InvalidRole, UserNotFound.
    """
    unwanted = _parse_role(role)
    user = load_user(session, email)
    held = next((item for item in user.roles if item.role == unwanted.value), None)
    if held is None:
        return UserOut.model_validate(user)
    # delete-orphan on the relationship deletes the row at flush.
    user.roles.remove(held)
    _end_sessions(user)
    session.flush()
    record_event(session, **_user_event("role.revoked", user, actor, role=unwanted.value))
    return UserOut.model_validate(user)


# Portal sessions.


def set_active(session: Session, *, email: str, active: bool, actor: Actor) -> UserOut:
    """Deactivates (``active=False``) or reactivates the user, and appends
    ``user.deactivated`` or ``user.reactivated``.

    A deactivated user cannot sign in, by password or through their institution;
    their portal sessions end at once, their API tokens are refused (and kept, so
    that reactivating restores them), and they get no notifications. Asking for
    the state the user is in already changes nothing and appends no event.

    Raises UserNotFound.
    """
    user = load_user(session, email)
    if user.is_active == active:
        return UserOut.model_validate(user)
    user.is_active = active
    _end_sessions(user)
    session.flush()
    kind = "user.reactivated" if active else "user.deactivated"
    record_event(session, **_user_event(kind, user, actor))
    return UserOut.model_validate(user)


def _end_sessions(user: User) -> None:
    # A session stays valid only while it carries the user's current generation; the
    # increment runs in SQL so two concurrent bumps cannot land on one value.
    user.session_generation = User.session_generation + 1


def end_sessions(session: Session, *, user_id: int) -> int:
    """Ends every portal session of the user (sign out, sign out everywhere).

    Returns the new session generation; a session signed in from now on carries
    it. Raises UserNotFound.
    """
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound(f"no user has the id {user_id}")
    _end_sessions(user)
    session.flush()
    return user.session_generation


# Passwords.


def set_password(session: Session, *, email: str, password: str, actor: Actor) -> UserOut:
    """Replaces the user's password, ends their portal sessions and appends
    ``user.password_set`` (without the hash).

    Raises WeakPassword, UserNotFound.
    """
    checked = _check_password(password)
    user = load_user(session, email)
    user.password_hash = hash_password(checked)
    _end_sessions(user)
    session.flush()
    record_event(session, **_user_event("user.password_set", user, actor))
    return UserOut.model_validate(user)


def authenticate_password(session: Session, *, email: str, password: str) -> Actor:
    """The actor for a correct email and password; upgrades an outdated hash.

    An unknown email, a user without a password and a wrong password all take
    one Argon2 check and raise the same InvalidCredentials, so neither the
    answer nor its timing tells whether an account exists. AccountInactive (a
    subclass of InvalidCredentials) is raised only after the password matched.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidCredentials(BAD_CREDENTIALS)
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    stored = None if user is None else user.password_hash
    matched = verify_password(password_hash=stored or dummy_hash(), password=password)
    if user is None or stored is None or not matched:
        raise InvalidCredentials(BAD_CREDENTIALS)
    if not user.is_active:
        raise AccountInactive("this account is deactivated; ask an administrator")
    if needs_rehash(stored):
        user.password_hash = hash_password(password)
        session.flush()
    return actor_for(user)
