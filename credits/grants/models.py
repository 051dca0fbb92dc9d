"""Grant tables: programs (funding calls) with their owners, projects with their members.

A program's budget is not a column: it lives in the ledger, one program-pool
account per currency, coded ``program:<id>:pool:<currency>``. A project's
allocations are ledger accounts whose ``project_id`` is the project's id.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from credits.db import Base, BigId, UtcDateTime, in_values, utcnow
from credits.identity.models import User

# Mean review scores are integer hundredths: 350 is 3.50 on the 1-5 scale.
MIN_MEAN_SCORE = 100
MAX_MEAN_SCORE = 500
MAX_REVIEWERS = 50


class ProgramStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


class ProjectStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ARCHIVED = "archived"


class MemberRole(StrEnum):
    PI = "pi"
    MANAGER = "manager"
    MEMBER = "member"


class Program(Base):
    """A funding call: its window, its review policy and its tranche policy."""

    __tablename__ = "programs"
    __table_args__ = (
        CheckConstraint(in_values("status", ProgramStatus), name="status"),
        CheckConstraint("closes_at > opens_at", name="closes_after_opens"),
        CheckConstraint(f"min_reviewers BETWEEN 1 AND {MAX_REVIEWERS}", name="min_reviewers"),
        CheckConstraint(
            f"min_mean_score BETWEEN {MIN_MEAN_SCORE} AND {MAX_MEAN_SCORE}",
            name="min_mean_score",
        ),
        CheckConstraint(
            "initial_share_percent IS NULL OR initial_share_percent BETWEEN 1 AND 100",
            name="initial_share_percent",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ProgramStatus.DRAFT.value, index=True)
    opens_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closes_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # [{"key": "merit", "label": "Scientific merit"}, ...]; each scored 1-5 by reviewers.
    criteria: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    min_reviewers: Mapped[int] = mapped_column(Integer)
    min_mean_score: Mapped[int] = mapped_column(Integer)
    # The share of an award released at once; None releases everything at award.
    initial_share_percent: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    owners: Mapped[list[ProgramOwner]] = relationship(
        back_populates="program",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="ProgramOwner.user_id",
    )


class ProgramOwner(Base):
    """A funder who runs a program; every owner holds the funder role when added."""

    __tablename__ = "program_owners"

    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    program: Mapped[Program] = relationship(back_populates="owners")
    user: Mapped[User] = relationship(lazy="joined")


class Project(Base):
    """A research project: who leads it, where, in what field, and whether it may spend."""

    __tablename__ = "projects"
    __table_args__ = (CheckConstraint(in_values("status", ProjectStatus), name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    pi_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    institution: Mapped[str] = mapped_column(String(200))
    field_of_science: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=ProjectStatus.ACTIVE.value, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    members: Mapped[list[ProjectMember]] = relationship(
        back_populates="project",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="ProjectMember.user_id",
    )


class ProjectMember(Base):
    """A person on a project; the PI is the one member with role ``pi``."""

    __tablename__ = "project_members"
    __table_args__ = (
        CheckConstraint(in_values("role", MemberRole), name="role"),
        # One PI per project, whatever the code does.
        Index(
            "uq_project_members_one_pi",
            "project_id",
            unique=True,
            sqlite_where=text("role = 'pi'"),
            postgresql_where=text("role = 'pi'"),
        ),
    )

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="members")
    user: Mapped[User] = relationship(lazy="joined")


class ProposalKind(StrEnum):
    NEW = "new"
    RENEWAL = "renewal"
    SUPPLEMENT = "supplement"
    EXTENSION = "extension"


class ProposalStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    AWARDED = "awarded"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class AllocationStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    SUSPENDED = "suspended"


class TrancheStatus(StrEnum):
    PENDING = "pending"
    RELEASED = "released"


class Proposal(Base):
    """A project's application to a program; a supplement or extension names its allocation."""

    __tablename__ = "proposals"
    __table_args__ = (
        CheckConstraint(in_values("kind", ProposalKind), name="kind"),
        CheckConstraint(in_values("status", ProposalStatus), name="status"),
        CheckConstraint(
            "kind NOT IN ('supplement', 'extension') OR allocation_id IS NOT NULL",
            name="names_allocation",
        ),
        CheckConstraint(
            "starts_at IS NULL OR ends_at IS NULL OR ends_at > starts_at", name="ends_after_starts"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=ProposalStatus.DRAFT.value, index=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    abstract: Mapped[str] = mapped_column(Text, default="")
    justification: Mapped[str] = mapped_column(Text, default="")
    # {"gpu": micro-credits, "label": micro-credits}; complete once one amount is above zero.
    requested: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # No foreign key: allocations point back at awards and awards at proposals, and a
    # cycle of foreign keys can't be created in order. The service checks it exists.
    allocation_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    # Set when a funder decided with fewer completed reviews than the program asks for.
    override_reason: Mapped[str | None] = mapped_column(Text)


class ReviewAssignment(Base):
    """A reviewer asked to review a proposal; a declared conflict closes it to them for good."""

    __tablename__ = "review_assignments"

    proposal_id: Mapped[int] = mapped_column(
        ForeignKey("proposals.id", ondelete="CASCADE"), primary_key=True
    )
    reviewer_user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id"), primary_key=True, index=True
    )
    assigned_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    conflict_declared_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    conflict_reason: Mapped[str | None] = mapped_column(Text)


class Review(Base):
    """One reviewer's scores (1-5 per program criterion) and comment on one proposal."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("proposal_id", "reviewer_user_id"),
        CheckConstraint(
            f"mean_score BETWEEN {MIN_MEAN_SCORE} AND {MAX_MEAN_SCORE}", name="mean_score"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id", ondelete="CASCADE"))
    reviewer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    scores: Mapped[dict[str, int]] = mapped_column(JSON)
    # Integer hundredths of the mean of ``scores``, rounded down (350 = 3.50).
    mean_score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Award(Base):
    """The decision to fund a proposal: amounts per currency and the period they cover."""

    __tablename__ = "awards"
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="ends_after_starts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    # {"gpu": micro-credits, ...}: the whole award, released now or in tranches.
    amounts: Mapped[dict[str, int]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The client's Idempotency-Key: the same key again replays this award.
    idempotency_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Allocation(Base):
    """Credits of one currency for one project over one period, backed by a ledger account."""

    __tablename__ = "allocations"
    __table_args__ = (
        CheckConstraint(in_values("status", AllocationStatus), name="status"),
        CheckConstraint("expires_at > starts_at", name="expires_after_starts"),
        CheckConstraint("awarded_micro > 0", name="awarded_positive"),
        Index("ix_allocations_project_currency", "project_id", "currency"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    award_id: Mapped[int] = mapped_column(ForeignKey("awards.id"), index=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    currency: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), unique=True)
    # Every award and supplement into this allocation, released or pending, in micro-credits.
    awarded_micro: Mapped[int] = mapped_column(BigInteger)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    status: Mapped[str] = mapped_column(
        String(16), default=AllocationStatus.ACTIVE.value, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Tranche(Base):
    """The part of an award held back until the funder approves a progress report."""

    __tablename__ = "tranches"
    __table_args__ = (
        CheckConstraint(in_values("status", TrancheStatus), name="status"),
        CheckConstraint("amount_micro > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    award_id: Mapped[int] = mapped_column(ForeignKey("awards.id"), index=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), index=True)
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=TrancheStatus.PENDING.value)
    progress_report: Mapped[str | None] = mapped_column(Text)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    released_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The client's Idempotency-Key of the release: the same key again replays it.
    release_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AttachmentKind(StrEnum):
    DESCRIPTION = "description"  # the project description
    CV = "cv"


class ProposalAttachment(Base):
    """A PDF a proposal carries; its bytes live in the blob store's attachment area under
    their sha256 (:mod:`credits.grants.attachments`)."""

    __tablename__ = "proposal_attachments"
    __table_args__ = (
        CheckConstraint(in_values("kind", AttachmentKind), name="kind"),
        CheckConstraint("size > 0", name="size_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(
        ForeignKey("proposals.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    uploaded_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
