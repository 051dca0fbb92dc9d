"""Reviews: owners assign reviewers, reviewers score or declare a conflict of interest.

- A program's owner (or ops), not on the applying project, assigns a user
  holding the reviewer role to a submitted or in_review proposal; the first
  assignment moves it from submitted to in_review. A reviewer who declared a
  conflict on it, or who is on the applying project, cannot be assigned
  (ReviewerConflicted).
- An assigned reviewer declares a conflict; from then on the proposal is out
  of their reach (404 on read) and any review they gave stops counting.
- An assigned reviewer without a conflict scores an in_review proposal: every
  program criterion, each an integer 1-5, and a comment. One review per
  reviewer and proposal; sending it again before the decision replaces it
  (the audit log keeps each version).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants.errors import (
    AlreadyAssigned,
    InvalidReview,
    NotAReviewer,
    NotEnoughReviews,
    ProposalForbidden,
    ProposalNotFound,
    ReviewerConflicted,
    ScoreBelowMinimum,
)
from credits.grants.models import (
    MAX_REVIEWERS,
    Program,
    ProjectMember,
    Proposal,
    ProposalStatus,
    Review,
    ReviewAssignment,
)
from credits.grants.proposal_queries import (
    assignments_by_proposal,
    assignments_of,
    counted_reviews,
    counted_reviews_by_proposal,
    load_assignment,
    load_proposal,
    render_assignment,
    render_review,
)
from credits.grants.proposals import audit_proposal, require_status
from credits.grants.queries import load_program, load_project, member_ids, owner_ids
from credits.grants.schemas import AssignmentOut, ReviewOut, ReviewSummary
from credits.identity.access import can_administer_program
from credits.identity.actor import Actor
from credits.identity.models import Role, User
from credits.notifications.events import announce, notify_reviewer_assigned

__all__ = [
    "assign_reviewer",
    "check_decision_reviews",
    "declare_conflict",
    "get_review_summary",
    "mean_hundredths",
    "mean_of_reviews",
    "require_impartial",
    "review_summaries",
    "submit_review",
]

COMMENT_MAX_LENGTH = 20_000
REVIEWABLE = frozenset({ProposalStatus.SUBMITTED, ProposalStatus.IN_REVIEW})
# The actor of the public log's events about a review: peer review is confidential,
# and a reviewer's pseudonymous id on a proposal's events (with their scores) would
# let an applicant tie a review to a person through their other, public, events.
# The events say that a reviewer was assigned, declared a conflict or reviewed;
# the assignment and review rows keep who and how, for the program's owners and
# ops, and the decision's event carries the counted reviews' number and mean.
REVIEWS = Actor.system("reviews")


def mean_hundredths(values: list[int]) -> int:
    """The mean of ``values`` in integer hundredths, rounded down (3, 4 → 350)."""
    return sum(values) * 100 // len(values)


def mean_of_reviews(reviews: list[Review]) -> int | None:
    """The mean of the reviews' means, in hundredths rounded down; None without reviews.

    Worked out exactly from each review's scores and rounded once: averaging the
    stored per-review means (each already rounded down) would round twice, and
    put a proposal whose true mean is the program's minimum just below it.
    """
    if not reviews:
        return None
    exact = sum(Fraction(sum(r.scores.values()), len(r.scores)) for r in reviews)
    return int(exact * 100 // len(reviews))


def _require_decider(actor: Actor, program: Program) -> None:
    if not can_administer_program(actor, owner_ids=owner_ids(program)):
        raise ProposalForbidden(f"only an owner of program {program.id} or ops may do this")


def require_impartial(session: Session, actor: Actor, project_id: int) -> None:
    """Raises ProposalForbidden when the actor is on the applying project.

    The rule that keeps a project's members from reviewing its proposal also
    keeps them from steering it: no deciding, no picking its reviewers, no
    releasing its tranches, whatever their role (ops included).
    """
    if actor.user_id in member_ids(load_project(session, project_id)):
        raise ProposalForbidden(
            f"you are on project {project_id}; another owner of the program or ops "
            "must decide on it"
        )


def _require_reviewer(session: Session, user_id: int) -> None:
    """Raises NotAReviewer unless the user holds the reviewer role.

    A missing user and one without the role get the same answer, naming only
    the id the caller sent, so that ids cannot be used to map who uses the
    platform.
    """
    user = session.get(User, user_id)
    if user is None or not any(held.role == Role.REVIEWER.value for held in user.roles):
        raise NotAReviewer(f"user {user_id} is not a reviewer on this platform", user_id=user_id)


def _own_assignment(session: Session, proposal: Proposal, actor: Actor) -> ReviewAssignment:
    """The actor's unconflicted assignment; otherwise the proposal is out of their reach."""
    assignment = load_assignment(session, proposal.id, actor.user_id)
    if assignment is None or assignment.conflict_declared_at is not None:
        raise ProposalNotFound(f"no proposal has the id {proposal.id}")
    return assignment


