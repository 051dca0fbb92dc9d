"""The PI writes the progress report a pending tranche waits for; the funder's release
form starts from it. A blank report, a released tranche and a plain member are
refused, and nothing is stored."""

from __future__ import annotations

import pytest
from api_world import World, build_world
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, flows_app, text_of
from ui_sign_in import sign_in_as

from credits.audit.models import AuditEvent
from credits.formatting import money
from credits.grants.allocations import release_tranche
from credits.grants.models import Allocation, Award, Tranche
from credits.identity.service import actor_for_email

REPORT = "Half of the ensemble runs are done; the rest start next month."


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


def _tranche(session: Session, world: World) -> Tranche:
    session.expire_all()
    return session.get_one(Tranche, world.tranche)


def _proposal_of(session: Session, world: World) -> int:
    return session.get_one(Award, _tranche(session, world).award_id).proposal_id


def _send(app: Flask, world: World, text: str, persona: str = "researcher_a"):  # type: ignore[no-untyped-def]
    client = client_for(app, world, persona)
    return client.post(
        f"/tranches/{world.tranche}/report", data={"csrf_token": CSRF, "progress_report": text}
    )


def test_the_pi_sends_a_report_and_the_funders_form_starts_from_it(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    proposal_id = _proposal_of(session, world)
    page = client_for(app, world, "researcher_a").get(f"/applications/{proposal_id}").text
    assert f'action="/tranches/{world.tranche}/report"' in page
    assert _send(app, world, f"  {REPORT}  ").status_code == 302
    assert _tranche(session, world).progress_report == REPORT
    assert _tranche(session, world).status == "pending"
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "allocation.progress_report_submitted")
    ).one()
    assert REPORT not in event.canonical_json
    funder = client_for(app, world, "funder_p").get(f"/funder/proposals/{proposal_id}").text
    assert f">{REPORT}</textarea>" in funder
    assert "As the project sent it" in text_of(funder)


def test_a_blank_report_is_shown_at_its_field_and_stores_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    response = _send(app, world, "   ")
    assert response.status_code == 422
    assert f'id="e-progress_report-{world.tranche}">a progress report has 1 to' in response.text
    assert _tranche(session, world).progress_report is None


def test_a_released_tranche_takes_no_report(app: Flask, session: Session) -> None:
    world = build_world(session)
    release_tranche(
        session,
        tranche_id=world.tranche,
        actor=actor_for_email(session, "funder_p@example.org"),
        progress_report="Approved on the phone.",
        key="released-first",
    )
    session.flush()
    response = _send(app, world, REPORT)
    assert response.status_code == 409
    assert "is released already" in text_of(response.text)
    assert _tranche(session, world).progress_report == "Approved on the phone."


def test_a_plain_member_sees_no_form_and_is_refused(app: Flask, session: Session) -> None:
    world = build_world(session)
    member = app.test_client()
    sign_in_as(member, world.member_a, csrf_token=CSRF)
    page = member.get(f"/applications/{_proposal_of(session, world)}").text
    assert "/report" not in page
    response = member.post(
        f"/tranches/{world.tranche}/report", data={"csrf_token": CSRF, "progress_report": REPORT}
    )
    assert response.status_code == 403
    assert _tranche(session, world).progress_report is None


def test_a_pending_tranche_is_stated_in_its_currency_to_the_pi_and_the_funder(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    tranche = _tranche(session, world)
    currency = session.get_one(Allocation, tranche.allocation_id).currency
    amount = money(tranche.amount_micro, currency)
    proposal_id = _proposal_of(session, world)

    pi_page = text_of(
        client_for(app, world, "researcher_a").get(f"/applications/{proposal_id}").text
    )
    funder_page = text_of(
        client_for(app, world, "funder_p").get(f"/funder/proposals/{proposal_id}").text
    )

    assert f"{amount} wait until the funder approves a progress report" in pi_page
    assert f"{amount} to allocation #{tranche.allocation_id}" in funder_page
