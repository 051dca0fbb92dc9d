"""Shapes the grants domain returns; amounts are integer micro-credits everywhere."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from credits.grants.models import (
    MAX_MEAN_SCORE,
    MIN_MEAN_SCORE,
    AllocationStatus,
    MemberRole,
    ProgramStatus,
    ProjectStatus,
    ProposalKind,
    ProposalStatus,
    TrancheStatus,
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
    funded: int = Field(
        description="credits paid into the pool (credits_posted), less what ops took back"
    )
    awarded: int = Field(description="credits granted from the pool to allocations")
    held: int = Field(description="credits reserved by pending transfers (debits_pending)")
    promised: int = Field(description="credits owed in pending tranches of awards already made")
    remaining: int = Field(
        description="what further awards may take: available less promised, never below 0"
    )


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


class ProposalOut(BaseModel):
    id: int
    program_id: int
    project_id: int
    kind: ProposalKind
    status: ProposalStatus
    title: str
    abstract: str
    justification: str
    requested: dict[Currency, int] = Field(description="micro-credits per currency")
    starts_at: datetime | None
    ends_at: datetime | None
    allocation_id: int | None = Field(description="the allocation a supplement or extension names")
    created_by_user_id: int
    created_at: datetime
    submitted_at: datetime | None
    decided_at: datetime | None
    decided_by_user_id: int | None
    decision_reason: str | None
    override_reason: str | None


class ProposalPage(BaseModel):
    """Proposals by id; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[ProposalOut]
    next_cursor: int | None


class AssignmentOut(BaseModel):
    proposal_id: int
    reviewer_user_id: int
    assigned_by_user_id: int
    assigned_at: datetime
    conflict_declared_at: datetime | None


class ReviewOut(BaseModel):
    id: int
    proposal_id: int
    reviewer_user_id: int
    scores: dict[str, int]
    mean_score: int = Field(description="mean of the scores in hundredths (350 = 3.50)")
    comment: str
    submitted_at: datetime
    updated_at: datetime


class ReviewSummary(BaseModel):
    """What the deciders see: assignments, completed reviews and the mean of their means."""

    proposal_id: int
    min_reviewers: int
    assignments: list[AssignmentOut]
    reviews: list[ReviewOut]
    mean_score: int | None = Field(description="hundredths; null before the first review")
    withheld: bool = Field(
        default=False,
        description="the reader is on the applying project: assignments, reviews and "
        "scores are left out (in a program's queue; a single proposal's reviews answer 403)",
    )


class TrancheOut(BaseModel):
    id: int
    award_id: int
    allocation_id: int
    amount_micro: int
    status: TrancheStatus
    progress_report: str | None
    released_at: datetime | None
    released_by_user_id: int | None


class AllocationOut(BaseModel):
    id: int
    award_id: int
    program_id: int
    project_id: int
    currency: Currency
    account_id: int
    awarded_micro: int = Field(description="every award into it, released or pending")
    released_micro: int = Field(description="what has reached the ledger account")
    available_micro: int = Field(description="what the ledger account can still spend")
    starts_at: datetime
    expires_at: datetime
    status: AllocationStatus = Field(description="the ledger account's status")
    created_at: datetime


class AllocationPage(BaseModel):
    """Allocations by id; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[AllocationOut]
    next_cursor: int | None


class AwardOut(BaseModel):
    """An award with what it created or changed; ``replayed`` when the key was seen before."""

    id: int
    proposal_id: int
    program_id: int
    project_id: int
    amounts: dict[Currency, int]
    starts_at: datetime
    ends_at: datetime
    decided_by_user_id: int
    created_at: datetime
    allocations: list[AllocationOut]
    tranches: list[TrancheOut]
    replayed: bool = False
