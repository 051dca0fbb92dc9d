"""Proposal kinds, withdrawing and the outcome on the researcher's proposal page.

The new-proposal form offers new, renewal, supplement and extension, each with
the fields it needs; the PI withdraws after a confirmation, with a reason; once
decided, the page shows the award, the decision's reason and the reviews
without naming who wrote them. Bad input is shown on the form and saves nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from api_world import SYSTEM, World, build_world
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, flows_app, text_of
from ui_sign_in import sign_in_as

from credits import formatting as fmt
from credits.audit.models import AuditEvent
from credits.db import utcnow
from credits.grants import awards, reviews
from credits.grants.models import Allocation, Award, Proposal, ProposalStatus
from credits.identity.service import actor_for_email


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


def _proposals(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Proposal)) or 0


def _latest(session: Session) -> Proposal:
    session.expire_all()
    found = session.scalars(select(Proposal).order_by(Proposal.id.desc())).first()
    assert found is not None
    return found


def _apply(client: FlaskClient, world: World, **fields: str) -> Any:
    texts = {"title": "More", "abstract": "Why.", "justification": "Because."}
    form = {"csrf_token": CSRF, "action": "submit", **texts, **fields}
    return client.post(f"/programs/{world.program_p}/apply", data=form)


def _refused(app: Flask, session: Session, world: World, persona: str, **fields: str) -> str:
    """The page's words after a refused application, checking that nothing was saved."""
    before = _proposals(session)
    response = _apply(client_for(app, world, persona), world, **fields)
    assert response.status_code == 422
    assert _proposals(session) == before
    return response.get_data(as_text=True)


def test_the_form_offers_each_kind_with_the_fields_it_needs(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    base = f"/programs/{world.program_p}/apply"
    page = client.get(base).get_data(as_text=True)
    for kind in ("renewal", "supplement", "extension"):
        assert f'href="{base}?kind={kind}"' in page
    assert 'name="starts_on"' in page
    supplement = client.get(f"{base}?kind=supplement").get_data(as_text=True)
    assert f'<option value="{world.allocation}"' in supplement
    assert 'name="requested_extra"' in supplement
    assert 'name="starts_on"' not in supplement
    extension = client.get(f"{base}?kind=extension").get_data(as_text=True)
    assert 'name="ends_on"' in extension
    assert 'name="requested_gpu"' not in extension
    assert 'name="requested_extra"' not in extension


def test_a_supplement_asks_for_credits_in_the_allocations_currency(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    response = _apply(
        client, world, kind="supplement", allocation_id=str(world.allocation), requested_extra="5"
    )
    assert response.status_code == 302, text_of(response.get_data(as_text=True))[-400:]
    made = _latest(session)
    assert (made.kind, made.status, made.allocation_id) == (
        "supplement",
        "submitted",
        world.allocation,
    )
    assert made.requested == {"gpu": 5_000_000}
    assert made.project_id == world.project_a


def test_an_extension_asks_for_a_later_end_and_no_credits(app: Flask, session: Session) -> None:
    world = build_world(session)
    ends = session.get(Allocation, world.allocation)
    assert ends is not None
    later = (ends.expires_at + timedelta(days=30)).date().isoformat()
    client = client_for(app, world, "researcher_a")
    response = _apply(
        client, world, kind="extension", allocation_id=str(world.allocation), ends_on=later
    )
    assert response.status_code == 302
    made = _latest(session)
    assert (made.kind, made.status, made.requested) == ("extension", "submitted", {})
    # The typed day is the last one: the proposal's end is the next midnight.
    assert made.ends_at is not None
    assert (made.ends_at - timedelta(days=1)).date().isoformat() == later
    assert made.ends_at.time() == time(0, 0)


def test_an_extension_to_the_end_of_the_allocations_last_day_is_accepted(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    allocation = session.get_one(Allocation, world.allocation)
    # It ends during its last day: extending to that whole day is later.
    assert allocation.expires_at.time() != time(0, 0)
    last = fmt.last_day(allocation.expires_at)
    client = client_for(app, world, "researcher_a")
    response = _apply(
        client, world, kind="extension", allocation_id=str(world.allocation), ends_on=str(last)
    )
    assert response.status_code == 302, text_of(response.get_data(as_text=True))[-400:]
    assert _latest(session).ends_at == datetime.combine(last + timedelta(days=1), time(0, 0), UTC)


def test_a_renewal_asks_for_credits_and_a_period(app: Flask, session: Session) -> None:
    world = build_world(session)
    today = utcnow().date()
    response = _apply(
        client_for(app, world, "researcher_a"),
        world,
        kind="renewal",
        project_id=str(world.project_a),
        requested_gpu="10",
        starts_on=(today + timedelta(days=1)).isoformat(),
        ends_on=(today + timedelta(days=60)).isoformat(),
    )
    assert response.status_code == 302
    assert (_latest(session).kind, _latest(session).requested) == ("renewal", {"gpu": 10_000_000})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "supplement", "requested_extra": "5"}, "choose one of your current allocations"),
        ({"kind": "extension", "allocation_id": "999999", "ends_on": "2030-01-01"}, "choose one"),
        ({"kind": "gift", "project_id": "1"}, "choose new, renewal, supplement or extension"),
        ({"kind": "supplement", "requested_extra": "lots"}, "choose one of your current"),
        ({"kind": "extension", "ends_on": "next year"}, "enter a date as YYYY-MM-DD"),
    ],
)
def test_bad_input_is_shown_on_the_form_and_saves_nothing(
    app: Flask, session: Session, fields: dict[str, str], message: str
) -> None:
    world = build_world(session)
    form = dict(fields)
    if fields.get("kind") in {"supplement", "extension"} and "allocation_id" not in fields:
        form["allocation_id"] = "" if "requested_extra" in fields else str(world.allocation)
    assert message in text_of(_refused(app, session, world, "researcher_a", **form))


