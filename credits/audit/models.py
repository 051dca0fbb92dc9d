"""The append-only audit table.

Each row is one event in canonical JSON with its SHA-256 leaf hash. Rows are
numbered by ``id``; signed checkpoints (a Merkle tree over leaf hashes in id
order) will live in their own table and point at a tree size, so adding them
never rewrites an event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from credits.db import Base, BigId, UtcDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint("length(leaf_hash) = 64", name="leaf_hash_is_sha256"),
        Index("ix_audit_events_subject", "subject_type", "subject_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    subject_type: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # The exact bytes that were hashed (UTF-8 of this text), kept verbatim.
    canonical_json: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64), index=True)