def _clean_scores(program: Program, scores: Mapping[str, Any]) -> dict[str, int]:
    keys = [criterion["key"] for criterion in program.criteria]
    if not isinstance(scores, Mapping) or set(scores) != set(keys):
        raise InvalidReview(
            f"score every criterion of program {program.id} and no other: {', '.join(keys)}",
            field="scores",
        )
    for key in keys:
        if type(scores[key]) is not int or not 1 <= scores[key] <= 5:
            raise InvalidReview(f"scores[{key}] must be an integer from 1 to 5", field="scores")
    return {key: scores[key] for key in keys}


def assign_reviewer(
    session: Session,
    *,
    proposal_id: int,
    reviewer_user_id: int,
    actor: Actor,
    now: datetime | None = None,
) -> AssignmentOut:
    """Asks a reviewer to review the proposal; submitted → in_review on the first one.

    Appends ``proposal.reviewer_assigned`` (with ``from`` when the status
    moved). Raises ProposalNotFound, ProposalForbidden (not an owner or ops, or
    on the applying project), ProposalStatusConflict
    (not submitted or in_review), NotAReviewer (a missing user too),
    ReviewerConflicted (declared one, or is on the applying project),
    AlreadyAssigned, InvalidReview (too many reviewers).
    """
    now = now or utcnow()
    proposal = load_proposal(session, proposal_id, lock=True)
    _require_decider(actor, load_program(session, proposal.program_id))
    require_impartial(session, actor, proposal.project_id)
    require_status(proposal, REVIEWABLE, "be assigned reviewers")
    _require_reviewer(session, reviewer_user_id)
    existing = load_assignment(session, proposal.id, reviewer_user_id)
    if existing is not None and existing.conflict_declared_at is not None:
        raise ReviewerConflicted(
            f"user {reviewer_user_id} declared a conflict of interest with proposal {proposal.id}",
            user_id=reviewer_user_id,
        )
    # Locked, as add_member locks it before it reads the assignments: one of the two
    # waits for the other and sees what it wrote, so no reviewer joins the project.
    applying = load_project(session, proposal.project_id, lock=True)
    if reviewer_user_id in member_ids(applying):
        raise ReviewerConflicted(
            f"user {reviewer_user_id} is on the applying project {proposal.project_id}",
            user_id=reviewer_user_id,
        )
    if existing is not None:
        raise AlreadyAssigned(
            f"user {reviewer_user_id} already reviews proposal {proposal.id}",
            user_id=reviewer_user_id,
        )
    if len(assignments_of(session, proposal.id)) >= MAX_REVIEWERS:
        raise InvalidReview(f"a proposal has at most {MAX_REVIEWERS} reviewers", field="user_id")
    assignment = ReviewAssignment(
        proposal_id=proposal.id,
        reviewer_user_id=reviewer_user_id,
        assigned_by_user_id=actor.user_id,
        assigned_at=now,
    )
    session.add(assignment)
    moved = {}
    if proposal.status == ProposalStatus.SUBMITTED.value:
        proposal.status = ProposalStatus.IN_REVIEW.value
        moved = {"from": ProposalStatus.SUBMITTED.value, "to": ProposalStatus.IN_REVIEW.value}
    session.flush()
    # The public log says a reviewer was assigned, not who: who reviews which
    # proposal stays between the reviewer and the program (see REVIEWS).
    audit_proposal(session, "proposal.reviewer_assigned", proposal, actor, **moved)
    announce(
        session,
        notify_reviewer_assigned,
        proposal_id=proposal.id,
        reviewer_user_id=reviewer_user_id,
    )
    return render_assignment(assignment)


