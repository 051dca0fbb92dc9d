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