def test_a_supplement_without_an_amount_is_not_submitted(app: Flask, session: Session) -> None:
    world = build_world(session)
    allocation = str(world.allocation)
    page = _refused(
        app, session, world, "researcher_a", kind="supplement", allocation_id=allocation
    )
    assert 'id="e-requested_extra">needed before you submit' in page


def test_another_projects_allocation_cannot_be_named(app: Flask, session: Session) -> None:
    world = build_world(session)
    page = _refused(
        app,
        session,
        world,
        "researcher_b",
        kind="supplement",
        allocation_id=str(world.allocation),
        requested_extra="5",
    )
    assert "None of your projects has a current allocation from this program" in text_of(page)


def test_withdrawing_asks_first_then_records_the_reason(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    url = f"/applications/{world.proposal_in_review}/withdraw"
    page = client.get(f"/applications/{world.proposal_in_review}").get_data(as_text=True)
    assert f'action="{url}"' in page
    first = client.post(url, data={"csrf_token": CSRF, "reason": "funded elsewhere"})
    assert "You are about to withdraw the proposal Ice sheet models" in text_of(
        first.get_data(as_text=True)
    )
    assert session.get(Proposal, world.proposal_in_review).status == "in_review"  # type: ignore[union-attr]
    done = client.post(
        url, data={"csrf_token": CSRF, "reason": "funded elsewhere", "confirm": "yes"}
    )
    assert done.status_code == 302
    session.expire_all()
    assert session.get(Proposal, world.proposal_in_review).status == "withdrawn"  # type: ignore[union-attr]
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "proposal.withdrawn")
    ).one()
    assert "funded elsewhere" in event.canonical_json
    after = client.get(f"/applications/{world.proposal_in_review}").get_data(as_text=True)
    assert f'action="{url}"' not in after


def _awarded_proposal(session: Session, world: World) -> int:
    allocation = session.get(Allocation, world.allocation)
    assert allocation is not None
    award = session.get(Award, allocation.award_id)
    assert award is not None
    return award.proposal_id


