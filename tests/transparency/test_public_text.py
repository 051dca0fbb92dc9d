"""A person's reason is published in the permanent log: one naming someone by e-mail
address or ORCID iD is refused before anything is stored."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.public_text import PersonalDataInPublicText, refuse_personal_data
from credits.audit.service import record_event


@pytest.mark.parametrize(
    "text",
    [
        "court order",
        "quota @ 80% for the group",
        "ticket 2026-1205-77",
        "see https://example.org/policy",
        "budget line 2026-1100-4300-0001",
        "pinned to pkg@1.0.dev",
        None,
    ],
)
def test_reasons_about_decisions_pass(text: str | None) -> None:
    refuse_personal_data(text, field="reason")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("asked by Jane.Doe@Uni.Example", "an e-mail address"),
        ("mail ops+dpo@platform.example.org", "an e-mail address"),
        ("author 0000-0002-1825-0097", "an ORCID iD"),
        ("author 0000-0001-5109-018X.", "an ORCID iD"),
        ("see x@mail.uni-heidelberg.de", "an e-mail address"),
    ],
)
def test_reasons_naming_a_person_are_refused_with_the_field(text: str, what: str) -> None:
    with pytest.raises(PersonalDataInPublicText) as refused:
        refuse_personal_data(text, field="takedown_reason")
    assert str(refused.value).startswith("takedown_reason is published in the public")
    assert f"may not hold {what}" in str(refused.value)
    assert refused.value.extra == {"field": "takedown_reason"}


def _events(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def test_a_persons_event_with_such_a_reason_is_not_appended(session: Session) -> None:
    before = _events(session)
    with pytest.raises(PersonalDataInPublicText):
        record_event(
            session,
            event_type="project.suspended",
            actor="user:7",
            subject_type="project",
            subject_id="1",
            data={"reason": "complaint from ada@uni.example"},
        )
    assert _events(session) == before


def test_the_platforms_own_events_and_other_fields_are_not_checked(session: Session) -> None:
    before = _events(session)
    record_event(
        session,
        event_type="job.failed",
        actor="system:reconciler",
        subject_type="job",
        subject_id="1",
        data={"reason": "pod said: contact admin@cluster.example"},
    )
    record_event(
        session,
        event_type="dataset.version.published",
        actor="user:7",
        subject_type="dataset_version",
        subject_id="1",
        data={"title": "Mail logs of example.org"},
    )
    assert _events(session) == before + 2


def test_a_reason_built_to_make_the_pattern_backtrack_is_judged_in_linear_time() -> None:
    # With the earlier pattern this took 11 s at 2,000 characters and grew with the
    # cube of the length: a reason this long would have held its row locks for hours.
    crafted = ("x" * 6_666 + "@" + "a" * 13_333)[:20_000]
    refuse_personal_data(crafted, field="reason")
    with pytest.raises(PersonalDataInPublicText):
        refuse_personal_data(crafted + ".org", field="reason")
