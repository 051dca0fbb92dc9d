"""A user's own account: their name, ORCID iD and institution, a new password, and
signing out everywhere.

What a person changes about themselves from the portal's account page. A new
password needs the current one, so a session left open on a shared computer
cannot take the account over; setting it ends every portal session of the user
(:func:`credits.identity.service.set_password`), and the page signs the session
that made the change in again. It revokes the user's API tokens too when asked
(the page asks by default). Signing out everywhere ends every portal session and
revokes every API token: a token made from a stolen session stops with it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.identity.actor import Actor
from credits.identity.errors import InvalidCredentials, OrcidTaken, UserNotFound
from credits.identity.models import User
from credits.identity.passwords import verify_password
from credits.identity.schemas import UserOut
from credits.identity.service import (
    _clean_institution,
    _clean_orcid,
    clean_name,
    end_sessions,
    set_password,
)
from credits.identity.tokens import revoke_user_tokens

NOT_CURRENT = "the current password is not correct"


def _own_user(session: Session, actor: Actor) -> User:
    user = None if actor.user_id is None else session.get(User, actor.user_id)
    if user is None:
        raise UserNotFound("this account no longer exists")
    return user


def my_account(session: Session, *, actor: Actor) -> tuple[UserOut, bool]:
    """The actor's own user, and whether they have a password (not those who only sign
    in through their institution). Raises UserNotFound."""
    user = _own_user(session, actor)
    return UserOut.model_validate(user), user.password_hash is not None


def update_profile(
    session: Session,
    *,
    actor: Actor,
    name: str,
    orcid: str | None,
    institution: str | None,
) -> UserOut:
    """Sets the actor's own name, ORCID iD (checksum checked; blank clears it) and
    institution; appends ``user.profile_updated`` naming the fields that changed
    (not their values: the public log keeps no name or ORCID).

    Raises UserNotFound, InvalidName, InvalidOrcid, InvalidInput (institution),
    OrcidTaken.
    """
    user = _own_user(session, actor)
    wanted = {
        "name": clean_name(name),
        "orcid": _clean_orcid(orcid),
        "institution": _clean_institution(institution),
    }
    taken = wanted["orcid"] is not None and session.scalar(
        select(User.id).where(User.orcid == wanted["orcid"], User.id != user.id)
    )
    if taken:
        raise OrcidTaken(f"another user has the ORCID iD {wanted['orcid']}", orcid=wanted["orcid"])
    changed = sorted(field for field, value in wanted.items() if getattr(user, field) != value)
    if not changed:
        return UserOut.model_validate(user)
    for field in changed:
        setattr(user, field, wanted[field])
    session.flush()
    record_event(
        session,
        event_type="user.profile_updated",
        actor=actor.label,
        subject_type="user",
        subject_id=str(user.id),
        data={"fields": changed},
    )
    return UserOut.model_validate(user)


def change_password(
    session: Session, *, actor: Actor, current: str, new: str, revoke_tokens: bool = False
) -> tuple[UserOut, int]:
    """Replaces the actor's own password when ``current`` is right; every portal session
    of the user ends (sign the caller in again under the new generation), and with
    ``revoke_tokens`` every API token of the user is revoked (one ``token.revoked`` each).

    Returns the user and how many tokens were revoked. Raises UserNotFound,
    InvalidCredentials (wrong current password, or none set), WeakPassword.
    """
    user = _own_user(session, actor)
    stored = user.password_hash
    if stored is None or not verify_password(password_hash=stored, password=current):
        raise InvalidCredentials(NOT_CURRENT, field="current_password")
    changed = set_password(session, email=user.email, password=new, actor=actor)
    revoked = revoke_user_tokens(session, user_id=user.id, actor=actor) if revoke_tokens else []
    return changed, len(revoked)


def sign_out_everywhere(session: Session, *, actor: Actor) -> int:
    """Ends every portal session of the actor's own account and revokes every API token
    of it (one ``token.revoked`` each); returns how many tokens were revoked.

    Raises UserNotFound.
    """
    user = _own_user(session, actor)
    end_sessions(session, user_id=user.id)
    return len(revoke_user_tokens(session, user_id=user.id, actor=actor))
