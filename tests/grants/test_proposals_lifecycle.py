"""Proposals: drafting, editing, submission checks, withdrawal, and every refused transition."""

from __future__ import annotations

from datetime import timedelta

import pytest
from grants_helpers import event_data, events, new_program, uid
from proposal_helpers import CREDIT, World, drafted, proposal_values, refused, submitted, world
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants.awards import reject_proposal
from credits.grants.errors import (
    IncompleteProposal,
    InvalidProposal,
    ProgramNotFound,
    ProgramStatusConflict,
    ProjectStatusConflict,
    ProposalForbidden,
    ProposalStatusConflict,
)
from credits.grants.models import ProposalStatus
from credits.grants.programs import close_program
from credits.grants.project_archive import archive_project
from credits.grants.proposals import (
    create_proposal,
    submit_proposal,
    update_proposal,
    withdraw_proposal,
)
from credits.grants.reviews import assign_reviewer


@pytest.fixture
def w(any_session: Session) -> World:
    return world(any_session)


def test_a_pi_drafts_edits_and_submits_a_proposal(any_session: Session, w: World) -> None:
    proposal = drafted(any_session, w, title="", abstract="")
    assert proposal.status is ProposalStatus.DRAFT
    edited = update_proposal(
        any_session, proposal_id=proposal.id, actor=w.mia, title="Emulators", abstract="Why."
    )
    assert (edited.title, edited.abstract) == ("Emulators", "Why.")
    sent = submit_proposal(any_session, proposal_id=proposal.id, actor=w.pia)
    assert sent.status is ProposalStatus.SUBMITTED
    assert sent.submitted_at is not None
    assert [e for e, _ in events(any_session, "proposal", proposal.id)] == [
        "proposal.created",
        "proposal.updated",
        "proposal.submitted",
    ]
    assert event_data(any_session, "proposal", proposal.id, "proposal.updated")["fields"] == [
        "abstract",
        "title",
    ]


@pytest.mark.parametrize("start", ["draft", "submitted", "in_review"])
def test_a_proposal_is_withdrawn_from_each_open_state(
    any_session: Session, w: World, start: str
) -> None:
    proposal = drafted(any_session, w) if start == "draft" else submitted(any_session, w)
    if start == "in_review":
        assign_reviewer(
            any_session, proposal_id=proposal.id, reviewer_user_id=uid(w.reviewers[0]), actor=w.fay
        )
    gone = withdraw_proposal(any_session, proposal_id=proposal.id, actor=w.pia, reason="moved")
    assert gone.status is ProposalStatus.WITHDRAWN
    data = event_data(any_session, "proposal", proposal.id, "proposal.withdrawn")
    assert data == {"from": start, "reason": "moved"}


def test_only_a_draft_is_edited(any_session: Session, w: World) -> None:
    proposal = submitted(any_session, w)
    error = refused(
        any_session,
        ProposalStatusConflict,
        update_proposal,
        proposal_id=proposal.id,
        actor=w.pia,
        title="Later",
    )
    assert error.status == 409
    assert error.extra["current_status"] == "submitted"


def test_a_submitted_proposal_is_not_submitted_again(any_session: Session, w: World) -> None:
    proposal = submitted(any_session, w)
    error = refused(
        any_session, ProposalStatusConflict, submit_proposal, proposal_id=proposal.id, actor=w.pia
    )
    assert error.extra["current_status"] == "submitted"


@pytest.mark.parametrize("end", ["withdrawn", "rejected"])
def test_a_closed_proposal_cannot_be_withdrawn_or_edited(
    any_session: Session, w: World, end: str
) -> None:
    proposal = submitted(any_session, w)
    if end == "withdrawn":
        withdraw_proposal(any_session, proposal_id=proposal.id, actor=w.pia)
    else:
        reject_proposal(
            any_session, proposal_id=proposal.id, actor=w.fay, override_reason="out of scope"
        )
    for call, kwargs in (
        (withdraw_proposal, {}),
        (submit_proposal, {}),
        (update_proposal, {"title": "again"}),
    ):
        error = refused(
            any_session,
            ProposalStatusConflict,
            call,
            proposal_id=proposal.id,
            actor=w.pia,
            **kwargs,
        )
        assert error.extra["current_status"] == end


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"title": "  "}, ["title"]),
        ({"abstract": ""}, ["abstract"]),
        ({"justification": ""}, ["justification"]),
        ({"requested": {}}, ["requested"]),
        ({"requested": {"gpu": 0, "label": 0}}, ["requested"]),
        ({"starts_at": None}, ["starts_at"]),
        ({"ends_at": None}, ["ends_at"]),
        ({"title": "", "requested": {}}, ["title", "requested"]),
    ],
)
def test_submission_names_what_is_missing(
    any_session: Session, w: World, overrides: dict[str, object], missing: list[str]
) -> None:
    proposal = drafted(any_session, w, **overrides)
    error = refused(
        any_session, IncompleteProposal, submit_proposal, proposal_id=proposal.id, actor=w.pia
    )
    assert error.status == 422
    assert error.extra["missing"] == missing


