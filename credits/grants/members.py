"""Adding a project member by e-mail, as a person types it on the members page.

:func:`credits.grants.projects.add_member` takes a user id; people know each
other by e-mail. The caller's right to add members is checked before the
address is looked up, and an unknown address and one of a user without the
researcher role get the same answer, so the form cannot be used to learn who
has an account.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.grants.errors import AssessesProjectProposal, NotAResearcher, ProjectForbidden
from credits.grants.models import MemberRole
from credits.grants.projects import add_member, assessor_refusal
from credits.grants.queries import load_project, member_role
from credits.grants.schemas import ProjectOut
from credits.identity.access import can_add_member
from credits.identity.actor import Actor
from credits.identity.models import User
from credits.identity.service import normalize_email


def add_member_by_email(
    session: Session,
    *,
    project_id: int,
    email: str,
    role: MemberRole | str,
    actor: Actor,
) -> ProjectOut:
    """Adds the researcher with this e-mail as ``manager`` or ``member``.

    Raises ProjectNotFound, ProjectForbidden, InvalidEmail, NotAResearcher
    (no such user, or not a researcher: one answer), and what
    :func:`~credits.grants.projects.add_member` raises.
    """
    project = load_project(session, project_id)
    if not can_add_member(actor, actor_role=member_role(project, actor.user_id)):
        raise ProjectForbidden(f"only the PI, a manager or ops add members to project {project.id}")
    address = normalize_email(email)
    unknown = NotAResearcher(
        f"no researcher on this platform has the e-mail {address}", field="email"
    )
    user_id = session.scalar(select(User.id).where(User.email == address))
    if user_id is None:
        raise unknown
    try:
        return add_member(session, project_id=project_id, user_id=user_id, role=role, actor=actor)
    except NotAResearcher:
        raise unknown from None
    except AssessesProjectProposal as refusal:
        # Named as the caller typed it, without the user id that would map the address.
        proposal_ids = refusal.extra["proposal_ids"]
        raise assessor_refusal(address, project_id, proposal_ids, field="email") from None
