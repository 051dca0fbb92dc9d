"""What the grants domain refuses, each with the HTTP status the API answers with.

A refusal because of the object's current state is a Conflict (409) whose
``extra`` carries that state as ``current_status`` (``status`` is the
problem document's HTTP status), so a client can see why.
"""

from __future__ import annotations

from credits.errors import Conflict, Forbidden, InvalidInput, NotFound


class ProgramNotFound(NotFound):
    slug = "program-not-found"
    title = "Program not found"


class ProjectNotFound(NotFound):
    slug = "project-not-found"
    title = "Project not found"


class MemberNotFound(NotFound):
    slug = "member-not-found"
    title = "Project member not found"


class InvalidProgram(InvalidInput):
    slug = "invalid-program"
    title = "Invalid program"


class InvalidProject(InvalidInput):
    slug = "invalid-project"
    title = "Invalid project"


class ProgramStatusConflict(Conflict):
    """The program is not in a state that allows this; ``extra["current_status"]`` is its state."""

    slug = "program-status-conflict"
    title = "Program is not in a state that allows this"


class ProjectStatusConflict(Conflict):
    """The project is not in a state that allows this; ``extra["current_status"]`` is its state."""

    slug = "project-status-conflict"
    title = "Project is not in a state that allows this"


class AlreadyProgramOwner(Conflict):
    slug = "already-program-owner"
    title = "Already an owner of this program"


class AlreadyProjectMember(Conflict):
    slug = "already-project-member"
    title = "Already a member of this project"


class AssessesProjectProposal(Conflict):
    """The person reviews, or decides, a proposal of the project that is not decided yet.

    ``extra["proposal_ids"]`` names those proposals: once each is decided (or
    withdrawn) the person may be added.
    """

    slug = "assesses-project-proposal"
    title = "This person is assessing a proposal of the project"


class NotAFunder(InvalidInput):
    """A program owner must hold the funder role."""

    slug = "not-a-funder"
    title = "Program owners must be funders"


class NotAResearcher(InvalidInput):
    """A project's PI and members must hold the researcher role."""

    slug = "not-a-researcher"
    title = "Project members must be researchers"


class ProgramForbidden(Forbidden):
    slug = "program-forbidden"
    title = "Only the program's owners or ops may do this"


class ProjectForbidden(Forbidden):
    slug = "project-forbidden"
    title = "Not allowed on this project"


class CannotRemovePi(Conflict):
    """The PI leaves a project only when the project is archived, never by removal."""

    slug = "cannot-remove-pi"
    title = "The PI cannot be removed from the project"


class ProposalNotFound(NotFound):
    slug = "proposal-not-found"
    title = "Proposal not found"


class AllocationNotFound(NotFound):
    slug = "allocation-not-found"
    title = "Allocation not found"


class TrancheNotFound(NotFound):
    slug = "tranche-not-found"
    title = "Tranche not found"


class InvalidProposal(InvalidInput):
    slug = "invalid-proposal"
    title = "Invalid proposal"


class IncompleteProposal(InvalidInput):
    """Submission found a required part missing; ``extra["missing"]`` names each."""

    slug = "incomplete-proposal"
    title = "The proposal is not complete"


class InvalidReview(InvalidInput):
    slug = "invalid-review"
    title = "Invalid review"


class InvalidAward(InvalidInput):
    slug = "invalid-award"
    title = "Invalid award"


class ProposalStatusConflict(Conflict):
    """The proposal is not in a state that allows this; ``extra["current_status"]`` is its state."""

    slug = "proposal-status-conflict"
    title = "Proposal is not in a state that allows this"


class AllocationStatusConflict(Conflict):
    """The allocation is not in a state that allows this; ``extra["current_status"]``."""

    slug = "allocation-status-conflict"
    title = "Allocation is not in a state that allows this"


class TrancheStatusConflict(Conflict):
    """The tranche was released already; ``extra["current_status"]`` is its state."""

    slug = "tranche-status-conflict"
    title = "Tranche is not pending"


class ProposalForbidden(Forbidden):
    slug = "proposal-forbidden"
    title = "Not allowed on this proposal"


class NotAReviewer(InvalidInput):
    """A reviewer must hold the reviewer role."""

    slug = "not-a-reviewer"
    title = "Reviewers must hold the reviewer role"


class AlreadyAssigned(Conflict):
    slug = "already-assigned"
    title = "The reviewer is already assigned to this proposal"


class ReviewerConflicted(Conflict):
    """The reviewer declared a conflict of interest with this proposal."""

    slug = "reviewer-conflicted"
    title = "The reviewer declared a conflict of interest"


class NotEnoughReviews(Conflict):
    """Fewer completed reviews than the program asks for, and no override reason."""

    slug = "not-enough-reviews"
    title = "Not enough completed reviews for a decision"


class ScoreBelowMinimum(Conflict):
    """The reviews' mean is below the program's minimum, and no override reason was given."""

    slug = "score-below-minimum"
    title = "The mean review score is below the program's minimum"


class AllocationForbidden(Forbidden):
    slug = "allocation-forbidden"
    title = "Not allowed on this allocation"
