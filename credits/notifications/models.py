"""The outbox: one row per e-mail, written in the same transaction as its event.

A row is delivered at least once by :func:`credits.notifications.service.send_pending`
after the transaction that wrote it commits. ``dedupe_key`` is unique, so an
event replayed (a task run twice, a digest swept twice a day) writes one row.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from credits.db import Base, BigId, UtcDateTime, utcnow

# After this many failed attempts a message stays in the outbox, unsent, for ops.
MAX_ATTEMPTS = 8


class NotificationKind(StrEnum):
    PROPOSAL_SUBMITTED = "proposal_submitted"
    REVIEWER_ASSIGNED = "reviewer_assigned"
    DECISION = "decision"
    ALLOCATION_EXPIRING = "allocation_expiring"
    LOW_BALANCE = "low_balance"


class OutboxMessage(Base):
    """An e-mail waiting to be sent, or sent (``sent_at``), with its delivery history."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The sender's claim: unsent rows whose next attempt is due, oldest first.
        Index("ix_outbox_sent_at_next_attempt_at", "sent_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    recipient_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    recipient_email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
