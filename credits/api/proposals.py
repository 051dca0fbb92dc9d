"""Proposals, reviews, awards, allocations and tranches under /api/v1.

Same shape as :mod:`credits.api.grants`: authenticate, check the token's
scope, load the object through an access helper (404 when it is out of the
caller's reach: a reviewer who declared a conflict included), call one
service in one transaction, render. Requests that move credits (award, which
covers supplements, and tranche release) need an ``Idempotency-Key`` header.
"""

from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from pydantic import Field, StrictInt
from sqlalchemy.orm import Session

from credits.api.auth import session_factory
from credits.api.converters import MAX_ID
from credits.api.grants import _caller, _Strict
from credits.api.openapi import operation
from credits.api.paging import next_page_link
from credits.api.parsing import NoInput, idempotency_key, json_body, optional_json_body
from credits.db import run_in_transaction, session_scope
from credits.grants import allocations, awards, proposals, reviews
from credits.grants.errors import AllocationNotFound, TrancheNotFound
from credits.grants.models import ProposalKind, ProposalStatus
from credits.grants.proposal_queries import load_tranche
from credits.grants.queries import DEFAULT_PAGE, MAX_PAGE
from credits.grants.schemas import (
    AllocationOut,
    AllocationPage,
    AssignmentOut,
    AwardOut,
    ProposalOut,
    ProposalPage,
    ReviewOut,
    ReviewSummary,
    TrancheOut,
)
from credits.identity.access import (
    get_project_for_actor,
)
from credits.identity.access_proposals import (
    get_allocation_for_actor,
    get_proposal_for_actor,
    list_allocations_for_actor,
    list_proposals_for_actor,
    load_proposal_for_actor,
)
from credits.identity.models import Scope
from credits.ledger.models import Currency
from credits.schema_types import ApiTime

blueprint = Blueprint("proposals", __name__, url_prefix="/api/v1")

# Strict: a JSON true or 1.0 is not an amount of micro-credits.
Amounts = dict[Currency, StrictInt]


class ProposalQuery(_Strict):
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID, description="a page's next_cursor")
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    program_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    project_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    status: ProposalStatus | None = None


class AllocationQuery(_Strict):
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID, description="a page's next_cursor")
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    project_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    program_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    currency: Currency | None = None


class ProposalCreate(_Strict):
    program_id: StrictInt = Field(ge=1, le=MAX_ID)
    project_id: StrictInt = Field(ge=1, le=MAX_ID)
    kind: ProposalKind
    title: str = Field(default="", max_length=300)
    abstract: str = ""
    justification: str = ""
    requested: Amounts = Field(default_factory=dict, description="micro-credits per currency")
    starts_at: ApiTime | None = None
    ends_at: ApiTime | None = None
    allocation_id: StrictInt | None = Field(
        default=None, ge=1, le=MAX_ID, description="supplement, extension"
    )


class ProposalUpdate(_Strict):
    title: str | None = Field(default=None, max_length=300)
    abstract: str | None = None
    justification: str | None = None
    requested: Amounts | None = None
    starts_at: ApiTime | None = None
    ends_at: ApiTime | None = None


class OptionalReason(_Strict):
    reason: str | None = None


class ReviewerAdd(_Strict):
    user_id: StrictInt = Field(ge=1, le=MAX_ID)


class ConflictIn(_Strict):
    reason: str = Field(min_length=1)


class ReviewIn(_Strict):
    scores: dict[str, StrictInt] = Field(description="every program criterion, 1-5")
    comment: str = Field(min_length=1)


class AwardIn(_Strict):
    amounts: Amounts = Field(default_factory=dict, description="micro-credits per currency")
    starts_at: ApiTime | None = Field(default=None, description="new and renewal only")
    ends_at: ApiTime | None = Field(default=None, description="not for a supplement")
    reason: str | None = None
    override_reason: str | None = Field(default=None, description="decide with fewer reviews")


class RejectIn(_Strict):
    reason: str | None = None
    override_reason: str | None = None


class ReleaseIn(_Strict):
    progress_report: str = Field(min_length=1)


# Proposals.


@blueprint.get("/proposals")
@operation("List proposals", response=ProposalPage, query=ProposalQuery, problems=(403,))
def list_proposals() -> ResponseReturnValue:
    """Proposals the caller may see, by id: their projects', their programs' submitted ones,
    those they review without a conflict; ops all."""
    actor = _caller(Scope.READ)
    query = ProposalQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        page = list_proposals_for_actor(
            session,
            actor,
            **query.model_dump(exclude={"cursor", "limit"}),
            cursor=query.cursor,
            limit=query.limit,
        )
    headers = next_page_link(query, cursor=page.next_cursor)
    return page.model_dump(mode="json"), 200, headers


