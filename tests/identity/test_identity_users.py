"""Creating users, validating what they are made of, and granting and revoking roles."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.service import leaf_hash, list_events
from credits.errors import CreditsError, InvalidInput
from credits.identity import service
from credits.identity.actor import Actor
from credits.identity.errors import (
    EmailTaken,
    InvalidEmail,
    InvalidName,
    InvalidOrcid,
    InvalidRole,
    OrcidTaken,
    UserNotFound,
    WeakPassword,
)
from credits.identity.models import Role, User, UserRole
from credits.identity.schemas import UserOut

ACTOR = Actor.system("test")


def _count(session: Session, model: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _counts(session: Session) -> tuple[int, int, int]:
    return _count(session, User), _count(session, UserRole), _count(session, AuditEvent)


def _create(session: Session, **overrides: Any) -> UserOut:
    values: dict[str, Any] = {
        "email": "ada@example.org",
        "name": "Ada Lovelace",
        "roles": [Role.RESEARCHER],
    }
    values.update(overrides)
    return service.create_user(session, actor=ACTOR, **values)


def _event_data(event_canonical_json: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(event_canonical_json)
    return document


def test_create_user_normalizes_email_and_sorts_roles(any_session: Session) -> None:
    user = _create(
        any_session,
        email="  Ada.Lovelace@Example.ORG ",
        roles=["reviewer", Role.FUNDER, "RESEARCHER"],
        institution=" Analytical Engines Ltd ",
    )

    assert user.email == "ada.lovelace@example.org"
    assert user.roles == [Role.FUNDER, Role.RESEARCHER, Role.REVIEWER]
    assert user.institution == "Analytical Engines Ltd"
    assert user.is_active
    assert user.created_at.tzinfo is not None
    stored = any_session.get(User, user.id)
    assert stored is not None
    assert stored.email == "ada.lovelace@example.org"
    assert stored.password_hash is None


def test_duplicate_roles_are_granted_once(session: Session) -> None:
    user = _create(session, roles=["ops", "ops", Role.OPS])

    assert user.roles == [Role.OPS]
    assert _count(session, UserRole) == 1


def test_a_bare_role_string_is_one_role_not_its_letters(session: Session) -> None:
    user = _create(session, roles="funder")

    assert user.roles == [Role.FUNDER]


def test_blank_orcid_and_institution_are_stored_as_none(session: Session) -> None:
    user = _create(session, orcid="  ", institution="")

    assert user.orcid is None
    assert user.institution is None


def test_create_user_appends_created_and_granted_events_with_valid_leaf_hashes(
    any_session: Session,
) -> None:
    user = _create(any_session, roles=["researcher", "reviewer"], orcid="0000-0002-1825-0097")

    events = list_events(any_session, subject_type="user", subject_id=str(user.id))

    assert [e.event_type for e in events] == ["user.created", "role.granted", "role.granted"]
    assert all(e.actor == "system:test" for e in events)
    assert all(leaf_hash(e.canonical_json) == e.leaf_hash for e in events)
    documents = [_event_data(e.canonical_json) for e in events]
    # No e-mail, name or ORCID iD: the user is the subject id alone.
    assert documents[0]["data"] == {"roles": ["researcher", "reviewer"]}
    assert documents[0]["subject"] == {"type": "user", "id": str(user.id)}
    assert [d["data"]["role"] for d in documents[1:]] == ["researcher", "reviewer"]


def test_audit_events_roll_back_with_the_user_they_describe(session: Session) -> None:
    before = _counts(session)
    savepoint = session.begin_nested()
    _create(session)
    assert _counts(session) == (before[0] + 1, before[1] + 1, before[2] + 2)

    savepoint.rollback()

    assert _counts(session) == before


def test_user_created_event_never_holds_the_password(session: Session) -> None:
    _create(session, password="correct horse battery staple")

    stored = session.scalars(select(AuditEvent.canonical_json)).all()
    assert stored
    assert not any("correct horse" in text or "argon2" in text for text in stored)


@pytest.mark.parametrize(
    ("overrides", "error", "fragment"),
    [
        ({"email": "not-an-address"}, InvalidEmail, "not a valid email address"),
        ({"email": "ada@"}, InvalidEmail, "not a valid email address"),
        ({"email": ""}, InvalidEmail, "not a valid email address"),
        ({"name": "   "}, InvalidName, "a name is required"),
        ({"name": "x" * 201}, InvalidName, "at most 200 characters"),
        ({"institution": "x" * 201}, InvalidInput, "institution has at most 200"),
        ({"roles": ["astronaut"]}, InvalidRole, "researcher, reviewer, funder, ops"),
        ({"roles": ["ops", "astronaut"]}, InvalidRole, "unknown role 'astronaut'"),
        ({"roles": []}, InvalidRole, "at least one role"),
        ({"password": "short"}, WeakPassword, "at least 12 characters"),
        ({"password": "x" * 1025}, WeakPassword, "at most 1024 characters"),
        ({"orcid": "0000-0002-1825-009"}, InvalidOrcid, "0000-0000-0000-000X"),
        ({"orcid": "0000000218250097"}, InvalidOrcid, "0000-0000-0000-000X"),
        ({"orcid": "0000-0002-1825-0098"}, InvalidOrcid, "checksum"),
        ({"orcid": "0000-0002-1694-2339"}, InvalidOrcid, "checksum"),
    ],
)
def test_invalid_user_input_is_refused_and_changes_nothing(
    session: Session, overrides: dict[str, Any], error: type[CreditsError], fragment: str
) -> None:
    before = _counts(session)

    with pytest.raises(error) as raised:
        _create(session, **overrides)

    assert fragment in raised.value.detail
    assert _counts(session) == before


def test_unknown_role_error_lists_the_allowed_roles(session: Session) -> None:
    with pytest.raises(InvalidRole) as raised:
        _create(session, roles=["admin"])

    assert raised.value.extra["allowed"] == ["researcher", "reviewer", "funder", "ops", "annotator"]
    assert raised.value.status == 422


@pytest.mark.parametrize(
    "orcid", ["0000-0002-1825-0097", "0000-0001-5109-3700", "0000-0002-1694-233X"]
)
def test_orcids_with_a_valid_checksum_are_accepted(session: Session, orcid: str) -> None:
    assert _create(session, orcid=orcid).orcid == orcid


def test_orcid_check_letter_x_is_accepted_in_lower_case_and_stored_upper(session: Session) -> None:
    assert _create(session, orcid=" 0000-0002-1694-233x ").orcid == "0000-0002-1694-233X"


@pytest.mark.parametrize(
    ("base", "check"),
    [("000000021825009", "7"), ("000000015109370", "0"), ("000000021694233", "X")],
)
def test_orcid_check_digit_follows_iso_7064_mod_11_2(base: str, check: str) -> None:
    assert service.orcid_check_digit(base) == check


def test_an_email_taken_in_another_case_is_refused(any_session: Session) -> None:
    _create(any_session, email="ada@example.org")
    before = _counts(any_session)

    with pytest.raises(EmailTaken) as raised:
        _create(any_session, email="ADA@example.org", name="Another Ada")

    assert raised.value.status == 409
    assert _counts(any_session) == before


def test_an_orcid_taken_by_another_user_is_refused(session: Session) -> None:
    _create(session, email="ada@example.org", orcid="0000-0002-1825-0097")
    before = _counts(session)

    with pytest.raises(OrcidTaken):
        _create(session, email="grace@example.org", orcid="0000-0002-1825-0097")

    assert _counts(session) == before


def test_list_users_returns_every_user_oldest_first(session: Session) -> None:
    first = _create(session, email="ada@example.org")
    second = _create(session, email="grace@example.org", roles=["ops"])

    listed = service.list_users(session)

    assert [u.id for u in listed][-2:] == [first.id, second.id]
    assert listed[-1].roles == [Role.OPS]


def test_get_user_by_email_ignores_case_and_surrounding_spaces(session: Session) -> None:
    created = _create(session)

    assert service.get_user_by_email(session, "  ADA@example.org ") == created


def test_get_user_by_unknown_email_is_not_found(session: Session) -> None:
    with pytest.raises(UserNotFound) as raised:
        service.get_user_by_email(session, "nobody@example.org")

    assert raised.value.status == 404


def test_grant_role_adds_the_role_and_appends_an_event(any_session: Session) -> None:
    user = _create(any_session)

    updated = service.grant_role(any_session, email=user.email, role="ops", actor=ACTOR)

    assert updated.roles == [Role.OPS, Role.RESEARCHER]
    events = list_events(any_session, subject_type="user", subject_id=str(user.id))
    assert events[-1].event_type == "role.granted"
    assert _event_data(events[-1].canonical_json)["data"] == {"role": "ops"}
    assert leaf_hash(events[-1].canonical_json) == events[-1].leaf_hash


def test_granting_a_role_already_held_changes_nothing_and_appends_no_event(
    session: Session,
) -> None:
    user = _create(session)
    before = _counts(session)

    updated = service.grant_role(session, email=user.email, role=Role.RESEARCHER, actor=ACTOR)

    assert updated.roles == [Role.RESEARCHER]
    assert _counts(session) == before


def test_revoke_role_removes_the_role_and_appends_an_event(any_session: Session) -> None:
    user = _create(any_session, roles=["researcher", "reviewer"])

    updated = service.revoke_role(any_session, email=user.email, role="reviewer", actor=ACTOR)

    assert updated.roles == [Role.RESEARCHER]
    assert service.get_user_by_email(any_session, user.email).roles == [Role.RESEARCHER]
    events = list_events(any_session, subject_type="user", subject_id=str(user.id))
    assert events[-1].event_type == "role.revoked"
    assert _event_data(events[-1].canonical_json)["data"]["role"] == "reviewer"


def test_revoking_a_role_not_held_changes_nothing_and_appends_no_event(session: Session) -> None:
    user = _create(session)
    before = _counts(session)

    updated = service.revoke_role(session, email=user.email, role="ops", actor=ACTOR)

    assert updated.roles == [Role.RESEARCHER]
    assert _counts(session) == before


@pytest.mark.parametrize("change", [service.grant_role, service.revoke_role])
def test_role_changes_refuse_an_unknown_role_or_user(session: Session, change: Any) -> None:
    user = _create(session)
    before = _counts(session)

    with pytest.raises(InvalidRole):
        change(session, email=user.email, role="astronaut", actor=ACTOR)
    with pytest.raises(UserNotFound):
        change(session, email="nobody@example.org", role="ops", actor=ACTOR)

    assert _counts(session) == before