def declare_conflict(
    session: Session, *, proposal_id: int, actor: Actor, reason: str, now: datetime | None = None
) -> AssignmentOut:
    """The assigned reviewer declares a conflict; appends ``proposal.conflict_declared``.

    From then on the proposal answers them as missing and their review, if
    any, no longer counts. Allowed until the decision. Raises ProposalNotFound
    (not assigned, or declared already), ProposalStatusConflict (decided or
    withdrawn), InvalidReview (no reason).
    """
    now = now or utcnow()
    proposal = load_proposal(session, proposal_id, lock=True)
    assignment = _own_assignment(session, proposal, actor)
    require_status(proposal, REVIEWABLE, "take conflict declarations")
    why = reason.strip() if isinstance(reason, str) else ""
    if not why:
        raise InvalidReview("declaring a conflict of interest needs a reason", field="reason")
    assignment.conflict_declared_at = now
    assignment.conflict_reason = why[:COMMENT_MAX_LENGTH]
    session.flush()
    # The reason often names people (a co-author, a colleague): it stays on the
    # assignment, out of the public log, and so does who declared it.
    audit_proposal(session, "proposal.conflict_declared", proposal, REVIEWS)
    return render_assignment(assignment)


def submit_review(
    session: Session,
    *,
    proposal_id: int,
    actor: Actor,
    scores: Mapping[str, Any],
    comment: str,
    now: datetime | None = None,
) -> ReviewOut:
    """Scores an in_review proposal as an assigned reviewer; a second call replaces the first.

    Appends ``proposal.reviewed`` saying whether it replaced an earlier review; the
    scores and the reviewer stay out of the public log (see REVIEWS). Raises
    ProposalNotFound (not assigned, or a conflict declared), ProposalStatusConflict
    (not in_review), InvalidReview.
    """
    now = now or utcnow()
    proposal = load_proposal(session, proposal_id, lock=True)
    _own_assignment(session, proposal, actor)
    require_status(proposal, frozenset({ProposalStatus.IN_REVIEW}), "be reviewed")
    if actor.user_id in member_ids(load_project(session, proposal.project_id)):
        # Joined the applying project after being assigned: no longer impartial.
        raise ReviewerConflicted(
            f"you are on the applying project {proposal.project_id}", user_id=actor.user_id
        )
    cleaned = _clean_scores(load_program(session, proposal.program_id), scores)
    text = comment.strip() if isinstance(comment, str) else ""
    if not text or len(text) > COMMENT_MAX_LENGTH:
        raise InvalidReview(
            f"a review needs a comment of at most {COMMENT_MAX_LENGTH} characters",
            field="comment",
        )
    review = session.scalar(
        select(Review).where(
            Review.proposal_id == proposal.id, Review.reviewer_user_id == actor.user_id
        )
    )
    replaced = review is not None
    if review is None:
        review = Review(proposal_id=proposal.id, reviewer_user_id=actor.user_id, submitted_at=now)
        session.add(review)
    review.scores = cleaned
    review.mean_score = mean_hundredths(list(cleaned.values()))
    review.comment = text
    review.updated_at = now
    session.flush()
    audit_proposal(
        session,
        "proposal.reviewed",
        proposal,
        REVIEWS,
        replaced=replaced,
    )
    return render_review(review)


