"""Signing in through an OpenID Connect provider: an account is bound to (issuer, subject).

The first sign-in with a verified e-mail links the provider's subject to the
active account with that e-mail; from then on the subject alone finds the
account, so an e-mail changed at the provider keeps the link and another
subject sending the same e-mail is refused. Accounts are never created here.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.db import utcnow
from credits.errors import Unauthenticated
from credits.identity.actor import Actor
from credits.identity.errors import (
    AccountInactive,
    NoAccountForEmail,
    OidcSubjectMismatch,
    UnverifiedEmail,
)
from credits.identity.models import OidcIdentity, User
from credits.identity.service import actor_for, load_user

ISSUER_MAX_LENGTH = 500
SUBJECT_MAX_LENGTH = 255


def oidc_sign_in(
    session: Session, *, issuer: str, subject: str, email: str, email_verified: object
) -> Actor:
    """The actor a provider's verified sign-in is for; links the account the first time.

    ``email_verified`` must be exactly true (a missing claim is not). A linked
    subject signs in its account whatever e-mail it sends now; an unlinked one
    is linked to the active account with its e-mail, unless that account is
    already linked to another subject of the issuer. Appends ``user.oidc_linked``
    when it links.

    Raises UnverifiedEmail, Unauthenticated (no issuer or subject),
    NoAccountForEmail, OidcSubjectMismatch, AccountInactive.
    """
    if email_verified is not True or not email.strip():
        raise UnverifiedEmail("your provider sent no verified email")
    if not (0 < len(issuer) <= ISSUER_MAX_LENGTH and 0 < len(subject) <= SUBJECT_MAX_LENGTH):
        raise Unauthenticated("your provider sent no usable identity; try again")
    identity = _identity(session, issuer=issuer, subject=subject)
    if identity is None:
        identity = _link(session, issuer=issuer, subject=subject, email=email.strip().lower())
    user = identity.user
    if not user.is_active:
        raise AccountInactive("this account is deactivated; ask the platform's operators")
    identity.last_used_at = utcnow()
    session.flush()
    return actor_for(user)


def _identity(session: Session, *, issuer: str, subject: str) -> OidcIdentity | None:
    return session.scalar(
        select(OidcIdentity).where(OidcIdentity.issuer == issuer, OidcIdentity.subject == subject)
    )


def _link(session: Session, *, issuer: str, subject: str, email: str) -> OidcIdentity:
    """Binds (issuer, subject) to the active account with ``email``."""
    user = session.scalar(select(User).where(User.email == email))
    if user is None or not user.is_active:
        raise NoAccountForEmail(
            f"no active account uses {email}; ask the platform's operators for one"
        )
    linked_here = select(OidcIdentity.id).where(
        OidcIdentity.user_id == user.id, OidcIdentity.issuer == issuer
    )
    if session.scalar(linked_here) is not None:
        raise OidcSubjectMismatch(
            "this account is linked to another identity at your provider; sign in with that"
            " one, or ask the platform's operators to change the link"
        )
    identity = OidcIdentity(user_id=user.id, issuer=issuer, subject=subject)
    try:
        # A savepoint: a concurrent first sign-in of the same person may link first.
        with session.begin_nested():
            session.add(identity)
    except IntegrityError:
        found = _identity(session, issuer=issuer, subject=subject)
        if found is None:
            raise OidcSubjectMismatch(
                "this account was just linked to another identity at your provider"
            ) from None
        return found
    record_event(
        session,
        event_type="user.oidc_linked",
        actor=actor_for(user).label,
        subject_type="user",
        subject_id=str(user.id),
        data={"issuer": issuer},
    )
    return identity


def unlink_oidc(session: Session, *, email: str, actor: Actor) -> int:
    """Removes the user's OIDC links, so their next verified sign-in links afresh.

    For a person whose identity at the provider was replaced. Returns how many
    links went; appends ``user.oidc_unlinked`` for each. Raises UserNotFound.
    """
    user = load_user(session, email)
    links = session.scalars(select(OidcIdentity).where(OidcIdentity.user_id == user.id)).all()
    for link in links:
        record_event(
            session,
            event_type="user.oidc_unlinked",
            actor=actor.label,
            subject_type="user",
            subject_id=str(user.id),
            data={"issuer": link.issuer},
        )
        session.delete(link)
    session.flush()
    session.expire(user, ["oidc_identities"])
    return len(links)
