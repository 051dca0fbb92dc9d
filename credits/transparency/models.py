"""The transparency log's own tables: signed checkpoints and witness co-signatures.

The log's entries are audit rows (``audit_events.log_index``); its tiles live
in the tile store. A checkpoint row keeps each signed tree head the platform
published, so ``status`` and ``verify`` can compare tiles and rows against it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from credits.db import Base, BigId, UtcDateTime


class TransparencyCheckpoint(Base):
    """A signed checkpoint: the tree size, its root (hex) and the signed note."""

    __tablename__ = "transparency_checkpoints"
    __table_args__ = (
        CheckConstraint("size >= 0", name="size_not_negative"),
        CheckConstraint("length(root_hash) = 64", name="root_hash_is_sha256"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TransparencyCosignature(Base):
    """A witness's co-signature line on the checkpoint of one tree size."""

    __tablename__ = "transparency_cosignatures"
    __table_args__ = (
        UniqueConstraint("witness", "key_id", "size"),
        CheckConstraint("size >= 0", name="size_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    witness: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    signature: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