@blueprint.post("/proposals")
@operation(
    "Draft a proposal",
    body=ProposalCreate,
    response=ProposalOut,
    status=201,
    problems=(403, 404, 409, 422),
)
def create_proposal() -> ResponseReturnValue:
    """A draft from a ProposalCreate body; the PI or a manager of the project, or ops."""
    actor = _caller(Scope.WRITE)
    body = json_body(ProposalCreate)
    with session_scope(session_factory()) as session:
        get_project_for_actor(session, actor, body.project_id, scope=Scope.WRITE)
        proposal = proposals.create_proposal(session, actor=actor, **body.model_dump())
    return proposal.model_dump(mode="json"), 201


@blueprint.get("/proposals/<int:proposal_id>")
@operation("Get a proposal", response=ProposalOut, problems=(403, 404))
def get_proposal(proposal_id: int) -> ResponseReturnValue:
    """One proposal, when the caller may see it."""
    actor = _caller(Scope.READ)
    with session_scope(session_factory()) as session:
        proposal = get_proposal_for_actor(session, actor, proposal_id)
    return proposal.model_dump(mode="json")


@blueprint.patch("/proposals/<int:proposal_id>")
@operation(
    "Edit a draft proposal",
    body=ProposalUpdate,
    response=ProposalOut,
    problems=(403, 404, 409, 422),
)
def update_proposal(proposal_id: int) -> ResponseReturnValue:
    """Changes the fields a ProposalUpdate body names; only a draft is edited."""
    actor = _caller(Scope.WRITE)
    body = json_body(ProposalUpdate)
    with session_scope(session_factory()) as session:
        load_proposal_for_actor(session, actor, proposal_id, scope=Scope.WRITE)
        proposal = proposals.update_proposal(
            session, proposal_id=proposal_id, actor=actor, **body.model_dump(exclude_none=True)
        )
    return proposal.model_dump(mode="json")


@blueprint.post("/proposals/<int:proposal_id>/submit")
@operation(
    "Submit a draft proposal",
    body=NoInput,
    body_required=False,
    response=ProposalOut,
    problems=(403, 404, 409, 422),
)
def submit_proposal(proposal_id: int) -> ResponseReturnValue:
    """draft → submitted, once complete and while the program takes proposals."""
    actor = _caller(Scope.WRITE)
    optional_json_body(NoInput)
    with session_scope(session_factory()) as session:
        load_proposal_for_actor(session, actor, proposal_id, scope=Scope.WRITE)
        proposal = proposals.submit_proposal(session, proposal_id=proposal_id, actor=actor)
    return proposal.model_dump(mode="json")


@blueprint.post("/proposals/<int:proposal_id>/withdraw")
@operation(
    "Withdraw a proposal",
    body=OptionalReason,
    body_required=False,
    response=ProposalOut,
    problems=(403, 404, 409, 422),
)
def withdraw_proposal(proposal_id: int) -> ResponseReturnValue:
    """draft, submitted or in_review → withdrawn (optional OptionalReason body)."""
    actor = _caller(Scope.WRITE)
    body = optional_json_body(OptionalReason)
    with session_scope(session_factory()) as session:
        load_proposal_for_actor(session, actor, proposal_id, scope=Scope.WRITE)
        proposal = proposals.withdraw_proposal(
            session, proposal_id=proposal_id, actor=actor, reason=body.reason
        )
    return proposal.model_dump(mode="json")


# Reviews.


@blueprint.post("/proposals/<int:proposal_id>/reviewers")
@operation(
    "Assign a reviewer",
    body=ReviewerAdd,
    response=AssignmentOut,
    status=201,
    problems=(403, 404, 409, 422),
)
def assign_reviewer(proposal_id: int) -> ResponseReturnValue:
    """A program owner or ops assigns the reviewer a ReviewerAdd body names."""
    actor = _caller(Scope.WRITE)
    body = json_body(ReviewerAdd)
    with session_scope(session_factory()) as session:
        load_proposal_for_actor(session, actor, proposal_id, scope=Scope.WRITE)
        assignment = reviews.assign_reviewer(
            session, proposal_id=proposal_id, reviewer_user_id=body.user_id, actor=actor
        )
    return assignment.model_dump(mode="json"), 201


@blueprint.post("/proposals/<int:proposal_id>/conflict")
@operation(
    "Declare a conflict of interest",
    body=ConflictIn,
    response=AssignmentOut,
    problems=(403, 404, 409, 422),
)
def declare_conflict(proposal_id: int) -> ResponseReturnValue:
    """The assigned reviewer declares a conflict; the proposal then answers them 404."""
    actor = _caller(Scope.WRITE)
    body = json_body(ConflictIn)
    with session_scope(session_factory()) as session:
        load_proposal_for_actor(session, actor, proposal_id, scope=Scope.WRITE)
        assignment = reviews.declare_conflict(
            session, proposal_id=proposal_id, actor=actor, reason=body.reason
        )
    return assignment.model_dump(mode="json")


