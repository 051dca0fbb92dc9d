"""GPU pool tables: the flavours a job may ask for and their effective-dated rates.

A rate version is never changed or deleted (the database refuses UPDATE and
DELETE with a trigger): a new price is a new row with a later
``effective_from``, so whatever was charged at an old rate can always be
explained by the row that was in force at the time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from credits.db import Base, BigId, UtcDateTime, utcnow

FLAVOUR_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
FLAVOUR_NAME_CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyz-"
# A Kubernetes label value is at most 63 characters.
NODE_LABEL_MAX_LENGTH = 63
# Generous for any GPU, and low enough to catch megabytes typed as gigabytes.
MAX_GPU_MEMORY_GB = 8192
MAX_GPUS_PER_NODE = 64
# The longest checkpoint grace a flavour may allow, and the cap a new flavour gets.
MAX_CHECKPOINT_GRACE_CAP_S = 86400
DEFAULT_CHECKPOINT_GRACE_CAP_S = 300


class GpuFlavour(Base):
    """A kind of GPU node in the pool, selected by the value of a node label."""

    __tablename__ = "pool_flavours"
    __table_args__ = (
        # FLAVOUR_NAME_PATTERN in SQL both SQLite and PostgreSQL understand:
        # ltrim() with a character set strips every allowed character.
        CheckConstraint(
            "length(name) BETWEEN 2 AND 63 AND substr(name, 1, 1) <> '-'"
            f" AND ltrim(name, '{FLAVOUR_NAME_CHARACTERS}') = ''",
            name="name_slug",
        ),
        CheckConstraint(
            f"length(node_label_value) BETWEEN 1 AND {NODE_LABEL_MAX_LENGTH}",
            name="node_label_value_length",
        ),
        CheckConstraint(
            f"gpu_memory_gb BETWEEN 1 AND {MAX_GPU_MEMORY_GB}", name="gpu_memory_gb_range"
        ),
        CheckConstraint(
            f"gpus_per_node BETWEEN 1 AND {MAX_GPUS_PER_NODE}", name="gpus_per_node_range"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    node_label_value: Mapped[str] = mapped_column(String(NODE_LABEL_MAX_LENGTH))
    gpu_memory_gb: Mapped[int] = mapped_column(Integer)
    gpus_per_node: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The longest grace (SIGTERM to SIGKILL) a checkpointable job of this flavour may ask.
    max_checkpoint_grace_seconds: Mapped[int] = mapped_column(
        Integer,
        default=DEFAULT_CHECKPOINT_GRACE_CAP_S,
        server_default=str(DEFAULT_CHECKPOINT_GRACE_CAP_S),
    )

    rates: Mapped[list[RateVersion]] = relationship(back_populates="flavour")


class RateVersion(Base):
    """One price of one flavour, in force from ``effective_from`` until the next version.

    Immutable: the database refuses UPDATE and DELETE of these rows.
    """

    __tablename__ = "pool_rate_versions"
    __table_args__ = (
        UniqueConstraint("flavour_id", "effective_from"),
        CheckConstraint("micro_credits_per_gpu_hour > 0", name="rate_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    flavour_id: Mapped[int] = mapped_column(ForeignKey("pool_flavours.id"))
    # Integer micro-credits (1 credit = 1,000,000); never a float on a money path.
    micro_credits_per_gpu_hour: Mapped[int] = mapped_column(BigInteger)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)

    flavour: Mapped[GpuFlavour] = relationship(back_populates="rates")