def test_a_decided_proposal_cannot_be_withdrawn(app: Flask, session: Session) -> None:
    world = build_world(session)
    awarded = _awarded_proposal(session, world)
    client = client_for(app, world, "researcher_a")
    assert "/withdraw" not in client.get(f"/applications/{awarded}").get_data(as_text=True)
    response = client.post(f"/applications/{awarded}/withdraw", data={"csrf_token": CSRF})
    assert response.status_code == 409
    assert "Nothing was changed" in text_of(response.get_data(as_text=True))
    assert session.get(Proposal, awarded).status == "awarded"  # type: ignore[union-attr]


def test_the_pi_sees_the_award_and_its_reason(app: Flask, session: Session) -> None:
    world = build_world(session)
    awarded = _awarded_proposal(session, world)
    page = client_for(app, world, "researcher_a").get(f"/applications/{awarded}")
    text = text_of(page.get_data(as_text=True))
    assert "Awarded 2 GPU credits" in text
    assert "released after a progress report" in text
    assert "Reason" in text


def _review_and_reject(session: Session, world: World) -> None:
    reviewer = actor_for_email(session, "reviewer@example.org")
    reviews.submit_review(
        session,
        proposal_id=world.proposal_in_review,
        actor=reviewer,
        scores={"merit": 2, "fit": 3},
        comment="The method is <b>unclear</b>.",
    )
    awards.reject_proposal(
        session,
        proposal_id=world.proposal_in_review,
        actor=actor_for_email(session, "funder_p@example.org"),
        reason="Too early; apply again with pilot results.",
        override_reason="one review is enough here",
    )
    session.flush()


def test_the_pi_reads_the_reviews_after_the_decision_without_the_reviewer(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    url = f"/applications/{world.proposal_in_review}"
    assert "Reviewer 1" not in client.get(url).get_data(as_text=True)
    _review_and_reject(session, world)
    page = client.get(url).get_data(as_text=True)
    text = text_of(page)
    assert "Too early; apply again with pilot results." in text
    assert "Reviewer 1" in text and "Scientific merit 2 of 5" in text and "Fit 3 of 5" in text
    assert "Mean score 2.50 of 5" in text
    assert "The method is &lt;b&gt;unclear&lt;/b&gt;." in page
    assert "reviewer@example.org" not in page
    assert SYSTEM.label not in page
    assert session.get(Proposal, world.proposal_in_review).status == ProposalStatus.REJECTED  # type: ignore[union-attr]


def test_a_plain_member_reads_the_proposal_but_is_offered_no_withdraw(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    member = app.test_client()
    sign_in_as(member, world.member_a, csrf_token=CSRF)
    page = member.get(f"/applications/{world.proposal_in_review}")
    assert page.status_code == 200
    assert "/withdraw" not in page.text


def test_a_supplement_draft_is_edited_in_its_own_fields(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    allocation = str(world.allocation)
    saved = _apply(
        client,
        world,
        action="save",
        kind="supplement",
        allocation_id=allocation,
        requested_extra="5",
    )
    assert saved.status_code == 302
    draft = _latest(session)
    page = client.get(f"/applications/{draft.id}").text
    assert 'name="requested_extra"' in page and 'value="5"' in page
    assert 'name="starts_on"' not in page
    texts = {"title": "More", "abstract": "Why.", "justification": "Because."}
    form = {"kind": "supplement", "allocation_id": allocation, "requested_extra": "7.5"}
    edited = client.post(
        f"/applications/{draft.id}", data={"csrf_token": CSRF, "action": "save", **texts, **form}
    )
    assert edited.status_code == 302
    assert _latest(session).requested == {"gpu": 7_500_000}


def test_an_extension_that_ends_by_the_allocations_last_day_names_that_day(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    allocation = session.get_one(Allocation, world.allocation)
    before = fmt.last_day(allocation.expires_at) - timedelta(days=1)
    page = _refused(
        app,
        session,
        world,
        "researcher_a",
        kind="extension",
        allocation_id=str(world.allocation),
        ends_on=str(before),
    )
    assert (
        f"an extension must end after allocation {world.allocation}&#39;s last day,"
        f" {fmt.until_day(allocation.expires_at)}"
    ) in page
    assert "needed before you submit" not in page