@blueprint.put("/proposals/<int:proposal_id>/review")
@operation("Score a proposal", body=ReviewIn, response=ReviewOut, problems=(403, 404, 409, 422))
def submit_review(proposal_id: int) -> ResponseReturnValue:
    """The caller's review (scores and comment); sending it again replaces it until the decision."""
    actor = _caller(Scope.WRITE)
    body = json_body(ReviewIn)
    with session_scope(session_factory()) as session:
        load_proposal_for_actor(session, actor, proposal_id, scope=Scope.WRITE)
        review = reviews.submit_review(
            session, proposal_id=proposal_id, actor=actor, **body.model_dump()
        )
    return review.model_dump(mode="json")


@blueprint.get("/proposals/<int:proposal_id>/reviews")
@operation("Get a proposal's reviews", response=ReviewSummary, problems=(403, 404))
def get_reviews(proposal_id: int) -> ResponseReturnValue:
    """Assignments, counted reviews and their mean, for the program's owners and ops."""
    actor = _caller(Scope.READ)
    with session_scope(session_factory()) as session:
        load_proposal_for_actor(session, actor, proposal_id)
        summary = reviews.get_review_summary(session, proposal_id=proposal_id, actor=actor)
    return summary.model_dump(mode="json")


# Decisions.


@blueprint.post("/proposals/<int:proposal_id>/award")
@operation(
    "Award a proposal",
    idempotency_key=True,
    body=AwardIn,
    response=AwardOut,
    status=201,
    problems=(400, 402, 403, 404, 409, 422),
)
def award_proposal(proposal_id: int) -> ResponseReturnValue:
    """Awards an AwardIn body's amounts and dates (supplements and extensions too); needs an
    ``Idempotency-Key`` header, and replays the first award when it is sent again."""
    actor = _caller(Scope.WRITE)
    key = idempotency_key("an award")
    body = json_body(AwardIn)

    def award(session: Session) -> AwardOut:
        load_proposal_for_actor(session, actor, proposal_id, scope=Scope.WRITE)
        return awards.award_proposal(
            session, proposal_id=proposal_id, actor=actor, key=key, **body.model_dump()
        )

    # Two requests with one key may race: the loser's retry replays the winner's.
    return run_in_transaction(session_factory(), award).model_dump(mode="json"), 201


@blueprint.post("/proposals/<int:proposal_id>/reject")
@operation(
    "Reject a proposal",
    body=RejectIn,
    body_required=False,
    response=ProposalOut,
    problems=(403, 404, 409, 422),
)
def reject_proposal(proposal_id: int) -> ResponseReturnValue:
    """submitted or in_review → rejected (optional RejectIn body)."""
    actor = _caller(Scope.WRITE)
    body = optional_json_body(RejectIn)
    with session_scope(session_factory()) as session:
        load_proposal_for_actor(session, actor, proposal_id, scope=Scope.WRITE)
        proposal = awards.reject_proposal(
            session, proposal_id=proposal_id, actor=actor, **body.model_dump()
        )
    return proposal.model_dump(mode="json")


# Allocations and tranches.


@blueprint.get("/allocations")
@operation("List allocations", response=AllocationPage, query=AllocationQuery, problems=(403,))
def list_allocations() -> ResponseReturnValue:
    """Allocations the caller may see, by id: their projects', their programs'; ops all."""
    actor = _caller(Scope.READ)
    query = AllocationQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        page = list_allocations_for_actor(
            session,
            actor,
            **query.model_dump(exclude={"cursor", "limit"}),
            cursor=query.cursor,
            limit=query.limit,
        )
    headers = next_page_link(query, cursor=page.next_cursor)
    return page.model_dump(mode="json"), 200, headers


@blueprint.get("/allocations/<int:allocation_id>")
@operation("Get an allocation", response=AllocationOut, problems=(403, 404))
def get_allocation(allocation_id: int) -> ResponseReturnValue:
    """One allocation with its ledger figures."""
    actor = _caller(Scope.READ)
    with session_scope(session_factory()) as session:
        allocation = get_allocation_for_actor(session, actor, allocation_id)
    return allocation.model_dump(mode="json")


@blueprint.post("/tranches/<int:tranche_id>/release")
@operation(
    "Release a tranche",
    idempotency_key=True,
    body=ReleaseIn,
    response=TrancheOut,
    problems=(400, 402, 403, 404, 409, 422),
)
def release_tranche(tranche_id: int) -> ResponseReturnValue:
    """Approves a ReleaseIn body's progress report and grants the tranche; needs an
    ``Idempotency-Key`` header."""
    actor = _caller(Scope.WRITE)
    key = idempotency_key("releasing a tranche")
    body = json_body(ReleaseIn)

    def release(session: Session) -> TrancheOut:
        try:
            tranche = load_tranche(session, tranche_id)
            get_allocation_for_actor(session, actor, tranche.allocation_id, scope=Scope.WRITE)
        except (TrancheNotFound, AllocationNotFound):
            raise TrancheNotFound(f"no tranche has the id {tranche_id}") from None
        return allocations.release_tranche(
            session, tranche_id=tranche_id, actor=actor, key=key, **body.model_dump()
        )

    # Two requests with one key may race: the loser's retry replays the winner's.
    return run_in_transaction(session_factory(), release).model_dump(mode="json")
