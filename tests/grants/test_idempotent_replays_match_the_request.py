"""An Idempotency-Key replays an award or a tranche release only for the same request from
the same caller; any other request with the key is 422 ``idempotency-key-reused``
(README, ``Idempotency-Key``), never the first answer replayed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from api.api_helpers import joined_app
from api_world import FUNDER_P, OPS, World, build_world
from flask.testing import FlaskClient
from proposal_helpers import CREDIT, awarded, full_state, refused, reviewed
from proposal_helpers import World as GrantsWorld
from proposal_helpers import world as grants_world
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from credits.db import utcnow
from credits.grants.awards import award_proposal
from credits.ledger.errors import IdempotencyKeyReused

REUSED = "idempotency-key-reused"


@pytest.fixture
def api(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> tuple[World, FlaskClient]:
    return build_world(session), joined_app(joined_session_factory).test_client()


def _problem_type(response: TestResponse) -> str:
    body = response.get_json()
    assert isinstance(body, dict), response.data
    return str(body.get("type", "")).rpartition("/")[2]


def _award_body() -> dict[str, Any]:
    now = utcnow()
    return {
        "amounts": {"gpu": 1_000_000},
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(days=90)).isoformat(),
        "override_reason": "urgent",
        "reason": "strong plan",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"ends_at": (utcnow() + timedelta(days=400)).isoformat()},
        {"starts_at": (utcnow() + timedelta(days=1)).isoformat()},
        {"reason": "another reason"},
        {"reason": None},
        {"override_reason": "another override"},
    ],
    ids=["ends_at", "starts_at", "reason", "no reason", "override_reason"],
)
def test_an_award_retried_with_the_key_but_another_field_is_refused_as_key_reused(
    api: tuple[World, FlaskClient], change: dict[str, Any]
) -> None:
    w, client = api
    url = f"/api/v1/proposals/{w.proposal_in_review}/award"
    headers = w.headers[FUNDER_P] | {"Idempotency-Key": "aw-1"}
    body = _award_body()
    first = client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.get_json()

    again = client.post(url, json=body | change, headers=headers)

    assert again.status_code == 422, again.get_json()
    assert _problem_type(again) == REUSED
    replayed = client.post(url, json=body, headers=headers)
    assert replayed.status_code == 201 and replayed.get_json()["replayed"] is True
    assert replayed.get_json()["ends_at"] == first.get_json()["ends_at"]


def test_an_award_retried_with_the_same_body_in_another_timezone_replays(
    api: tuple[World, FlaskClient],
) -> None:
    w, client = api
    url = f"/api/v1/proposals/{w.proposal_in_review}/award"
    headers = w.headers[FUNDER_P] | {"Idempotency-Key": "aw-1"}
    body = _award_body()
    assert client.post(url, json=body, headers=headers).status_code == 201
    ends = datetime.fromisoformat(body["ends_at"]).astimezone(timezone(timedelta(hours=-5)))
    same_instant = body | {"ends_at": ends.isoformat(), "reason": "  strong plan "}

    again = client.post(url, json=same_instant, headers=headers)

    assert again.status_code == 201, again.get_json()
    assert again.get_json()["replayed"] is True


def test_an_extension_retried_with_a_later_end_is_refused_not_silently_dropped(
    any_session: Session,
) -> None:
    w = grants_world(any_session)
    (allocation,) = awarded(any_session, w).allocations
    later = allocation.expires_at + timedelta(days=90)
    proposal = _proposal_for(any_session, w, "extension", allocation.id, ends_at=later)
    extend = {"proposal_id": proposal, "actor": w.fay, "key": "e", "amounts": {}}
    award_proposal(any_session, **extend, ends_at=later)

    refused(
        any_session,
        IdempotencyKeyReused,
        award_proposal,
        **extend,
        ends_at=later + timedelta(days=30),
    )
    assert award_proposal(any_session, **extend, ends_at=later).replayed


def test_a_supplement_retried_with_the_same_request_replays(any_session: Session) -> None:
    w = grants_world(any_session)
    (allocation,) = awarded(any_session, w).allocations
    proposal = _proposal_for(any_session, w, "supplement", allocation.id, ends_at=None)
    supplement = {
        "proposal_id": proposal,
        "actor": w.fay,
        "key": "s",
        "amounts": {"gpu": 20 * CREDIT},
    }
    award_proposal(any_session, **supplement)
    before = full_state(any_session)

    assert award_proposal(any_session, **supplement).replayed
    assert full_state(any_session) == before
    refused(any_session, IdempotencyKeyReused, award_proposal, **supplement, reason="more")


def _proposal_for(
    session: Session, w: GrantsWorld, kind: str, allocation_id: int, **dates: Any
) -> int:
    requested = {"gpu": 20 * CREDIT} if kind == "supplement" else {}
    proposal = reviewed(
        session,
        w,
        kind=kind,
        allocation_id=allocation_id,
        requested=requested,
        starts_at=None,
        **dates,
    )
    return proposal.id


def _release(client: FlaskClient, w: World, persona: str, key: str, report: str) -> TestResponse:
    return client.post(
        f"/api/v1/tranches/{w.tranche}/release",
        json={"progress_report": report},
        headers=w.headers[persona] | {"Idempotency-Key": key},
    )


def test_a_tranche_release_retried_by_another_caller_or_with_another_report_is_refused(
    api: tuple[World, FlaskClient],
) -> None:
    w, client = api
    first = _release(client, w, FUNDER_P, "t-1", "report A")
    assert first.status_code == 200, first.get_json()

    other_caller = _release(client, w, OPS, "t-1", "report A")
    other_report = _release(client, w, FUNDER_P, "t-1", "different report")

    for refusal in (other_caller, other_report):
        assert refusal.status_code == 422, refusal.get_json()
        assert _problem_type(refusal) == REUSED
    same = _release(client, w, FUNDER_P, "t-1", "  report A ")
    assert same.status_code == 200 and same.get_json() == first.get_json()
