"""Grant tables: programs (funding calls) with their owners, projects with their members.

A program's budget is not a column: it lives in the ledger, one program-pool
account per currency, coded ``program:<id>:pool:<currency>``. A project's
allocations are ledger accounts whose ``project_id`` is the project's id.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from credits.db import Base, BigId, UtcDateTime, utcnow
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


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Program(Base):
    """A funding call: its window, its review policy and its tranche policy."""

    __tablename__ = "programs"
    __table_args__ = (
        CheckConstraint(_in("status", ProgramStatus), name="status"),
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
    __table_args__ = (CheckConstraint(_in("status", ProjectStatus), name="status"),)

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
        CheckConstraint(_in("role", MemberRole), name="role"),
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
