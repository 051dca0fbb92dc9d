"""A refusal names nothing the caller may not see: probing user ids through the routes
that take one never reveals an e-mail address (issue 12, finding 9).

Each route that names a user by id (a reviewer to assign, an owner to add, a member
to add) is called with every user id of tests/api_world.py and a few that do not
exist, by a caller allowed to use it; every refusal's body is searched for every
user's e-mail address. Each request runs in a SAVEPOINT rolled back afterwards, as in
the access matrix, so an accepted one does not change what the next one meets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from api_world import FUNDER_P, RESEARCHER_A, World, build_world, world_executor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.identity.models import User
from credits.settings import load_settings

MISSING_IDS = (0, 987_654)

# (caller, URL, body for a user id)
PROBES: dict[str, tuple[str, Callable[[World], str], Callable[[int], dict[str, Any]]]] = {
    "assign a reviewer": (
        FUNDER_P,
        lambda world: f"/api/v1/proposals/{world.proposal_in_review}/reviewers",
        lambda user_id: {"user_id": user_id},
    ),
    "add a program owner": (
        FUNDER_P,
        lambda world: f"/api/v1/programs/{world.program_p}/owners",
        lambda user_id: {"user_id": user_id},
    ),
    "add a project member": (
        RESEARCHER_A,
        lambda world: f"/api/v1/projects/{world.project_a}/members",
        lambda user_id: {"user_id": user_id, "role": "member"},
    ),
}


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _post(
    client: FlaskClient, session: Session, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, str]:
    savepoint = session.connection().begin_nested()
    try:
        response = client.post(url, json=body, headers=headers)
    finally:
        savepoint.rollback()
    return response.status_code, response.get_data(as_text=True)


@pytest.mark.parametrize("probe", list(PROBES))
def test_probing_user_ids_reveals_no_email(app: Flask, session: Session, probe: str) -> None:
    world = build_world(session)
    caller, url, body = PROBES[probe]
    users = list(session.execute(select(User.id, User.email)))
    emails = [email for _, email in users]
    client = app.test_client()

    refusals = {}
    for user_id in [*(uid for uid, _ in users), *MISSING_IDS]:
        status, text = _post(client, session, url(world), body(user_id), world.headers[caller])
        if status >= 400:
            refusals[user_id] = text

    leaks = {uid: [e for e in emails if e in text] for uid, text in refusals.items()}
    assert not {uid: found for uid, found in leaks.items() if found}
    assert len(refusals) >= len(MISSING_IDS) + 2, "too few refusals to prove anything"
