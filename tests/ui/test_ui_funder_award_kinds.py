"""The funder's decision form follows the proposal's kind, as the award service takes it.

A new proposal is awarded amounts and a period; a supplement one amount in its
allocation's currency (the allocation keeps its dates); an extension a later end
date and no credits. Awarded through the portal, each changes the allocation as
the service does; a refusal is shown at its field. The confirmation page states
what waits in tranches per currency.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_world import SYSTEM, World, build_world
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, flows_app, text_of

from credits.db import utcnow
from credits.grants import funding, proposals
from credits.grants.models import Allocation, ProjectMember, Proposal, Tranche
from credits.identity.models import Role
from credits.identity.service import actor_for_email, grant_role
from credits.ledger.models import Account, Currency

MICRO = 1_000_000
OVERRIDE = "decided before the reviews"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


def _submitted(session: Session, world: World, kind: str, **content: Any) -> int:
    """Project A's submitted supplement or extension of the world's allocation."""
    pi = actor_for_email(session, "researcher_a@example.org")
    proposal = proposals.create_proposal(
        session,
        program_id=world.program_p,
        project_id=world.project_a,
        kind=kind,
        actor=pi,
        title=f"A {kind}",
        abstract="More of the same.",
        justification="The runs take longer.",
        allocation_id=world.allocation,
        **content,
    )
    proposals.submit_proposal(session, proposal_id=proposal.id, actor=pi)
    session.flush()
    return proposal.id


def _allocation(session: Session, world: World) -> tuple[Allocation, Account]:
    session.expire_all()
    allocation = session.get_one(Allocation, world.allocation)
    return allocation, session.get_one(Account, allocation.account_id)


def _decide(client: FlaskClient, proposal_id: int, **fields: str) -> tuple[str, Any]:
    """The confirmation page's words for the award form, and the confirming POST."""
    url = f"/funder/proposals/{proposal_id}/award"
    form = {"csrf_token": CSRF, "override_reason": OVERRIDE, "key": f"k{proposal_id}", **fields}
    asked = client.post(url, data=form)
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200, text_of(page)[-600:]
    assert 'data-testid="confirm-page"' in page
    return text_of(page), lambda: client.post(url, data=form | {"confirm": "yes"})


def _names(page: str) -> set[str]:
    """The decision form's inputs among those the award service reads."""
    wanted = {"starts_at", "ends_at", *(f"amount_{c.value}" for c in Currency)}
    return {name for name in wanted if f'name="{name}"' in page}


