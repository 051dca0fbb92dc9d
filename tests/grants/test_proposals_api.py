"""Proposal, review, award and allocation routes: status codes, problem details, reach."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from grants_helpers import joined_app
from proposal_helpers import CREDIT, World, awarded, drafted, reviewed, submitted, world
from sqlalchemy.orm import Session, sessionmaker

from credits.api.problems import PROBLEM_MEDIA_TYPE
from credits.db import utcnow
from credits.identity.actor import Actor
from credits.identity.tokens import create_token

Headers = dict[str, str]


@pytest.fixture
def client(joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    return joined_app(joined_session_factory).test_client()


@pytest.fixture
def w(session: Session) -> World:
    return world(session)


def _headers(session: Session, actor: Actor, *scopes: str) -> Headers:
    assert actor.email is not None
    created = create_token(session, email=actor.email, actor=actor, scopes=scopes)
    session.flush()
    return {"Authorization": f"Bearer {created.secret}"}


@pytest.fixture
def h(session: Session, w: World) -> dict[str, Headers]:
    names = ("ops", "fay", "otto", "pia", "mia", "mo", "max")
    headers = {name: _headers(session, getattr(w, name)) for name in names}
    for index, reviewer in enumerate(w.reviewers):
        headers[f"rev{index}"] = _headers(session, reviewer)
    headers["pia-read"] = _headers(session, w.pia, "read")
    return headers


def _problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.get_json()
    assert body["type"].endswith(slug)
    assert body["status"] == status
    return body


def _create_body(w: World, **overrides: Any) -> dict[str, Any]:
    now = utcnow()
    body = {
        "program_id": w.program_id,
        "project_id": w.project_id,
        "kind": "new",
        "title": "Emulators",
        "abstract": "Ice.",
        "justification": "GPUs.",
        "requested": {"gpu": 50 * CREDIT},
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(days=90)).isoformat(),
    }
    return body | overrides


def test_a_proposal_goes_from_draft_to_award_over_the_api(
    client: FlaskClient, w: World, h: dict[str, Headers]
) -> None:
    created = client.post("/api/v1/proposals", json=_create_body(w), headers=h["pia"])
    assert created.status_code == 201, created.get_json()
    pid = created.get_json()["id"]
    assert (
        client.patch(f"/api/v1/proposals/{pid}", json={"title": "T2"}, headers=h["mia"]).status_code
        == 200
    )
    sent = client.post(f"/api/v1/proposals/{pid}/submit", headers=h["pia"])
    assert sent.get_json()["status"] == "submitted"
    for index in (0, 1):
        user_id = w.reviewers[index].user_id
        assigned = client.post(
            f"/api/v1/proposals/{pid}/reviewers", json={"user_id": user_id}, headers=h["fay"]
        )
        assert assigned.status_code == 201, assigned.get_json()
        review = client.put(
            f"/api/v1/proposals/{pid}/review",
            json={"scores": {"merit": 4, "fit": 4}, "comment": "Good."},
            headers=h[f"rev{index}"],
        )
        assert review.status_code == 200, review.get_json()
    summary = client.get(f"/api/v1/proposals/{pid}/reviews", headers=h["fay"]).get_json()
    assert summary["mean_score"] == 400
    body = {
        "amounts": {"gpu": 50 * CREDIT},
        "starts_at": utcnow().isoformat(),
        "ends_at": (utcnow() + timedelta(days=90)).isoformat(),
    }
    _problem(
        client.post(f"/api/v1/proposals/{pid}/award", json=body, headers=h["fay"]),
        400,
        "idempotency-key-required",
    )
    headers = h["fay"] | {"Idempotency-Key": "award-7"}
    award = client.post(f"/api/v1/proposals/{pid}/award", json=body, headers=headers)
    assert award.status_code == 201, award.get_json()
    (allocation,) = award.get_json()["allocations"]
    again = client.post(f"/api/v1/proposals/{pid}/award", json=body, headers=headers)
    assert again.get_json()["replayed"] is True
    listed = client.get(f"/api/v1/allocations?project_id={w.project_id}", headers=h["mo"])
    assert [a["id"] for a in listed.get_json()["items"]] == [allocation["id"]]
    got = client.get(f"/api/v1/allocations/{allocation['id']}", headers=h["pia"])
    assert got.get_json()["available_micro"] == 50 * CREDIT
    _problem(
        client.get(f"/api/v1/allocations/{allocation['id']}", headers=h["max"]),
        404,
        "allocation-not-found",
    )
    _problem(
        client.get(f"/api/v1/allocations/{allocation['id']}", headers=h["otto"]),
        404,
        "allocation-not-found",
    )


def test_no_token_is_401(client: FlaskClient, w: World) -> None:
    _problem(client.get("/api/v1/proposals"), 401, "authentication-required")
    _problem(client.post("/api/v1/proposals", json=_create_body(w)), 401, "authentication-required")


def test_a_read_token_cannot_draft(client: FlaskClient, w: World, h: dict[str, Headers]) -> None:
    _problem(
        client.post("/api/v1/proposals", json=_create_body(w), headers=h["pia-read"]),
        403,
        "missing-scope",
    )


def test_out_of_reach_proposals_answer_404(
    session: Session, client: FlaskClient, w: World, h: dict[str, Headers]
) -> None:
    draft = drafted(session, w)
    for name in ("max", "otto", "fay", "rev0"):
        _problem(
            client.get(f"/api/v1/proposals/{draft.id}", headers=h[name]), 404, "proposal-not-found"
        )
    assert client.get(f"/api/v1/proposals/{draft.id}", headers=h["mo"]).status_code == 200
    assert client.get(f"/api/v1/proposals/{draft.id}", headers=h["ops"]).status_code == 200
    _problem(client.get("/api/v1/proposals/999999", headers=h["ops"]), 404, "proposal-not-found")
    _problem(
        client.post("/api/v1/proposals", json=_create_body(w), headers=h["max"]),
        404,
        "project-not-found",
    )


def test_listing_shows_what_each_role_may_see(
    session: Session, client: FlaskClient, w: World, h: dict[str, Headers]
) -> None:
    draft = drafted(session, w)
    sent = submitted(session, w)

    def ids(name: str, query: str = "") -> list[int]:
        response = client.get(f"/api/v1/proposals{query}", headers=h[name])
        return [item["id"] for item in response.get_json()["items"]]

    assert ids("pia") == [draft.id, sent.id]
    assert ids("fay") == [sent.id]
    assert ids("otto") == []
    assert ids("max") == []
    assert ids("rev0") == []
    assert ids("ops", "?status=draft") == [draft.id]
    page = client.get("/api/v1/proposals?limit=1", headers=h["pia"])
    assert page.get_json()["next_cursor"] == draft.id
    assert 'rel="next"' in page.headers["Link"]


def test_a_conflicted_reviewer_gets_404(
    session: Session, client: FlaskClient, w: World, h: dict[str, Headers]
) -> None:
    sent = submitted(session, w)
    client.post(
        f"/api/v1/proposals/{sent.id}/reviewers",
        json={"user_id": w.reviewers[0].user_id},
        headers=h["fay"],
    )
    assert client.get(f"/api/v1/proposals/{sent.id}", headers=h["rev0"]).status_code == 200
    declared = client.post(
        f"/api/v1/proposals/{sent.id}/conflict", json={"reason": "co-author"}, headers=h["rev0"]
    )
    assert declared.status_code == 200, declared.get_json()
    _problem(
        client.get(f"/api/v1/proposals/{sent.id}", headers=h["rev0"]), 404, "proposal-not-found"
    )
    _problem(
        client.put(
            f"/api/v1/proposals/{sent.id}/review",
            json={"scores": {"merit": 4, "fit": 4}, "comment": "x"},
            headers=h["rev0"],
        ),
        404,
        "proposal-not-found",
    )
    _problem(
        client.post(
            f"/api/v1/proposals/{sent.id}/reviewers",
            json={"user_id": w.reviewers[0].user_id},
            headers=h["fay"],
        ),
        409,
        "reviewer-conflicted",
    )


def test_wrong_state_is_409_with_the_current_status(
    session: Session, client: FlaskClient, w: World, h: dict[str, Headers]
) -> None:
    sent = submitted(session, w)
    body = _problem(
        client.post(f"/api/v1/proposals/{sent.id}/submit", headers=h["pia"]),
        409,
        "proposal-status-conflict",
    )
    assert body["current_status"] == "submitted"
    _problem(
        client.patch(f"/api/v1/proposals/{sent.id}", json={"title": "x"}, headers=h["pia"]),
        409,
        "proposal-status-conflict",
    )


def test_bad_input_is_422(
    session: Session, client: FlaskClient, w: World, h: dict[str, Headers]
) -> None:
    _problem(
        client.post(
            "/api/v1/proposals", json=_create_body(w, requested={"gpu": -1}), headers=h["pia"]
        ),
        422,
        "invalid-proposal",
    )
    _problem(
        client.post(
            "/api/v1/proposals",
            json=_create_body(w, ends_at="2020-01-01T00:00:00"),
            headers=h["pia"],
        ),
        422,
        "invalid-input",
    )
    draft = drafted(session, w, abstract="")
    body = _problem(
        client.post(f"/api/v1/proposals/{draft.id}/submit", headers=h["pia"]),
        422,
        "incomplete-proposal",
    )
    assert body["missing"] == ["abstract"]


def test_an_over_budget_award_is_402(
    session: Session, client: FlaskClient, w: World, h: dict[str, Headers]
) -> None:
    proposal = reviewed(session, w, requested={"gpu": 5000 * CREDIT})
    body = {
        "amounts": {"gpu": 5000 * CREDIT},
        "starts_at": utcnow().isoformat(),
        "ends_at": (utcnow() + timedelta(days=30)).isoformat(),
    }
    response = client.post(
        f"/api/v1/proposals/{proposal.id}/award",
        json=body,
        headers=h["fay"] | {"Idempotency-Key": "k"},
    )
    _problem(response, 402, "insufficient-credits")
    assert (
        client.get(f"/api/v1/proposals/{proposal.id}", headers=h["fay"]).get_json()["status"]
        == "in_review"
    )
    assert client.get("/api/v1/allocations", headers=h["ops"]).get_json()["items"] == []


def test_a_funder_of_another_program_cannot_decide(
    session: Session, client: FlaskClient, w: World, h: dict[str, Headers]
) -> None:
    proposal = reviewed(session, w)
    _problem(
        client.post(f"/api/v1/proposals/{proposal.id}/reject", headers=h["otto"]),
        404,
        "proposal-not-found",
    )
    _problem(
        client.post(f"/api/v1/proposals/{proposal.id}/reject", headers=h["rev0"]),
        403,
        "proposal-forbidden",
    )
    rejected = client.post(
        f"/api/v1/proposals/{proposal.id}/reject", json={"reason": "budget"}, headers=h["fay"]
    )
    assert rejected.get_json()["status"] == "rejected"


def test_a_tranche_is_released_with_a_key(session: Session, client: FlaskClient) -> None:
    w = world(session, initial_share_percent=50)
    fay, max_ = _headers(session, w.fay), _headers(session, w.max)
    (tranche,) = awarded(session, w).tranches
    url = f"/api/v1/tranches/{tranche.id}/release"
    report = {"progress_report": "Half the runs are done."}
    _problem(client.post(url, json=report, headers=fay), 400, "idempotency-key-required")
    released = client.post(url, json=report, headers=fay | {"Idempotency-Key": "t1"})
    assert released.status_code == 200, released.get_json()
    assert released.get_json()["status"] == "released"
    again = client.post(url, json=report, headers=max_ | {"Idempotency-Key": "t2"})
    _problem(again, 404, "tranche-not-found")
