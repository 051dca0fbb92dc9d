"""Values the portal's parsers read but Python or the database cannot hold: the last
day of year 9999 (no next midnight), a time whose UTC reading is past year 9999,
ids longer than a BIGINT, infinite percentages. Each is the form's usual error and
saves nothing, or is ignored the way a malformed value is; never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from api_world import build_world
from flask import Flask
from flask.testing import FlaskClient
from labelling_api_world import priced_vendor
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, flows_app, text_of

from credits.db import utcnow
from credits.grants.models import Award, Program, Proposal, ReviewAssignment
from credits.labelling.models import Adapter, PriceSheet
from credits.ledger.models import Transfer
from credits.pool.models import RateVersion

LAST_DAY = "9999-12-31"
TOO_LONG_ID = "9" * 20
DATE_ERROR = "enter a date as YYYY-MM-DD"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


def _count(session: Session, model: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _program_form(closes_at: str) -> dict[str, str]:
    return {
        "csrf_token": CSRF,
        "name": "Far future",
        "description": "A program.",
        "opens_at": utcnow().date().isoformat(),
        "closes_at": closes_at,
        "criteria": "Merit",
        "min_reviewers": "1",
        "min_mean_score": "3",
    }


def _refused(response: Any, status: int, message: str) -> None:
    assert response.status_code == status
    assert message in text_of(response.get_data(as_text=True))


# Dates at the end of the calendar.


def test_a_program_closing_on_the_last_day_of_year_9999_is_a_form_error_and_saves_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    before = _count(session, Program)
    response = client_for(app, world, "funder_p").post(
        "/funder/programs", data=_program_form(LAST_DAY)
    )
    _refused(response, 400, DATE_ERROR)
    assert _count(session, Program) == before


def test_moving_a_program_close_to_the_last_day_of_year_9999_is_a_form_error_and_changes_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    program = session.get_one(Program, world.program_p_draft)
    closes_at = program.closes_at
    response = client_for(app, world, "funder_p").post(
        f"/funder/programs/{world.program_p_draft}/edit", data=_program_form(LAST_DAY)
    )
    _refused(response, 400, DATE_ERROR)
    session.refresh(program)
    assert program.closes_at == closes_at


def test_an_award_ending_on_the_last_day_of_year_9999_is_a_form_error_and_awards_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    before = _count(session, Award)
    response = client_for(app, world, "funder_p").post(
        f"/funder/proposals/{world.proposal_in_review}/award",
        data={
            "csrf_token": CSRF,
            "amount_gpu": "1",
            "starts_at": utcnow().date().isoformat(),
            "ends_at": LAST_DAY,
            "reason": "Strong proposal.",
        },
    )
    _refused(response, 400, DATE_ERROR)
    assert _count(session, Award) == before


def _proposal_form(**fields: str) -> dict[str, str]:
    today = utcnow().date().isoformat()
    return {"csrf_token": CSRF, "title": "Far future", "starts_on": today} | fields


def test_applying_with_an_end_on_the_last_day_of_year_9999_is_a_form_error_and_saves_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    before = _count(session, Proposal)
    response = client_for(app, world, "researcher_a").post(
        f"/programs/{world.program_p}/apply",
        data=_proposal_form(project_id=str(world.project_a), ends_on=LAST_DAY),
    )
    _refused(response, 422, DATE_ERROR)
    assert _count(session, Proposal) == before


def test_a_draft_ending_on_the_last_day_of_year_9999_is_a_form_error_and_changes_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    draft = session.get_one(Proposal, world.proposal_draft)
    kept = (draft.title, draft.ends_at)
    response = client_for(app, world, "researcher_a").post(
        f"/applications/{world.proposal_draft}", data=_proposal_form(ends_on=LAST_DAY)
    )
    _refused(response, 422, DATE_ERROR)
    session.refresh(draft)
    assert (draft.title, draft.ends_at) == kept


def test_an_audit_filter_until_the_last_day_of_year_9999_is_refused_like_a_malformed_date(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    response = client_for(app, world, "ops").get(f"/ops/audit?until={LAST_DAY}")
    _refused(response, 400, "give a date like 2030-01-31")


def test_a_rate_from_a_moment_past_year_9999_in_utc_is_a_form_error_and_saves_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    before = _count(session, RateVersion)
    response = client_for(app, world, "ops").post(
        "/ops/pool/rates",
        data={
            "csrf_token": CSRF,
            "flavour": world.flavour,
            "credits_per_gpu_hour": "1",
            "effective_from": f"{LAST_DAY}T23:00-05:00",
            "reason": "Far future.",
        },
    )
    _refused(response, 400, "give a date and time, or leave it blank for now")
    assert _count(session, RateVersion) == before


def _post_price(client: FlaskClient, vendor_id: str, **fields: str) -> Any:
    price = {
        "csrf_token": CSRF,
        "vendor_id": vendor_id,
        "unit": "item",
        "credits_per_unit": "1",
        "reason": "As agreed.",
    }
    return client.post("/ops/labelling/prices", data=price | fields)


def test_a_price_from_a_moment_past_year_9999_in_utc_is_a_form_error_and_saves_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    vendor_id = priced_vendor(session, "Acme", Adapter.INHOUSE)
    before = _count(session, PriceSheet)
    response = _post_price(
        client_for(app, world, "ops"), str(vendor_id), effective_from=f"{LAST_DAY}T23:00-05:00"
    )
    _refused(response, 400, "give a date and time, or leave it blank for now")
    assert _count(session, PriceSheet) == before


# Ids longer than the database holds.


def test_an_adjustment_to_an_account_id_too_long_for_the_database_is_a_form_error_and_moves_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    before = _count(session, Transfer)
    response = client_for(app, world, "ops").post(
        "/ops/adjustments",
        data={"csrf_token": CSRF, "account_id": TOO_LONG_ID, "amount": "1", "reason": "Fix."},
    )
    _refused(response, 400, "choose an account")
    assert _count(session, Transfer) == before


def test_a_price_for_a_vendor_id_too_long_for_the_database_is_a_form_error_and_saves_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    priced_vendor(session, "Acme", Adapter.INHOUSE)  # the price form lists vendors
    before = _count(session, PriceSheet)
    response = _post_price(client_for(app, world, "ops"), TOO_LONG_ID)
    _refused(response, 400, "choose a vendor")
    assert _count(session, PriceSheet) == before


def test_assigning_a_reviewer_id_too_long_for_the_database_is_a_form_error_and_assigns_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    before = _count(session, ReviewAssignment)
    response = client_for(app, world, "funder_p").post(
        f"/funder/proposals/{world.proposal_in_review}/reviewers",
        data={"csrf_token": CSRF, "reviewer": TOO_LONG_ID},
    )
    _refused(response, 400, "choose a reviewer")
    assert _count(session, ReviewAssignment) == before


def test_applying_for_a_project_id_too_long_for_the_database_is_a_form_error_and_saves_nothing(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    before = _count(session, Proposal)
    response = client_for(app, world, "researcher_a").post(
        f"/programs/{world.program_p}/apply", data=_proposal_form(project_id=TOO_LONG_ID)
    )
    _refused(response, 422, "choose one of your projects")
    assert _count(session, Proposal) == before


@pytest.mark.parametrize("page", ["/ops/projects?after=", "/ops/audit?before="])
def test_a_paging_cursor_too_long_for_an_id_is_ignored_and_shows_the_first_page(
    app: Flask, session: Session, page: str
) -> None:
    world = build_world(session)
    client = client_for(app, world, "ops")
    first = client.get(page.partition("?")[0])
    response = client.get(page + TOO_LONG_ID)
    assert response.status_code == 200
    assert text_of(response.get_data(as_text=True)) == text_of(first.get_data(as_text=True))


# Percentages Python reads as floats but no fee can be.


@pytest.mark.parametrize("fee", ["inf", "-inf", "1e400", "nan"])
def test_a_labelling_fee_that_is_not_a_finite_number_is_a_form_error_and_saves_nothing(
    app: Flask, session: Session, fee: str
) -> None:
    world = build_world(session)
    vendor_id = priced_vendor(session, "Acme", Adapter.INHOUSE)
    before = _count(session, PriceSheet)
    response = _post_price(client_for(app, world, "ops"), str(vendor_id), fee_percent=fee)
    _refused(response, 400, "give a percentage from 0 to 100")
    assert _count(session, PriceSheet) == before
