"""Programs and projects under /api/v1.

Each route authenticates, checks the token's scope, loads any existing object
through an access helper (which answers 404 for one outside the caller's
reach, so ids cannot be probed), calls one service in one transaction and
renders its schema. Lists are paged by id: pass a page's ``next_cursor`` as
``cursor``, or follow the ``Link: rel="next"`` header.
"""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from sqlalchemy.orm import Session

from credits.api.auth import current_actor, session_factory
from credits.api.converters import MAX_ID
from credits.api.openapi import operation
from credits.api.paging import next_page_link
from credits.api.parsing import NoInput, idempotency_key, json_body, optional_json_body
from credits.db import run_in_transaction, session_scope
from credits.grants import funding, members, programs, project_archive, projects
from credits.grants.models import (
    MAX_MEAN_SCORE,
    MAX_REVIEWERS,
    MIN_MEAN_SCORE,
    ProgramStatus,
    ProjectStatus,
)
from credits.grants.queries import DEFAULT_PAGE, MAX_PAGE
from credits.grants.schemas import (
    Criterion,
    FundingOut,
    ProgramOut,
    ProgramPage,
    ProjectDetail,
    ProjectOut,
    ProjectPage,
)
from credits.identity.access import (
    get_program_for_actor,
    get_project_for_actor,
    list_programs_for_actor,
    list_projects_for_actor,
    require_actor,
    require_scope,
)
from credits.identity.actor import Actor
from credits.identity.models import Scope
from credits.ledger.models import Currency
from credits.schema_types import ApiTime

blueprint = Blueprint("grants", __name__, url_prefix="/api/v1")


# Query strings and bodies: extra members are refused.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProgramQuery(_Strict):
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID, description="a page's next_cursor")
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    status: ProgramStatus | None = None
    owner: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="only programs this user owns"
    )


class ProjectQuery(_Strict):
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID, description="a page's next_cursor")
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    status: ProjectStatus | None = None


class ProgramCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1)
    opens_at: ApiTime
    closes_at: ApiTime
    criteria: list[Criterion] = Field(min_length=1)
    min_reviewers: StrictInt = Field(ge=1, le=MAX_REVIEWERS)
    min_mean_score: StrictInt = Field(ge=MIN_MEAN_SCORE, le=MAX_MEAN_SCORE)
    initial_share_percent: StrictInt | None = Field(default=None, ge=1, le=100)
    owner_ids: list[Annotated[StrictInt, Field(ge=1, le=MAX_ID)]] = Field(default_factory=list)


class ProgramUpdate(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, min_length=1)
    opens_at: ApiTime | None = None
    closes_at: ApiTime | None = None
    criteria: list[Criterion] | None = Field(default=None, min_length=1)
    min_reviewers: StrictInt | None = Field(default=None, ge=1, le=MAX_REVIEWERS)
    min_mean_score: StrictInt | None = Field(default=None, ge=MIN_MEAN_SCORE, le=MAX_MEAN_SCORE)
    initial_share_percent: StrictInt | None = Field(default=None, ge=1, le=100)


class OwnerAdd(_Strict):
    user_id: StrictInt = Field(ge=1, le=MAX_ID)


class FundIn(_Strict):
    currency: Currency
    amount_micro: StrictInt = Field(gt=0, description="micro-credits (1 credit = 1,000,000)")
    reason: str = Field(min_length=1)


class ProjectCreate(_Strict):
    title: str = Field(min_length=1, max_length=300)
    field_of_science: str = Field(min_length=1, max_length=200)
    institution: str | None = Field(default=None, max_length=200)
    pi_user_id: StrictInt | None = Field(
        default=None, ge=1, le=MAX_ID, description="ops only; default: you"
    )


class MemberAdd(_Strict):
    """The researcher to add, by user id or by e-mail (exactly one of the two)."""

    user_id: StrictInt | None = Field(default=None, ge=1, le=MAX_ID)
    email: str | None = Field(
        default=None,
        min_length=3,
        max_length=254,
        description="an unknown address and one of a non-researcher get the same 422",
    )
    role: Literal["manager", "member"]

    @model_validator(mode="after")
    def _one_way_to_name_the_member(self) -> MemberAdd:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("name the new member by user_id or by email, exactly one of them")
        return self


class ReasonIn(_Strict):
    reason: str = Field(min_length=1)


class ArchiveIn(_Strict):
    reason: str | None = None


def _caller(scope: Scope) -> Actor:
    actor = require_actor(current_actor())
    require_scope(actor, scope)
    return actor


# Programs.


@blueprint.get("/programs")
@operation("List programs", response=ProgramPage, query=ProgramQuery, problems=(403,))
def list_programs() -> ResponseReturnValue:
    """Programs the caller may see, by id: ops all, a funder their own, a researcher open
    and closed calls."""
    actor = _caller(Scope.READ)
    query = ProgramQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        page = list_programs_for_actor(
            session,
            actor,
            status=query.status,
            owner_id=query.owner,
            cursor=query.cursor,
            limit=query.limit,
        )
    headers = next_page_link(query, cursor=page.next_cursor)
    return page.model_dump(mode="json"), 200, headers


