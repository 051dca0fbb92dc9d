"""Program services: creation, editing, owners, open and close; every refusal changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from grants_helpers import (
    CRITERIA,
    event_data,
    events,
    new_program,
    person,
    program_values,
    refused,
    uid,
)
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants import programs
from credits.grants.errors import (
    AlreadyProgramOwner,
    InvalidProgram,
    NotAFunder,
    ProgramForbidden,
    ProgramNotFound,
    ProgramStatusConflict,
)
from credits.grants.models import ProgramStatus
from credits.grants.queries import pool_code
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import queries as ledger_queries
from credits.ledger.models import AccountKind, Currency


@pytest.fixture
def funder(session: Session) -> Actor:
    return person(session, "fay@funder.example", Role.FUNDER)


@pytest.fixture
def other_funder(session: Session) -> Actor:
    return person(session, "otto@funder.example", Role.FUNDER)


@pytest.fixture
def ops(session: Session) -> Actor:
    return person(session, "ops@platform.example", Role.OPS)


@pytest.fixture
def researcher(session: Session) -> Actor:
    return person(session, "rita@uni.example", Role.RESEARCHER)


# create_program


def test_a_funder_creates_a_draft_program_and_owns_it(session: Session, funder: Actor) -> None:
    program = new_program(session, funder, initial_share_percent=40)

    assert program.status is ProgramStatus.DRAFT
    assert [owner.email for owner in program.owners] == ["fay@funder.example"]
    assert [c.model_dump() for c in program.criteria] == CRITERIA
    assert (program.min_reviewers, program.min_mean_score) == (2, 350)
    assert program.initial_share_percent == 40
    assert [(b.currency, b.funded, b.awarded, b.remaining) for b in program.budget] == [
        (Currency.GPU, 0, 0, 0),
        (Currency.LABEL, 0, 0, 0),
    ]
    pool = ledger_queries.get_account_by_code(session, code=pool_code(program.id, Currency.GPU))
    assert pool.kind is AccountKind.PROGRAM_POOL
    assert pool.no_overdraft
    assert events(session, "program", program.id) == [("program.created", funder.label)]
    data = event_data(session, "program", program.id, "program.created")
    assert data["owners"] == [uid(funder)]
    assert data["min_mean_score"] == 350


def test_ops_creates_a_program_for_named_funders_without_owning_it(
    session: Session, ops: Actor, funder: Actor, other_funder: Actor
) -> None:
    program = new_program(session, ops, owner_ids=[uid(other_funder), uid(funder)])

    assert [o.user_id for o in program.owners] == sorted([uid(funder), uid(other_funder)])


def test_a_funder_may_name_co_owners(session: Session, funder: Actor, other_funder: Actor) -> None:
    program = new_program(session, funder, owner_ids=[uid(other_funder)])

    assert {o.user_id for o in program.owners} == {uid(funder), uid(other_funder)}


def test_a_program_needs_an_owner(session: Session, ops: Actor) -> None:
    error = refused(session, InvalidProgram, programs.create_program, actor=ops, **program_values())

    assert error.extra == {"field": "owner_ids"}


def test_a_researcher_cannot_create_a_program(session: Session, researcher: Actor) -> None:
    refused(
        session, ProgramForbidden, programs.create_program, actor=researcher, **program_values()
    )


def test_every_owner_must_be_a_funder(session: Session, funder: Actor, researcher: Actor) -> None:
    error = refused(
        session,
        NotAFunder,
        programs.create_program,
        actor=funder,
        **program_values(owner_ids=[uid(researcher)]),
    )

    assert error.extra == {"user_id": uid(researcher)}


def test_an_unknown_owner_is_refused(session: Session, funder: Actor) -> None:
    refused(
        session,
        NotAFunder,
        programs.create_program,
        actor=funder,
        **program_values(owner_ids=[987_654]),
    )


NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"opens_at": NOW, "closes_at": NOW}, "closes_at"),
        ({"opens_at": NOW, "closes_at": NOW - timedelta(days=1)}, "closes_at"),
        ({"opens_at": datetime(2030, 1, 1)}, "opens_at"),  # noqa: DTZ001 - naive on purpose
        ({"name": "  "}, "name"),
        ({"description": ""}, "description"),
        ({"name": "x" * 201}, "name"),
        ({"criteria": []}, "criteria"),
        (
            {"criteria": [{"key": "merit", "label": "A"}, {"key": "merit", "label": "B"}]},
            "criteria",
        ),
        ({"criteria": [{"key": "Not A Slug", "label": "A"}]}, "criteria"),
        ({"criteria": [{"key": "merit"}]}, "criteria"),
        ({"min_reviewers": 0}, "min_reviewers"),
        ({"min_reviewers": True}, "min_reviewers"),
        ({"min_mean_score": 99}, "min_mean_score"),
        ({"min_mean_score": 501}, "min_mean_score"),
        ({"min_mean_score": 3.5}, "min_mean_score"),
        ({"initial_share_percent": 0}, "initial_share_percent"),
        ({"initial_share_percent": 101}, "initial_share_percent"),
    ],
)
def test_invalid_programs_are_refused_with_the_field(
    session: Session, funder: Actor, overrides: dict[str, Any], field: str
) -> None:
    error = refused(
        session,
        InvalidProgram,
        programs.create_program,
        actor=funder,
        **program_values(**overrides),
    )

    assert error.status == 422
    assert error.extra["field"] == field


def test_boundary_policies_are_accepted(session: Session, funder: Actor) -> None:
    low = new_program(session, funder, min_reviewers=1, min_mean_score=100, initial_share_percent=1)
    high = new_program(session, funder, min_mean_score=500, initial_share_percent=100)

    assert (low.min_mean_score, high.min_mean_score) == (100, 500)


# update_program


def test_a_draft_program_is_edited_field_by_field(session: Session, funder: Actor) -> None:
    program = new_program(session, funder, initial_share_percent=50)
    new_close = program.closes_at + timedelta(days=10)

    updated = programs.update_program(
        session,
        program_id=program.id,
        actor=funder,
        name="Compute for oceans",
        closes_at=new_close,
        criteria=[{"key": "impact", "label": "Impact"}],
        min_mean_score=400,
    )

    assert updated.name == "Compute for oceans"
    assert updated.closes_at == new_close
    assert [c.key for c in updated.criteria] == ["impact"]
    assert updated.min_mean_score == 400
    assert updated.description == program.description
    assert updated.initial_share_percent == 50
    changes = event_data(session, "program", program.id, "program.updated")["changes"]
    assert sorted(changes) == ["closes_at", "criteria", "min_mean_score", "name"]
    assert changes["min_mean_score"] == {"from": program.min_mean_score, "to": 400}
    assert changes["name"]["to"] == "Compute for oceans"


def test_an_edit_that_changes_nothing_appends_no_event(session: Session, funder: Actor) -> None:
    program = new_program(session, funder)

    programs.update_program(session, program_id=program.id, actor=funder, name=program.name)
    programs.update_program(session, program_id=program.id, actor=funder)

    assert [e for e in events(session, "program", program.id) if e[0] == "program.updated"] == []


def test_editing_can_clear_the_tranche_policy(session: Session, funder: Actor) -> None:
    program = new_program(session, funder, initial_share_percent=50)

    updated = programs.update_program(
        session, program_id=program.id, actor=funder, initial_share_percent=None
    )

    assert updated.initial_share_percent is None


def test_an_edit_that_reverses_the_window_is_refused(session: Session, funder: Actor) -> None:
    program = new_program(session, funder)

    refused(
        session,
        InvalidProgram,
        programs.update_program,
        program_id=program.id,
        actor=funder,
        closes_at=program.opens_at - timedelta(hours=1),
    )


@pytest.mark.parametrize("status", [ProgramStatus.OPEN, ProgramStatus.CLOSED])
def test_only_a_draft_can_be_edited(session: Session, funder: Actor, status: ProgramStatus) -> None:
    program = new_program(session, funder)
    programs.open_program(session, program_id=program.id, actor=funder)
    if status is ProgramStatus.CLOSED:
        programs.close_program(session, program_id=program.id, actor=funder)

    error = refused(
        session,
        ProgramStatusConflict,
        programs.update_program,
        program_id=program.id,
        actor=funder,
        name="Renamed",
    )

    assert error.status == 409
    assert error.extra == {"current_status": status.value}


def test_a_funder_who_does_not_own_the_program_cannot_edit_it(
    session: Session, funder: Actor, other_funder: Actor
) -> None:
    program = new_program(session, funder)

    refused(
        session,
        ProgramForbidden,
        programs.update_program,
        program_id=program.id,
        actor=other_funder,
        name="Mine now",
    )


def test_an_unknown_program_is_not_found(session: Session, ops: Actor) -> None:
    refused(session, ProgramNotFound, programs.update_program, program_id=987_654, actor=ops)


# open_program and close_program


def test_a_program_opens_then_closes(any_session: Session) -> None:
    session = any_session
    funder = person(session, "fay@funder.example", Role.FUNDER)
    program = new_program(session, funder)

    opened = programs.open_program(session, program_id=program.id, actor=funder)
    closed = programs.close_program(session, program_id=program.id, actor=funder)

    assert opened.status is ProgramStatus.OPEN
    assert opened.opened_at is not None
    assert closed.status is ProgramStatus.CLOSED
    assert closed.closed_at is not None
    assert [event for event, _ in events(session, "program", program.id)] == [
        "program.created",
        "program.opened",
        "program.closed",
    ]
    with pytest.raises(ProgramStatusConflict):
        programs.open_program(session, program_id=program.id, actor=funder)


def test_ops_opens_and_closes_any_program(session: Session, funder: Actor, ops: Actor) -> None:
    program = new_program(session, funder)

    programs.open_program(session, program_id=program.id, actor=ops)
    closed = programs.close_program(session, program_id=program.id, actor=ops)

    assert closed.status is ProgramStatus.CLOSED
    assert events(session, "program", program.id)[-1] == ("program.closed", ops.label)


@pytest.mark.parametrize("status", [ProgramStatus.OPEN, ProgramStatus.CLOSED])
def test_only_a_draft_opens(session: Session, funder: Actor, status: ProgramStatus) -> None:
    program = new_program(session, funder)
    programs.open_program(session, program_id=program.id, actor=funder)
    if status is ProgramStatus.CLOSED:
        programs.close_program(session, program_id=program.id, actor=funder)

    error = refused(
        session, ProgramStatusConflict, programs.open_program, program_id=program.id, actor=funder
    )

    assert error.extra == {"current_status": status.value}
    assert f"is {status.value}" in error.detail


@pytest.mark.parametrize("status", [ProgramStatus.DRAFT, ProgramStatus.CLOSED])
def test_only_an_open_program_closes(
    session: Session, funder: Actor, status: ProgramStatus
) -> None:
    program = new_program(session, funder)
    if status is ProgramStatus.CLOSED:
        programs.open_program(session, program_id=program.id, actor=funder)
        programs.close_program(session, program_id=program.id, actor=funder)

    error = refused(
        session, ProgramStatusConflict, programs.close_program, program_id=program.id, actor=funder
    )

    assert error.extra == {"current_status": status.value}


def test_a_program_past_its_closing_time_cannot_open(session: Session, funder: Actor) -> None:
    past = utcnow() - timedelta(days=1)
    program = new_program(session, funder, opens_at=past - timedelta(days=30), closes_at=past)

    error = refused(
        session, InvalidProgram, programs.open_program, program_id=program.id, actor=funder
    )

    assert error.extra == {"field": "closes_at"}


@pytest.mark.parametrize("who", ["other_funder", "researcher"])
def test_only_owners_and_ops_open_or_close(
    session: Session, funder: Actor, who: str, request: pytest.FixtureRequest
) -> None:
    outsider: Actor = request.getfixturevalue(who)
    program = new_program(session, funder)

    refused(session, ProgramForbidden, programs.open_program, program_id=program.id, actor=outsider)
    programs.open_program(session, program_id=program.id, actor=funder)
    refused(
        session, ProgramForbidden, programs.close_program, program_id=program.id, actor=outsider
    )


# add_program_owner


def test_an_owner_adds_a_co_owner_who_then_administers_it(
    session: Session, funder: Actor, other_funder: Actor
) -> None:
    program = new_program(session, funder)
    programs.open_program(session, program_id=program.id, actor=funder)

    updated = programs.add_program_owner(
        session, program_id=program.id, user_id=uid(other_funder), actor=funder
    )
    closed = programs.close_program(session, program_id=program.id, actor=other_funder)

    assert {o.email for o in updated.owners} == {"fay@funder.example", "otto@funder.example"}
    assert closed.status is ProgramStatus.CLOSED
    assert event_data(session, "program", program.id, "program.owner_added") == {
        "user_id": uid(other_funder)
    }


def test_adding_an_owner_twice_is_a_conflict(session: Session, funder: Actor) -> None:
    program = new_program(session, funder)

    error = refused(
        session,
        AlreadyProgramOwner,
        programs.add_program_owner,
        program_id=program.id,
        user_id=uid(funder),
        actor=funder,
    )

    assert error.status == 409


def test_an_owner_must_be_a_funder(session: Session, funder: Actor, researcher: Actor) -> None:
    program = new_program(session, funder)

    refused(
        session,
        NotAFunder,
        programs.add_program_owner,
        program_id=program.id,
        user_id=uid(researcher),
        actor=funder,
    )


def test_a_non_owner_cannot_add_owners(
    session: Session, funder: Actor, other_funder: Actor
) -> None:
    program = new_program(session, funder)

    refused(
        session,
        ProgramForbidden,
        programs.add_program_owner,
        program_id=program.id,
        user_id=uid(other_funder),
        actor=other_funder,
    )


# list_programs


def test_programs_are_listed_by_id_with_filters_and_cursor(
    session: Session, funder: Actor, other_funder: Actor
) -> None:
    ids = [new_program(session, funder, name=f"P{n}").id for n in range(3)]
    theirs = new_program(session, other_funder).id
    programs.open_program(session, program_id=ids[1], actor=funder)

    first = programs.list_programs(session, limit=2)
    rest = programs.list_programs(session, limit=2, cursor=first.next_cursor)

    assert [p.id for p in first.items + rest.items] == [*ids, theirs]
    assert rest.next_cursor is None
    opened = programs.list_programs(session, status=ProgramStatus.OPEN)
    assert [p.id for p in opened.items] == [ids[1]]
    assert [p.id for p in programs.list_programs(session, owner_id=uid(other_funder)).items] == [
        theirs
    ]