def get_review_summary(session: Session, *, proposal_id: int, actor: Actor) -> ReviewSummary:
    """Assignments, counted reviews and their mean, for the program's owners and ops.

    Raises ProposalNotFound, ProposalForbidden (also for an owner on the applying
    project: ops still see it, as they see every review).
    """
    proposal = load_proposal(session, proposal_id)
    program = load_program(session, proposal.program_id)
    _require_decider(actor, program)
    if _on_project(session, actor, proposal.project_id):
        # Named reviews before the decision would let an applicant see who said what.
        require_impartial(session, actor, proposal.project_id)
    reviews = counted_reviews(session, proposal.id)
    return ReviewSummary(
        proposal_id=proposal.id,
        min_reviewers=program.min_reviewers,
        assignments=[render_assignment(a) for a in assignments_of(session, proposal.id)],
        reviews=[render_review(review) for review in reviews],
        mean_score=mean_of_reviews(reviews),
    )


def review_summaries(
    session: Session, *, program_id: int, proposal_ids: Collection[int], actor: Actor
) -> dict[int, ReviewSummary]:
    """:func:`get_review_summary` of many proposals of one program, in a fixed number
    of queries whatever their number (the program page's queue).

    Raises ProposalNotFound (a proposal of another program), ProposalForbidden.
    """
    program = load_program(session, program_id)
    _require_decider(actor, program)
    elsewhere = session.scalars(
        select(Proposal.id).where(Proposal.id.in_(proposal_ids), Proposal.program_id != program_id)
    ).first()
    if elsewhere is not None:
        raise ProposalNotFound(f"proposal {elsewhere} is not in program {program_id}")
    assignments = assignments_by_proposal(session, proposal_ids)
    counted = counted_reviews_by_proposal(session, proposal_ids)
    withheld = _proposals_on_my_projects(session, actor, proposal_ids)
    return {
        proposal_id: ReviewSummary(
            proposal_id=proposal_id,
            min_reviewers=program.min_reviewers,
            assignments=[render_assignment(a) for a in assignments.get(proposal_id, [])],
            reviews=[render_review(review) for review in counted.get(proposal_id, [])],
            mean_score=mean_of_reviews(counted.get(proposal_id, [])),
        )
        if proposal_id not in withheld
        else ReviewSummary(
            proposal_id=proposal_id,
            min_reviewers=program.min_reviewers,
            assignments=[],
            reviews=[],
            mean_score=None,
            withheld=True,
        )
        for proposal_id in proposal_ids
    }


def _on_project(session: Session, actor: Actor, project_id: int) -> bool:
    """Whether the actor, not being ops, is on the project (ops read every review)."""
    return not actor.has_role(Role.OPS) and actor.user_id in member_ids(
        load_project(session, project_id)
    )


def _proposals_on_my_projects(
    session: Session, actor: Actor, proposal_ids: Collection[int]
) -> set[int]:
    """Those of ``proposal_ids`` whose project the actor (not being ops) is on."""
    if actor.has_role(Role.OPS) or actor.user_id is None or not proposal_ids:
        return set()
    mine = select(ProjectMember.project_id).where(ProjectMember.user_id == actor.user_id)
    return set(
        session.scalars(
            select(Proposal.id).where(Proposal.id.in_(proposal_ids), Proposal.project_id.in_(mine))
        )
    )


def check_decision_reviews(
    session: Session,
    proposal: Proposal,
    program: Program,
    *,
    override_reason: str | None,
    awarding: bool,
) -> dict[str, Any]:
    """What the reviews say; raises NotEnoughReviews, ScoreBelowMinimum unless overridden."""
    reviews = counted_reviews(session, proposal.id)
    mean = mean_of_reviews(reviews)
    facts: dict[str, Any] = {"reviews": len(reviews), "mean_score": mean}
    if override_reason is not None:
        return facts | {"override_reason": override_reason}
    if len(reviews) < program.min_reviewers:
        raise NotEnoughReviews(
            f"proposal {proposal.id} has {len(reviews)} of the {program.min_reviewers} "
            "reviews its program needs; decide with an override reason to go ahead",
            completed=len(reviews),
            required=program.min_reviewers,
        )
    if awarding and mean is not None and mean < program.min_mean_score:
        raise ScoreBelowMinimum(
            f"proposal {proposal.id} scored {mean / 100:.2f}; program {program.id} awards "
            f"from {program.min_mean_score / 100:.2f}; give an override reason to go ahead",
            mean_score=mean,
            min_mean_score=program.min_mean_score,
        )
    return facts