@pytest.mark.parametrize(
    "overrides",
    [
        {"requested": {"gpu": -1}},
        {"requested": {"gpu": 1.5}},
        {"requested": {"gpu": True}},
        {"requested": {"btc": 5}},
        {"kind": "gift"},
        {"ends_at": utcnow() - timedelta(days=1)},
        {"starts_at": utcnow().replace(tzinfo=None)},
        {"allocation_id": 1},
    ],
)
def test_a_draft_refuses_invalid_values(
    any_session: Session, w: World, overrides: dict[str, object]
) -> None:
    refused(
        any_session,
        InvalidProposal,
        create_proposal,
        program_id=w.program_id,
        project_id=w.project_id,
        actor=w.pia,
        **proposal_values(**overrides),
    )


def test_reversed_dates_are_refused_on_edit(any_session: Session, w: World) -> None:
    proposal = drafted(any_session, w)
    refused(
        any_session,
        InvalidProposal,
        update_proposal,
        proposal_id=proposal.id,
        actor=w.pia,
        ends_at=utcnow() - timedelta(days=3),
    )


def test_a_supplement_must_name_an_allocation(any_session: Session, w: World) -> None:
    refused(
        any_session,
        InvalidProposal,
        create_proposal,
        program_id=w.program_id,
        project_id=w.project_id,
        actor=w.pia,
        **proposal_values(kind="supplement"),
    )


@pytest.mark.parametrize("who", ["mo", "max", "fay", "reviewer"])
def test_only_the_pi_managers_and_ops_draft(any_session: Session, w: World, who: str) -> None:
    actor = w.reviewers[0] if who == "reviewer" else getattr(w, who)
    refused(
        any_session,
        ProposalForbidden,
        create_proposal,
        program_id=w.program_id,
        project_id=w.project_id,
        actor=actor,
        **proposal_values(),
    )


@pytest.mark.parametrize("who", ["mo", "max", "fay"])
def test_only_the_pi_managers_and_ops_submit_and_withdraw(
    any_session: Session, w: World, who: str
) -> None:
    proposal = drafted(any_session, w)
    for call in (submit_proposal, withdraw_proposal):
        refused(
            any_session, ProposalForbidden, call, proposal_id=proposal.id, actor=getattr(w, who)
        )


def test_ops_may_withdraw(any_session: Session, w: World) -> None:
    proposal = submitted(any_session, w)
    assert (
        withdraw_proposal(any_session, proposal_id=proposal.id, actor=w.ops).status == "withdrawn"
    )


def test_submission_needs_an_open_program(any_session: Session, w: World) -> None:
    proposal = drafted(any_session, w)
    close_program(any_session, program_id=w.program_id, actor=w.fay)
    error = refused(
        any_session, ProgramStatusConflict, submit_proposal, proposal_id=proposal.id, actor=w.pia
    )
    assert error.extra["current_status"] == "closed"


def test_submission_needs_the_window(any_session: Session, w: World) -> None:
    proposal = drafted(any_session, w)
    late = utcnow() + timedelta(days=60)
    refused(
        any_session,
        ProgramStatusConflict,
        submit_proposal,
        proposal_id=proposal.id,
        actor=w.pia,
        now=late,
    )


def test_a_draft_program_takes_no_proposals(any_session: Session, w: World) -> None:
    draft = new_program(any_session, w.fay, name="Later call")
    refused(
        any_session,
        ProgramNotFound,
        create_proposal,
        program_id=draft.id,
        project_id=w.project_id,
        actor=w.pia,
        **proposal_values(),
    )


def test_an_archived_project_cannot_submit(any_session: Session, w: World) -> None:
    proposal = drafted(any_session, w)
    archive_project(any_session, project_id=w.project_id, actor=w.pia)
    refused(
        any_session, ProjectStatusConflict, submit_proposal, proposal_id=proposal.id, actor=w.pia
    )


def test_amounts_are_integer_micro_credits(any_session: Session, w: World) -> None:
    proposal = drafted(any_session, w, requested={"gpu": 5 * CREDIT, "label": 0})
    assert proposal.requested == {"gpu": 5 * CREDIT, "label": 0}
