"""Projects: create, members, suspend, unsuspend, archive.

A project's status::

    active ──suspend_project──▶ suspended ──unsuspend_project──▶ active
      │                            │
      └──────archive_project───────┴──▶ archived (final, in project_archive)

Suspending a project suspends each of its active allocation accounts in the
ledger, so no new hold can be placed on them; unsuspending makes every
suspended allocation account of the project active again, unless it has
reached its end date (the expiry sweep takes those). Archiving suspends the
active allocations too, and withdraws the project's pending tranches from the
program's budget. The ledger keeps each allocation row's status in step with
its account, and refuses to reactivate an account of a project that is not
active. Members can be added and removed while a project is active or
suspended, never once it is archived.

No one joins a project while they assess one of its proposals that is not
decided yet (submitted or in review): while they are assigned to review it
(without a declared conflict), or while they decide on it, as an owner of its
program or as ops (the deciders :func:`credits.grants.reviews.require_impartial`
keeps off their own projects). Otherwise adding a harsh reviewer would strike
their review from the count, and adding a strict funder would take the
decision from them. They may join once the proposal is decided or withdrawn.
Someone who was on the project first stays a conflicted member: they cannot be
assigned to review its proposals, nor decide them.

Every function takes the caller's session, checks who is acting and what
state the project is in before it writes, flushes and never commits, and
appends an audit event in the caller's transaction. A refused call changes
nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.service import record_event
from credits.db import utcnow
from credits.grants.errors import (
    AlreadyProjectMember,
    AssessesProjectProposal,
    CannotRemovePi,
    InvalidProject,
    MemberNotFound,
    NotAResearcher,
    ProjectForbidden,
    ProjectStatusConflict,
)
from credits.grants.models import (
    MemberRole,
    ProgramOwner,
    Project,
    ProjectMember,
    ProjectStatus,
    Proposal,
    ProposalStatus,
    ReviewAssignment,
)
from credits.grants.queries import (
    get_project,
    list_projects,
    load_project,
    member_role,
    render_project,
)
from credits.grants.schemas import ProjectOut
from credits.identity.access import (
    can_add_member,
    can_administer_program,
    can_create_project,
    can_remove_member,
    can_suspend_project,
)
from credits.identity.actor import Actor
from credits.identity.models import Role, User
from credits.identity.service import actor_for
from credits.ledger.errors import ReasonRequired
from credits.ledger.models import Account, AccountKind, AccountStatus
from credits.ledger.service import set_account_status

__all__ = [
    "add_member",
    "assessor_refusal",
    "create_project",
    "get_project",
    "list_projects",
    "remove_member",
    "suspend_project",
    "unsuspend_project",
]

TITLE_MAX_LENGTH = 300
NAME_MAX_LENGTH = 200
# A proposal in these states is being assessed: it has (or will get) reviewers and
# awaits its program's decision.
UNDER_ASSESSMENT = frozenset({ProposalStatus.SUBMITTED.value, ProposalStatus.IN_REVIEW.value})
# The PI or ops archive a project, but only ops change ledger account statuses;
# the account changes an archive makes are the platform's, on their behalf.
GRANTS_SYSTEM = Actor.system("grants")


def _clean_text(value: str | None, *, field: str, limit: int) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise InvalidProject(f"a project needs a {field.replace('_', ' ')}", field=field)
    if len(text) > limit:
        raise InvalidProject(f"a project's {field} has at most {limit} characters", field=field)
    return text


def _clean_institution(value: str | None, *, default: str | None) -> str:
    """The named institution, else ``default`` (the PI's), else empty: it is optional."""
    text = (value or "").strip() or (default or "").strip()
    if len(text) > NAME_MAX_LENGTH:
        raise InvalidProject(
            f"a project's institution has at most {NAME_MAX_LENGTH} characters",
            field="institution",
        )
    return text


def _clean_reason(reason: str | None, action: str) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise ReasonRequired(f"{action} a project needs a reason")
    return text


def _load_researcher(session: Session, user_id: int) -> User:
    """The user, who must hold the researcher role; raises NotAResearcher.

    A missing user and one without the role get the same answer, without an
    email, so that adding ids one by one cannot map who uses the platform.
    """
    user = session.get(User, user_id)
    if user is None or not any(held.role == Role.RESEARCHER.value for held in user.roles):
        raise NotAResearcher(
            f"user {user_id} is not a researcher on this platform", user_id=user_id
        )
    return user


def _proposals_assessed_by(session: Session, project: Project, user: User) -> list[int]:
    """The project's proposals under assessment that ``user`` reviews or decides.

    Reviews: assigned without a declared conflict (a review needs the
    assignment). Decides: what :func:`~credits.identity.access.can_administer_program`
    allows, with the roles the user holds now: ops, or a funder who owns the
    proposal's program.
    """
    pending = session.execute(
        select(Proposal.id, Proposal.program_id).where(
            Proposal.project_id == project.id, Proposal.status.in_(UNDER_ASSESSMENT)
        )
    ).all()
    if not pending:
        return []
    reviewing = set(
        session.scalars(
            select(ReviewAssignment.proposal_id).where(
                ReviewAssignment.proposal_id.in_([proposal_id for proposal_id, _ in pending]),
                ReviewAssignment.reviewer_user_id == user.id,
                ReviewAssignment.conflict_declared_at.is_(None),
            )
        )
    )
    owners: dict[int, set[int]] = {}
    for program_id, owner_id in session.execute(
        select(ProgramOwner.program_id, ProgramOwner.user_id).where(
            ProgramOwner.program_id.in_({program_id for _, program_id in pending})
        )
    ):
        owners.setdefault(program_id, set()).add(owner_id)
    candidate = actor_for(user)
    return sorted(
        proposal_id
        for proposal_id, program_id in pending
        if proposal_id in reviewing
        or can_administer_program(candidate, owner_ids=owners.get(program_id, set()))
    )


def assessor_refusal(
    who: str, project_id: int, proposal_ids: list[int], **extra: Any
) -> AssessesProjectProposal:
    """The refusal to add ``who`` (``user 7``, an e-mail) while they assess ``proposal_ids``.

    It says neither whether they review or decide, nor anything about the reviews.
    """
    ids = [str(proposal_id) for proposal_id in proposal_ids]
    if len(ids) == 1:
        named, pronoun = f"proposal {ids[0]}", "it is"
    else:
        named, pronoun = f"proposals {', '.join(ids[:-1])} and {ids[-1]}", "they are"
    return AssessesProjectProposal(
        f"{who} reviews or decides {named} of project {project_id}, not decided yet, and no "
        f"one may assess a proposal of their own project: add them once {pronoun} decided "
        "or withdrawn",
        proposal_ids=proposal_ids,
        **extra,
    )


def _require_status(project: Project, allowed: set[ProjectStatus], action: str) -> None:
    if ProjectStatus(project.status) not in allowed:
        raise ProjectStatusConflict(
            f"project {project.id} is {project.status}; it cannot {action}",
            current_status=project.status,
        )


def _audit(session: Session, event_type: str, project: Project, actor: Actor, **data: Any) -> None:
    record_event(
        session,
        event_type=event_type,
        actor=actor.label,
        subject_type="project",
        subject_id=str(project.id),
        data=data,
    )


def _allocations(session: Session, project_id: int, status: AccountStatus) -> list[Account]:
    return list(
        session.scalars(
            select(Account)
            .where(
                Account.project_id == project_id,
                Account.kind == AccountKind.ALLOCATION.value,
                Account.status == status.value,
            )
            .order_by(Account.id)
        )
    )


def suspension_reason_prefix(project_id: int) -> str:
    """How every account status change made by a project's suspension begins."""
    return f"project {project_id} suspended"


def _suspended_by_project(session: Session, project_id: int, account_ids: list[int]) -> list[int]:
    """The accounts whose latest status change came from the project's suspension.

    An account ops suspended on its own stays suspended when the project comes back.
    """
    latest: dict[str, str] = {}
    events = session.execute(
        select(AuditEvent.subject_id, AuditEvent.canonical_json)
        .where(
            AuditEvent.subject_type == "ledger_account",
            AuditEvent.event_type == "ledger.account_status",
            AuditEvent.subject_id.in_([str(account_id) for account_id in account_ids]),
        )
        .order_by(AuditEvent.id)
    )
    for subject_id, canonical in events:
        latest[subject_id] = str(json.loads(canonical)["data"].get("reason", ""))
    prefix = suspension_reason_prefix(project_id)
    return [a for a in account_ids if latest.get(str(a), "").startswith(prefix)]


def _set_allocations(
    session: Session,
    account_ids: list[int],
    status: AccountStatus,
    *,
    actor: Actor,
    reason: str,
) -> None:
    for account_id in account_ids:
        set_account_status(
            session, account_id=account_id, status=status, actor=actor, reason=reason
        )


def create_project(
    session: Session,
    *,
    title: str,
    field_of_science: str,
    actor: Actor,
    institution: str | None = None,
    pi_user_id: int | None = None,
) -> ProjectOut:
    """Creates an active project whose PI is its first member, with role ``pi``.

    A researcher creates a project with themselves as PI; ops may name any
    researcher. The institution defaults to the PI's; a project whose PI has none
    and that names none has an empty one. Appends ``project.created``.

    Raises ProjectForbidden, InvalidProject, UserNotFound, NotAResearcher.
    """
    pi_id = pi_user_id if pi_user_id is not None else actor.user_id
    if pi_id is None:
        raise InvalidProject("name the project's PI", field="pi_user_id")
    if not can_create_project(actor, pi_user_id=pi_id):
        raise ProjectForbidden("a researcher creates projects with themselves as PI")
    clean_title = _clean_text(title, field="title", limit=TITLE_MAX_LENGTH)
    clean_field = _clean_text(field_of_science, field="field_of_science", limit=NAME_MAX_LENGTH)
    pi = _load_researcher(session, pi_id)
    project = Project(
        title=clean_title,
        pi_user_id=pi.id,
        institution=_clean_institution(institution, default=pi.institution),
        field_of_science=clean_field,
        status=ProjectStatus.ACTIVE.value,
        members=[ProjectMember(user=pi, role=MemberRole.PI.value)],
    )
    session.add(project)
    session.flush()
    _audit(
        session,
        "project.created",
        project,
        actor,
        title=project.title,
        pi_user_id=pi.id,
        institution=project.institution,
        field_of_science=project.field_of_science,
    )
    return render_project(project)


def add_member(
    session: Session,
    *,
    project_id: int,
    user_id: int,
    role: MemberRole | str,
    actor: Actor,
) -> ProjectOut:
    """Adds a researcher to the project as ``manager`` or ``member``.

    Ops, the PI and managers may add; not while the project is archived, nor
    while the researcher reviews or decides one of the project's proposals
    that is not decided yet. Appends ``project.member_added``.

    Raises ProjectNotFound, ProjectStatusConflict (archived), ProjectForbidden,
    InvalidProject (role), UserNotFound, NotAResearcher, AlreadyProjectMember,
    AssessesProjectProposal.
    """
    project = load_project(session, project_id, lock=True)
    _require_status(project, {ProjectStatus.ACTIVE, ProjectStatus.SUSPENDED}, "change its members")
    if not can_add_member(actor, actor_role=member_role(project, actor.user_id)):
        raise ProjectForbidden(f"only the PI, a manager or ops add members to project {project.id}")
    if role not in {MemberRole.MANAGER.value, MemberRole.MEMBER.value}:
        raise InvalidProject("a new member's role is manager or member", field="role")
    user = _load_researcher(session, user_id)
    if (held := member_role(project, user_id)) is not None:
        raise AlreadyProjectMember(
            f"user {user_id} is already on project {project.id} as {held.value}",
            user_id=user_id,
            role=held.value,
        )
    if assessed := _proposals_assessed_by(session, project, user):
        raise assessor_refusal(f"user {user_id}", project.id, assessed, user_id=user_id)
    project.members.append(ProjectMember(user=user, role=MemberRole(role).value))
    session.flush()
    _audit(
        session,
        "project.member_added",
        project,
        actor,
        user_id=user_id,
        role=MemberRole(role).value,
    )
    return render_project(project)


def remove_member(session: Session, *, project_id: int, user_id: int, actor: Actor) -> ProjectOut:
    """Takes a member or manager off the project; appends ``project.member_removed``.

    Ops and the PI remove anyone but the PI; a manager removes plain members;
    a member or manager may remove themselves. Not while archived.

    Raises ProjectNotFound, ProjectStatusConflict (archived), MemberNotFound,
    CannotRemovePi, ProjectForbidden.
    """
    project = load_project(session, project_id, lock=True)
    _require_status(project, {ProjectStatus.ACTIVE, ProjectStatus.SUSPENDED}, "change its members")
    target = next((m for m in project.members if m.user_id == user_id), None)
    if target is None:
        raise MemberNotFound(f"user {user_id} is not on project {project.id}", user_id=user_id)
    target_role = MemberRole(target.role)
    if target_role is MemberRole.PI:
        raise CannotRemovePi(
            f"user {user_id} is the PI of project {project.id} and cannot be removed",
            role=target_role.value,
        )
    allowed = can_remove_member(
        actor,
        actor_role=member_role(project, actor.user_id),
        target_user_id=user_id,
        target_role=target_role,
    )
    if not allowed:
        raise ProjectForbidden(f"you may not remove user {user_id} from project {project.id}")
    project.members.remove(target)
    session.flush()
    _audit(
        session,
        "project.member_removed",
        project,
        actor,
        user_id=user_id,
        role=target_role.value,
    )
    return render_project(project)


def suspend_project(session: Session, *, project_id: int, actor: Actor, reason: str) -> ProjectOut:
    """Suspends an active project and each of its active allocation accounts (ops only).

    A suspended account takes no new holds; holds already placed may still be
    captured or voided. Appends ``project.suspended`` naming the accounts.

    Raises ProjectNotFound, ProjectForbidden, ReasonRequired,
    ProjectStatusConflict (not active).
    """
    project = load_project(session, project_id, lock=True)
    if not can_suspend_project(actor):
        raise ProjectForbidden("only ops suspend a project")
    why = _clean_reason(reason, "suspending")
    _require_status(project, {ProjectStatus.ACTIVE}, "be suspended")
    accounts = [a.id for a in _allocations(session, project.id, AccountStatus.ACTIVE)]
    _set_allocations(
        session,
        accounts,
        AccountStatus.SUSPENDED,
        actor=actor,
        reason=f"{suspension_reason_prefix(project.id)}: {why}",
    )
    project.status = ProjectStatus.SUSPENDED.value
    session.flush()
    _audit(session, "project.suspended", project, actor, reason=why, accounts=accounts)
    return render_project(project)


def unsuspend_project(
    session: Session,
    *,
    project_id: int,
    actor: Actor,
    reason: str,
    now: datetime | None = None,
) -> ProjectOut:
    """Makes a suspended project active again, with its allocation accounts (ops only).

    The allocation accounts the suspension froze (and those awarded while it
    lasted) become active unless they have reached their end date; one that ops
    suspended on its own stays suspended. Appends ``project.unsuspended``
    naming them.

    Raises ProjectNotFound, ProjectForbidden, ReasonRequired,
    ProjectStatusConflict (not suspended).
    """
    now = now or utcnow()
    project = load_project(session, project_id, lock=True)
    if not can_suspend_project(actor):
        raise ProjectForbidden("only ops unsuspend a project")
    why = _clean_reason(reason, "unsuspending")
    _require_status(project, {ProjectStatus.SUSPENDED}, "be unsuspended")
    accounts = _suspended_by_project(
        session,
        project.id,
        [
            a.id
            for a in _allocations(session, project.id, AccountStatus.SUSPENDED)
            if a.expires_at is None or a.expires_at > now
        ],
    )
    # Active first: the ledger refuses to reactivate a suspended project's accounts.
    project.status = ProjectStatus.ACTIVE.value
    session.flush()
    _set_allocations(
        session,
        accounts,
        AccountStatus.ACTIVE,
        actor=actor,
        reason=f"project {project.id} unsuspended: {why}",
    )
    _audit(session, "project.unsuspended", project, actor, reason=why, accounts=accounts)
    return render_project(project)