@blueprint.post("/programs")
@operation(
    "Create a program",
    body=ProgramCreate,
    response=ProgramOut,
    status=201,
    problems=(403, 404, 422),
)
def create_program() -> ResponseReturnValue:
    """A draft program from a ProgramCreate body; a funder creating it becomes an owner."""
    actor = _caller(Scope.WRITE)
    body = json_body(ProgramCreate)
    with session_scope(session_factory()) as session:
        program = programs.create_program(session, actor=actor, **body.model_dump())
    return program.model_dump(mode="json"), 201


@blueprint.get("/programs/<int:program_id>")
@operation("Get a program", response=ProgramOut, problems=(403, 404))
def get_program(program_id: int) -> ResponseReturnValue:
    """One program with its owners and its budget per currency."""
    actor = _caller(Scope.READ)
    with session_scope(session_factory()) as session:
        program = get_program_for_actor(session, actor, program_id)
    return program.model_dump(mode="json")


@blueprint.patch("/programs/<int:program_id>")
@operation(
    "Edit a draft program", body=ProgramUpdate, response=ProgramOut, problems=(403, 404, 409, 422)
)
def update_program(program_id: int) -> ResponseReturnValue:
    """Changes the fields a ProgramUpdate body names; only a draft can be edited."""
    actor = _caller(Scope.WRITE)
    body = json_body(ProgramUpdate)
    changes = body.model_dump(exclude={"initial_share_percent"}, exclude_none=True)
    if "initial_share_percent" in body.model_fields_set:
        changes["initial_share_percent"] = body.initial_share_percent
    with session_scope(session_factory()) as session:
        get_program_for_actor(session, actor, program_id, scope=Scope.WRITE)
        program = programs.update_program(session, program_id=program_id, actor=actor, **changes)
    return program.model_dump(mode="json")


@blueprint.post("/programs/<int:program_id>/open")
@operation(
    "Open a draft program",
    body=NoInput,
    body_required=False,
    response=ProgramOut,
    problems=(403, 404, 409, 422),
)
def open_program(program_id: int) -> ResponseReturnValue:
    """draft → open: the call takes proposals within its window."""
    actor = _caller(Scope.WRITE)
    optional_json_body(NoInput)
    with session_scope(session_factory()) as session:
        get_program_for_actor(session, actor, program_id, scope=Scope.WRITE)
        program = programs.open_program(session, program_id=program_id, actor=actor)
    return program.model_dump(mode="json")


@blueprint.post("/programs/<int:program_id>/close")
@operation(
    "Close an open program",
    body=NoInput,
    body_required=False,
    response=ProgramOut,
    problems=(403, 404, 409),
)
def close_program(program_id: int) -> ResponseReturnValue:
    """open → closed: no more proposals."""
    actor = _caller(Scope.WRITE)
    optional_json_body(NoInput)
    with session_scope(session_factory()) as session:
        get_program_for_actor(session, actor, program_id, scope=Scope.WRITE)
        program = programs.close_program(session, program_id=program_id, actor=actor)
    return program.model_dump(mode="json")


@blueprint.post("/programs/<int:program_id>/owners")
@operation("Add a program owner", body=OwnerAdd, response=ProgramOut, problems=(403, 404, 409, 422))
def add_program_owner(program_id: int) -> ResponseReturnValue:
    """Makes the funder named by an OwnerAdd body an owner of the program."""
    actor = _caller(Scope.WRITE)
    body = json_body(OwnerAdd)
    with session_scope(session_factory()) as session:
        get_program_for_actor(session, actor, program_id, scope=Scope.WRITE)
        program = programs.add_program_owner(
            session, program_id=program_id, user_id=body.user_id, actor=actor
        )
    return program.model_dump(mode="json")


@blueprint.post("/programs/<int:program_id>/fund")
@operation(
    "Fund a program's pool",
    idempotency_key=True,
    body=FundIn,
    response=FundingOut,
    status=201,
    problems=(400, 403, 404, 422),
)
def fund_program(program_id: int) -> ResponseReturnValue:
    """Moves a FundIn body's micro-credits from the mint into the pool; needs an
    ``Idempotency-Key`` header, and replays the first result when it is sent again."""
    actor = _caller(Scope.WRITE)
    key = idempotency_key("funding a program")
    body = json_body(FundIn)

    def fund(session: Session) -> FundingOut:
        get_program_for_actor(session, actor, program_id, scope=Scope.WRITE)
        return funding.fund_program(
            session, program_id=program_id, key=key, actor=actor, **body.model_dump()
        )

    # Two requests with one key may race: the loser's retry replays the winner's.
    funded = run_in_transaction(session_factory(), fund)
    return funded.model_dump(mode="json"), 201


# Projects.


