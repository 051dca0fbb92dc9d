"""The append-only audit table.

Each row is one event in canonical JSON with its SHA-256 leaf hash. Ids are
taken at INSERT, so they are not the order rows commit in: the transparency
integrator (credits.transparency.integrator) gives committed rows their place in
the public log, ``log_index``, once no older transaction can still commit. On
PostgreSQL ``txid`` is the writing transaction's id (a server default), which
is how the integrator knows. The database refuses every UPDATE but setting a
NULL ``log_index`` once (migration 0013).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from credits.db import Base, BigId, UtcDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint("length(leaf_hash) = 64", name="leaf_hash_is_sha256"),
        Index("ix_audit_events_subject", "subject_type", "subject_id"),
        # The rows still waiting for a log index, so the integrator finds them without
        # scanning past every row already in the log (migration 0014).
        Index(
            "ix_audit_events_waiting",
            "id",
            postgresql_where=text("log_index IS NULL"),
            sqlite_where=text("log_index IS NULL"),
        ),
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
    # The row's position in the transparency log; NULL until integrated.
    log_index: Mapped[int | None] = mapped_column(BigInteger, unique=True, index=True)
    # PostgreSQL: txid_current() of the inserting transaction (server default);
    # NULL on SQLite, whose writers are serial.
    txid: Mapped[int | None] = mapped_column(BigInteger)
