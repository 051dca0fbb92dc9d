"""The e-mails of the forgotten-password flow: the one-time link, and the notice that
the password was changed.

Both go through the outbox like every other notification, in the transaction that
makes the link or sets the password; each row's dedupe key names its link, so a
retried transaction writes one mail.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from credits.notifications.service import KIND_RESET_LINK, enqueue_notification

__all__ = ["KIND_CHANGED_NOTICE", "KIND_RESET_LINK", "queue_password_changed", "queue_reset_link"]
KIND_CHANGED_NOTICE = "password_changed"


def queue_reset_link(
    session: Session,
    *,
    reset_id: int,
    user_id: int,
    email: str,
    name: str,
    link: str,
    minutes: int,
) -> int | None:
    """Enqueues the mail that carries ``link``; returns the outbox row id."""
    return enqueue_notification(
        session,
        recipient_email=email,
        recipient_user_id=user_id,
        kind=KIND_RESET_LINK,
        subject="Reset your password",
        body=(
            f"Hello {name},\n\n"
            "Someone, hopefully you, asked to reset the password of your account.\n"
            f"Choose a new password here within {minutes} minutes:\n\n"
            f"{link}\n\n"
            "The link works once. If you did not ask for it, ignore this mail: "
            "your password stays as it is.\n"
        ),
        dedupe_key=f"password-reset-link:{reset_id}",
    )


def queue_password_changed(
    session: Session, *, reset_id: int, user_id: int, email: str, name: str
) -> int | None:
    """Enqueues the notice that the password was changed through a link."""
    return enqueue_notification(
        session,
        recipient_email=email,
        recipient_user_id=user_id,
        kind=KIND_CHANGED_NOTICE,
        subject="Your password was changed",
        body=(
            f"Hello {name},\n\n"
            "The password of your account was changed through a reset link sent to this "
            "address. Every browser that was signed in to your account is signed out and "
            "every API token of your account is revoked: create new ones where you still "
            "need them.\n\n"
            "If you did not do this, ask for a new reset link from the sign-in page "
            "at once and tell your administrator.\n"
        ),
        dedupe_key=f"password-changed:{reset_id}",
    )