def test_the_decision_form_shows_only_the_fields_of_the_proposals_kind(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    supplement = _submitted(session, world, "supplement", requested={"gpu": 4 * MICRO})
    later = _allocation(session, world)[0].expires_at + timedelta(days=30)
    extension = _submitted(session, world, "extension", ends_at=later)
    client = client_for(app, world, "funder_p")

    def page(proposal_id: int) -> str:
        return client.get(f"/funder/proposals/{proposal_id}").get_data(as_text=True)

    assert _names(page(world.proposal_in_review)) == {
        "starts_at",
        "ends_at",
        "amount_gpu",
        "amount_label",
    }
    supplement_page = page(supplement)
    assert _names(supplement_page) == {"amount_gpu"}
    assert 'name="amount_gpu" type="text" value="4"' in supplement_page
    assert f"allocation #{world.allocation}" in text_of(supplement_page)
    extension_page = page(extension)
    assert _names(extension_page) == {"ends_at"}
    assert f'value="{later.date().isoformat()}"' in extension_page
    assert "Left to award" not in text_of(extension_page)


def test_a_supplement_awarded_through_the_portal_adds_credits_to_its_allocation(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    proposal = _submitted(session, world, "supplement", requested={"gpu": 4 * MICRO})
    before, account = _allocation(session, world)
    awarded, posted = before.awarded_micro, account.credits_posted
    period = (before.starts_at, before.expires_at)
    effect, confirm = _decide(client_for(app, world, "funder_p"), proposal, amount_gpu="4")
    assert f"award 4 GPU credits to proposal {proposal}, A supplement" in effect
    assert f"into allocation #{world.allocation}" in effect
    assert confirm().status_code == 302
    after, account = _allocation(session, world)
    assert session.get_one(Proposal, proposal).status == "awarded"
    # Program P releases half at award; the other half waits as a tranche of the allocation.
    assert after.awarded_micro == awarded + 4 * MICRO
    assert account.credits_posted == posted + 2 * MICRO
    assert (after.starts_at, after.expires_at) == period
    tranche = session.scalars(
        select(Tranche).where(Tranche.allocation_id == world.allocation).order_by(Tranche.id.desc())
    ).first()
    assert tranche is not None and (tranche.amount_micro, tranche.status) == (2 * MICRO, "pending")
    # The decision names this award's amount beside the allocation's totals.
    shown = client_for(app, world, "funder_p").get(f"/funder/proposals/{proposal}")
    assert "This award added 4 GPU credits to the allocation." in text_of(
        shown.get_data(as_text=True)
    )


def test_an_extension_awarded_through_the_portal_moves_its_allocations_end(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    before, account = _allocation(session, world)
    awarded, posted = before.awarded_micro, account.credits_posted
    day = (before.expires_at + timedelta(days=60)).date()
    later = datetime(day.year, day.month, day.day, tzinfo=UTC)
    proposal = _submitted(session, world, "extension", ends_at=later)
    effect, confirm = _decide(client_for(app, world, "funder_p"), proposal, ends_at=day.isoformat())
    assert f"extend allocation #{world.allocation}" in effect
    assert f"to end on {day.isoformat()} (the whole day, UTC)" in effect
    assert confirm().status_code == 302
    after, account = _allocation(session, world)
    assert session.get_one(Proposal, proposal).status == "awarded"
    # The typed day is the last one: the allocation ends at the next midnight.
    assert after.expires_at == account.expires_at == later + timedelta(days=1)
    # The funder and the project's PI read the same last day.
    shown = f"{day.isoformat()} (the whole day, UTC)"
    funder_page = client_for(app, world, "funder_p").get(f"/funder/proposals/{proposal}")
    pi_page = client_for(app, world, "researcher_a").get(f"/projects/{world.project_a}")
    assert shown in text_of(funder_page.get_data(as_text=True))
    assert shown in text_of(pi_page.get_data(as_text=True))
    assert (after.awarded_micro, account.credits_posted) == (awarded, posted)


def test_an_extension_that_ends_no_later_is_refused_at_its_end_date(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    current = _allocation(session, world)[0].expires_at
    proposal = _submitted(session, world, "extension", ends_at=current + timedelta(days=30))
    response = client_for(app, world, "funder_p").post(
        f"/funder/proposals/{proposal}/award",
        data={
            "csrf_token": CSRF,
            "ends_at": (current - timedelta(days=2)).date().isoformat(),
            "override_reason": OVERRIDE,
            "key": "early",
        },
    )
    assert response.status_code == 422
    refusal = f"an extension must end after allocation {world.allocation}&#39;s last day"
    assert f'id="e-ends_at">{refusal}' in (response.get_data(as_text=True))
    assert session.get_one(Proposal, proposal).status == "submitted"
    assert _allocation(session, world)[0].expires_at == current


def test_a_supplement_without_an_amount_is_refused_at_its_amount(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    proposal = _submitted(session, world, "supplement", requested={"gpu": 4 * MICRO})
    response = client_for(app, world, "funder_p").post(
        f"/funder/proposals/{proposal}/award",
        data={"csrf_token": CSRF, "amount_gpu": " ", "override_reason": OVERRIDE, "key": "none"},
    )
    assert response.status_code == 400
    assert 'id="e-amount_gpu">award an amount' in response.get_data(as_text=True)
    assert session.get_one(Proposal, proposal).status == "submitted"


def test_the_award_confirmation_states_what_waits_in_tranches_per_currency(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    funding.fund_program(
        session,
        program_id=world.program_p,
        currency=Currency.LABEL,
        amount_micro=100 * MICRO,
        key="label-pool",
        actor=actor_for_email(session, "funder_p@example.org"),
        reason="FY27",
    )
    session.flush()
    today = utcnow().date()
    effect, _ = _decide(
        client_for(app, world, "funder_p"),
        world.proposal_in_review,
        amount_gpu="100",
        amount_label="10",
        starts_at=today.isoformat(),
        ends_at=(today + timedelta(days=30)).isoformat(),
    )
    assert "award 100 GPU credits, 10 labelling credits" in effect
    assert "50 GPU credits, 5 labelling credits of it wait in tranches" in effect
    assert "55 credits" not in effect


def test_an_owner_on_the_applying_project_sees_its_page_without_reviews_or_decision(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    funder = client_for(app, world, "funder_p")
    page = f"/funder/proposals/{world.proposal_in_review}"
    assert "reviewer@example.org" in funder.get(page).get_data(as_text=True)
    owner = actor_for_email(session, "funder_p@example.org")
    grant_role(session, email="funder_p@example.org", role=Role.RESEARCHER, actor=SYSTEM)
    # add_member refuses an owner while the proposal is in review; a membership from
    # before that rule (or a race with it) must still hide the reviews.
    member = ProjectMember(
        project_id=world.project_a, user_id=world.user_ids["funder_p"], role="member"
    )
    session.add(member)
    session.flush()
    assert owner.user_id == world.user_ids["funder_p"]

    funder = client_for(app, world, "funder_p")  # a role granted ends the old session
    html = funder.get(page).get_data(as_text=True)
    assert 'data-testid="reviews-withheld"' in html
    assert "reviewer@example.org" not in html
    assert f"/funder/proposals/{world.proposal_in_review}/award" not in html
    queue = text_of(funder.get(f"/funder/programs/{world.program_p}").get_data(as_text=True))
    assert "withheld" in queue
