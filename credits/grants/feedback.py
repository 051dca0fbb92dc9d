"""What applicants read of the reviews of their proposal once it is decided.

Reviews are written for the program's owners, who decide (see
:mod:`credits.grants.reviews`). Once a proposal is awarded or rejected, the
members of the applying project (and ops) may read the reviews that counted
towards the decision: each criterion's score, the mean and the comment, under
"Reviewer 1", "Reviewer 2", … in the order they were sent. Who wrote a review
is never part of what they get, so that reviewers can speak freely; before the
decision they get nothing.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from credits.grants.errors import ProposalForbidden
from credits.grants.models import ProposalStatus
from credits.grants.proposal_queries import counted_reviews, load_proposal
from credits.grants.queries import load_program, load_project, member_ids
from credits.grants.reviews import mean_of_reviews
from credits.identity.actor import Actor
from credits.identity.models import Role

DECIDED = frozenset({ProposalStatus.AWARDED, ProposalStatus.REJECTED})


class ScoreLine(BaseModel):
    label: str
    score: int


class ApplicantReview(BaseModel):
    """One review as applicants read it: no reviewer named."""

    number: int = Field(description="1 for the first review sent, 2 for the next, …")
    scores: list[ScoreLine]
    mean_score: int = Field(description="hundredths (350 = 3.50)")
    comment: str
    submitted_on: datetime


class ApplicantFeedback(BaseModel):
    reviews: list[ApplicantReview]
    mean_score: int | None = Field(description="hundredths; null without reviews")


def applicant_feedback(
    session: Session, *, proposal_id: int, actor: Actor
) -> ApplicantFeedback | None:
    """The decided proposal's counted reviews, anonymous; None before the decision.

    Raises ProposalNotFound, ProposalForbidden (neither on the project nor ops).
    """
    proposal = load_proposal(session, proposal_id)
    project = load_project(session, proposal.project_id)
    if not actor.has_role(Role.OPS) and actor.user_id not in member_ids(project):
        raise ProposalForbidden(f"only project {project.id}'s members read these reviews")
    if ProposalStatus(proposal.status) not in DECIDED:
        return None
    labels = {c["key"]: c["label"] for c in load_program(session, proposal.program_id).criteria}
    reviews = sorted(counted_reviews(session, proposal.id), key=lambda r: (r.submitted_at, r.id))
    return ApplicantFeedback(
        reviews=[
            ApplicantReview(
                number=number,
                scores=[
                    ScoreLine(label=labels.get(key, key), score=score)
                    for key, score in review.scores.items()
                ],
                mean_score=review.mean_score,
                comment=review.comment,
                submitted_on=review.submitted_at,
            )
            for number, review in enumerate(reviews, start=1)
        ],
        mean_score=mean_of_reviews(reviews),
    )