@blueprint.get("/projects")
@operation("List projects", response=ProjectPage, query=ProjectQuery, problems=(403,))
def list_projects() -> ResponseReturnValue:
    """Projects the caller may see, by id: ops all, everyone else those they are on."""
    actor = _caller(Scope.READ)
    query = ProjectQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        page = list_projects_for_actor(
            session, actor, status=query.status, cursor=query.cursor, limit=query.limit
        )
    headers = next_page_link(query, cursor=page.next_cursor)
    return page.model_dump(mode="json"), 200, headers


@blueprint.post("/projects")
@operation(
    "Create a project",
    body=ProjectCreate,
    response=ProjectOut,
    status=201,
    problems=(403, 404, 422),
)
def create_project() -> ResponseReturnValue:
    """A project from a ProjectCreate body; a researcher becomes its PI, ops name one."""
    actor = _caller(Scope.WRITE)
    body = json_body(ProjectCreate)
    with session_scope(session_factory()) as session:
        project = projects.create_project(session, actor=actor, **body.model_dump())
    return project.model_dump(mode="json"), 201


@blueprint.get("/projects/<int:project_id>")
@operation("Get a project", response=ProjectDetail, problems=(403, 404))
def get_project(project_id: int) -> ResponseReturnValue:
    """One project with its members and its ledger accounts."""
    actor = _caller(Scope.READ)
    with session_scope(session_factory()) as session:
        project = get_project_for_actor(session, actor, project_id)
    return project.model_dump(mode="json")


@blueprint.post("/projects/<int:project_id>/members")
@operation(
    "Add a project member",
    body=MemberAdd,
    response=ProjectOut,
    status=201,
    problems=(403, 404, 409, 422),
)
def add_member(project_id: int) -> ResponseReturnValue:
    """Adds the researcher a MemberAdd body names, by user id or e-mail, as manager or
    member (PI, managers, ops)."""
    actor = _caller(Scope.WRITE)
    body = json_body(MemberAdd)
    with session_scope(session_factory()) as session:
        get_project_for_actor(session, actor, project_id, scope=Scope.WRITE)
        if body.user_id is not None:
            project = projects.add_member(
                session, project_id=project_id, user_id=body.user_id, role=body.role, actor=actor
            )
        else:
            project = members.add_member_by_email(
                session, project_id=project_id, email=str(body.email), role=body.role, actor=actor
            )
    return project.model_dump(mode="json"), 201


@blueprint.delete("/projects/<int:project_id>/members/<int:user_id>")
@operation("Remove a project member", response=ProjectOut, problems=(403, 404, 409))
def remove_member(project_id: int, user_id: int) -> ResponseReturnValue:
    """Takes a member off the project; the PI never comes off."""
    actor = _caller(Scope.WRITE)
    with session_scope(session_factory()) as session:
        get_project_for_actor(session, actor, project_id, scope=Scope.WRITE)
        project = projects.remove_member(
            session, project_id=project_id, user_id=user_id, actor=actor
        )
    return project.model_dump(mode="json")


@blueprint.post("/projects/<int:project_id>/suspend")
@operation("Suspend a project", body=ReasonIn, response=ProjectOut, problems=(403, 404, 409, 422))
def suspend_project(project_id: int) -> ResponseReturnValue:
    """active → suspended, with its allocations: no new holds (ops, ReasonIn body)."""
    actor = _caller(Scope.WRITE)
    body = json_body(ReasonIn)
    with session_scope(session_factory()) as session:
        get_project_for_actor(session, actor, project_id, scope=Scope.WRITE)
        project = projects.suspend_project(
            session, project_id=project_id, actor=actor, reason=body.reason
        )
    return project.model_dump(mode="json")


@blueprint.post("/projects/<int:project_id>/unsuspend")
@operation("Unsuspend a project", body=ReasonIn, response=ProjectOut, problems=(403, 404, 409, 422))
def unsuspend_project(project_id: int) -> ResponseReturnValue:
    """suspended → active, with its unexpired allocations (ops, ReasonIn body)."""
    actor = _caller(Scope.WRITE)
    body = json_body(ReasonIn)
    with session_scope(session_factory()) as session:
        get_project_for_actor(session, actor, project_id, scope=Scope.WRITE)
        project = projects.unsuspend_project(
            session, project_id=project_id, actor=actor, reason=body.reason
        )
    return project.model_dump(mode="json")


@blueprint.post("/projects/<int:project_id>/archive")
@operation(
    "Archive a project",
    body=ArchiveIn,
    body_required=False,
    response=ProjectOut,
    problems=(403, 404, 409, 422),
)
def archive_project(project_id: int) -> ResponseReturnValue:
    """active or suspended → archived, for good, its unfinished jobs cancelled (the PI or
    ops; optional ArchiveIn body)."""
    actor = _caller(Scope.WRITE)
    body = optional_json_body(ArchiveIn)
    with session_scope(session_factory()) as session:
        get_project_for_actor(session, actor, project_id, scope=Scope.WRITE)
        project = project_archive.archive_project(
            session, project_id=project_id, actor=actor, reason=body.reason
        )
    return project.model_dump(mode="json")
