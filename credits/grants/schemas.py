"""Shapes the grants domain returns; amounts are integer micro-credits everywhere."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from credits.grants.models import (
    MAX_MEAN_SCORE,
    MIN_MEAN_SCORE,
    MemberRole,
    ProgramStatus,
    ProjectStatus,
)
from credits.ledger.models import Currency
from credits.ledger.schemas import AccountOut, TransferOut

CRITERION_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class Criterion(BaseModel):
    """One thing reviewers score from 1 to 5."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=CRITERION_KEY_PATTERN, description="a short slug, e.g. merit")
    label: str = Field(min_length=1, max_length=200)


class OwnerOut(BaseModel):
    user_id: int
    email: str
    name: str
    added_at: datetime


class ProgramBudget(BaseModel):
    """One currency of a program's pool: what was funded, awarded and is left."""

    currency: Currency
    account_id: int
    funded: int = Field(description="credits paid into the pool (credits_posted)")
    awarded: int = Field(description="credits paid out of the pool (debits_posted)")
    held: int = Field(description="credits reserved by pending transfers (debits_pending)")
    remaining: int = Field(description="what further awards may take (available)")


class ProgramOut(BaseModel):
    id: int
    name: str
    description: str
    status: ProgramStatus
    opens_at: datetime
    closes_at: datetime
    criteria: list[Criterion]
    min_reviewers: int
    min_mean_score: int = Field(
        ge=MIN_MEAN_SCORE,
        le=MAX_MEAN_SCORE,
        description="the lowest mean score an award needs, in hundredths (350 = 3.50)",
    )
    initial_share_percent: int | None = Field(
        description="the share of an award released at once; null releases it all"
    )
    created_at: datetime
    opened_at: datetime | None
    closed_at: datetime | None
    owners: list[OwnerOut]
    budget: list[ProgramBudget]


class ProgramPage(BaseModel):
    """Programs by id; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[ProgramOut]
    next_cursor: int | None


class FundingOut(BaseModel):
    """What funding a program wrote; ``replayed`` when the key had been seen before."""

    program_id: int
    transfer: TransferOut
    budget: ProgramBudget
    replayed: bool


class MemberOut(BaseModel):
    user_id: int
    email: str
    name: str
    role: MemberRole
    added_at: datetime


class ProjectOut(BaseModel):
    id: int
    title: str
    pi_user_id: int
    institution: str
    field_of_science: str
    status: ProjectStatus
    created_at: datetime
    members: list[MemberOut]


class ProjectDetail(ProjectOut):
    """A project with its ledger accounts: allocations and usage sinks."""

    accounts: list[AccountOut]


class ProjectPage(BaseModel):
    """Projects by id; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[ProjectOut]
    next_cursor: int | None
