"""Program and project routes: status codes, problem details, reach, pagination."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from grants_helpers import (
    CRITERIA,
    allocation,
    joined_app,
    new_program,
    new_project,
    token_headers,
    uid,
)
from sqlalchemy.orm import Session, sessionmaker

from credits.api.problems import PROBLEM_MEDIA_TYPE
from credits.db import utcnow
from credits.grants.programs import open_program
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email

Headers = dict[str, str]


class Caller:
    """A user with a token: ``headers`` to send, ``actor`` to build state as them."""

    def __init__(self, session: Session, email: str, *roles: Role, scopes: tuple[str, ...] = ()):
        self.headers: Headers = token_headers(session, email, *roles, scopes=scopes)
        self.actor: Actor = actor_for_email(session, email)
        self.id = uid(self.actor)


@pytest.fixture
def client(joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    return joined_app(joined_session_factory).test_client()


@pytest.fixture
def people(session: Session) -> dict[str, Caller]:
    return {
        "ops": Caller(session, "ops@platform.example", Role.OPS),
        "fay": Caller(session, "fay@funder.example", Role.FUNDER),
        "otto": Caller(session, "otto@funder.example", Role.FUNDER),
        "pia": Caller(session, "pia@uni.example", Role.RESEARCHER),
        "max": Caller(session, "max@uni.example", Role.RESEARCHER),
        "reader": Caller(session, "reader@uni.example", Role.RESEARCHER, scopes=("read",)),
    }


def _problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.get_json()
    assert body["type"].endswith(slug)
    assert body["status"] == status
    return body


def _program_body(**overrides: Any) -> dict[str, Any]:
    now = utcnow()
    body = {
        "name": "Compute for climate",
        "description": "GPU hours for climate models.",
        "opens_at": (now - timedelta(days=1)).isoformat(),
        "closes_at": (now + timedelta(days=30)).isoformat(),
        "criteria": CRITERIA,
        "min_reviewers": 2,
        "min_mean_score": 350,
    }
    return body | overrides


# Programs.


def test_a_funder_creates_a_program(client: FlaskClient, people: dict[str, Caller]) -> None:
    response = client.post(
        "/api/v1/programs",
        json=_program_body(initial_share_percent=25, owner_ids=[people["otto"].id]),
        headers=people["fay"].headers,
    )

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "draft"
    assert {o["email"] for o in body["owners"]} == {"fay@funder.example", "otto@funder.example"}
    assert [b["currency"] for b in body["budget"]] == ["gpu", "label"]
    assert body["initial_share_percent"] == 25


def test_creating_a_program_needs_a_token(client: FlaskClient) -> None:
    response = client.post("/api/v1/programs", json=_program_body())

    _problem(response, 401, "authentication-required")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_researcher_cannot_create_a_program(
    client: FlaskClient, people: dict[str, Caller]
) -> None:
    response = client.post("/api/v1/programs", json=_program_body(), headers=people["pia"].headers)

    _problem(response, 403, "program-forbidden")


def test_a_read_only_token_cannot_write(client: FlaskClient, people: dict[str, Caller]) -> None:
    response = client.post(
        "/api/v1/projects",
        json={"title": "Ice", "field_of_science": "Glaciology"},
        headers=people["reader"].headers,
    )

    assert _problem(response, 403, "missing-scope")["scope"] == "write"


@pytest.mark.parametrize(
    ("overrides", "locations"),
    [
        ({"colour": "red"}, {("colour",)}),
        ({"opens_at": "2030-01-01T00:00:00"}, {("opens_at",)}),
        ({"min_mean_score": 3.5, "min_reviewers": 0}, {("min_mean_score",), ("min_reviewers",)}),
        ({"criteria": [{"key": "Merit!", "label": "x"}]}, {("criteria", 0, "key")}),
    ],
)
def test_invalid_program_bodies_are_field_errors(
    client: FlaskClient,
    people: dict[str, Caller],
    overrides: dict[str, Any],
    locations: set[tuple[Any, ...]],
) -> None:
    response = client.post(
        "/api/v1/programs", json=_program_body(**overrides), headers=people["fay"].headers
    )

    body = _problem(response, 422, "invalid-input")
    assert {tuple(error["loc"]) for error in body["errors"]} == locations


def test_a_reversed_window_is_a_domain_problem(
    client: FlaskClient, people: dict[str, Caller]
) -> None:
    now = utcnow()
    body = _program_body(opens_at=now.isoformat(), closes_at=(now - timedelta(hours=1)).isoformat())

    response = client.post("/api/v1/programs", json=body, headers=people["fay"].headers)

    assert _problem(response, 422, "invalid-program")["field"] == "closes_at"


def test_a_malformed_body_is_a_problem(client: FlaskClient, people: dict[str, Caller]) -> None:
    response = client.post(
        "/api/v1/programs",
        data="{not json",
        content_type="application/json",
        headers=people["fay"].headers,
    )

    _problem(response, 400, "malformed-json")


def test_a_program_goes_through_its_states_and_refuses_the_wrong_one(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    program = new_program(session, people["fay"].actor)
    url = f"/api/v1/programs/{program.id}"
    fay = people["fay"].headers

    edited = client.patch(url, json={"name": "Renamed", "initial_share_percent": 30}, headers=fay)
    opened = client.post(f"{url}/open", headers=fay)
    again = client.post(f"{url}/open", headers=fay)
    late_edit = client.patch(url, json={"name": "Too late"}, headers=fay)
    closed = client.post(f"{url}/close", headers=fay)

    assert edited.status_code == 200
    assert (edited.get_json()["name"], edited.get_json()["initial_share_percent"]) == (
        "Renamed",
        30,
    )
    assert opened.status_code == 200
    assert opened.get_json()["status"] == "open"
    assert _problem(again, 409, "program-status-conflict")["current_status"] == "open"
    assert again.get_json()["detail"] == (
        f"program {program.id} is open; only draft programs can be opened"
    )
    _problem(late_edit, 409, "program-status-conflict")
    assert closed.get_json()["status"] == "closed"
    assert client.get(url, headers=fay).get_json()["name"] == "Renamed"


def test_a_conflict_carries_the_current_state(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    program = new_program(session, people["fay"].actor)

    response = client.post(f"/api/v1/programs/{program.id}/close", headers=people["fay"].headers)

    body = _problem(response, 409, "program-status-conflict")
    assert body["current_status"] == "draft"
    assert "is draft" in body["detail"]


def test_patch_clears_the_tranche_policy_only_when_asked(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    program = new_program(session, people["fay"].actor, initial_share_percent=50)
    url = f"/api/v1/programs/{program.id}"

    kept = client.patch(url, json={"name": "Kept"}, headers=people["fay"].headers)
    cleared = client.patch(url, json={"initial_share_percent": None}, headers=people["fay"].headers)

    assert kept.get_json()["initial_share_percent"] == 50
    assert cleared.get_json()["initial_share_percent"] is None


def test_out_of_reach_programs_answer_404_on_every_route(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    program = new_program(session, people["fay"].actor)
    url = f"/api/v1/programs/{program.id}"
    key = {"Idempotency-Key": "k1"}

    for caller in ("otto", "pia"):
        headers = people[caller].headers
        for response in (
            client.get(url, headers=headers),
            client.patch(url, json={"name": "x"}, headers=headers),
            client.post(f"{url}/open", headers=headers),
            client.post(f"{url}/close", headers=headers),
            client.post(f"{url}/owners", json={"user_id": people["otto"].id}, headers=headers),
            client.post(
                f"{url}/fund",
                json={"currency": "gpu", "amount_micro": 1, "reason": "x"},
                headers=headers | key,
            ),
        ):
            body = _problem(response, 404, "program-not-found")
            assert body["detail"] == f"no program has the id {program.id}"


def test_a_researcher_sees_an_open_call_but_cannot_run_it(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    program = new_program(session, people["fay"].actor)
    open_program(session, program_id=program.id, actor=people["fay"].actor)
    url = f"/api/v1/programs/{program.id}"

    shown = client.get(url, headers=people["pia"].headers)
    refused = client.post(f"{url}/close", headers=people["pia"].headers)

    assert shown.status_code == 200
    _problem(refused, 403, "program-forbidden")


def test_owners_are_added_once(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    program = new_program(session, people["fay"].actor)
    url = f"/api/v1/programs/{program.id}/owners"

    added = client.post(url, json={"user_id": people["otto"].id}, headers=people["fay"].headers)
    twice = client.post(url, json={"user_id": people["otto"].id}, headers=people["fay"].headers)
    researcher = client.post(url, json={"user_id": people["pia"].id}, headers=people["ops"].headers)
    missing = client.post(url, json={"user_id": 987_654}, headers=people["ops"].headers)

    assert added.status_code == 200
    assert len(added.get_json()["owners"]) == 2
    _problem(twice, 409, "already-program-owner")
    _problem(researcher, 422, "not-a-funder")
    _problem(missing, 422, "not-a-funder")


def test_funding_needs_an_idempotency_key_and_replays_by_it(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    program = new_program(session, people["fay"].actor)
    url = f"/api/v1/programs/{program.id}/fund"
    body = {"currency": "gpu", "amount_micro": 5_000_000_000, "reason": "2027 budget"}
    fay = people["fay"].headers

    missing = client.post(url, json=body, headers=fay)
    first = client.post(url, json=body, headers=fay | {"Idempotency-Key": "budget-2027"})
    again = client.post(url, json=body, headers=fay | {"Idempotency-Key": "budget-2027"})
    reused = client.post(
        url, json=body | {"amount_micro": 1}, headers=fay | {"Idempotency-Key": "budget-2027"}
    )
    zero = client.post(
        url, json=body | {"amount_micro": 0}, headers=fay | {"Idempotency-Key": "zero"}
    )

    _problem(missing, 400, "idempotency-key-required")
    assert first.status_code == 201
    assert first.get_json()["budget"]["remaining"] == 5_000_000_000
    assert first.get_json()["replayed"] is False
    assert again.get_json()["replayed"] is True
    assert again.get_json()["transfer"]["id"] == first.get_json()["transfer"]["id"]
    _problem(reused, 422, "idempotency-key-reused")
    assert _problem(zero, 422, "invalid-input")["errors"][0]["loc"] == ["amount_micro"]
    shown = client.get(f"/api/v1/programs/{program.id}", headers=fay).get_json()
    assert shown["budget"][0]["funded"] == 5_000_000_000


def test_programs_are_paged_and_filtered(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    fay = people["fay"]
    ids = [new_program(session, fay.actor, name=f"P{n}").id for n in range(3)]
    new_program(session, people["otto"].actor)
    open_program(session, program_id=ids[0], actor=fay.actor)

    first = client.get("/api/v1/programs?limit=2", headers=fay.headers)
    link = first.headers["Link"]
    second = client.get(link.split(">")[0].lstrip("<"), headers=fay.headers)
    opened = client.get("/api/v1/programs?status=open", headers=people["ops"].headers)
    owned = client.get(f"/api/v1/programs?owner={fay.id}", headers=people["ops"].headers)
    bad = client.get("/api/v1/programs?limit=0&status=maybe", headers=fay.headers)

    assert [p["id"] for p in first.get_json()["items"]] == ids[:2]
    assert first.get_json()["next_cursor"] == ids[1]
    assert "cursor=" in link
    assert 'rel="next"' in link
    assert [p["id"] for p in second.get_json()["items"]] == ids[2:]
    assert second.get_json()["next_cursor"] is None
    assert "Link" not in second.headers
    assert [p["id"] for p in opened.get_json()["items"]] == [ids[0]]
    assert [p["id"] for p in owned.get_json()["items"]] == ids
    locations = {tuple(e["loc"]) for e in _problem(bad, 422, "invalid-input")["errors"]}
    assert locations == {("limit",), ("status",)}


# Projects.


def test_a_researcher_creates_a_project_and_leads_it(
    client: FlaskClient, people: dict[str, Caller]
) -> None:
    response = client.post(
        "/api/v1/projects",
        json={"title": "Ice", "field_of_science": "Glaciology", "institution": "Polar U"},
        headers=people["pia"].headers,
    )

    assert response.status_code == 201
    body = response.get_json()
    assert body["pi_user_id"] == people["pia"].id
    assert [(m["email"], m["role"]) for m in body["members"]] == [("pia@uni.example", "pi")]


def test_project_creation_refusals(client: FlaskClient, people: dict[str, Caller]) -> None:
    body = {"title": "Ice", "field_of_science": "Glaciology"}

    funder = client.post("/api/v1/projects", json=body, headers=people["fay"].headers)
    someone_else = client.post(
        "/api/v1/projects",
        json=body | {"pi_user_id": people["max"].id},
        headers=people["pia"].headers,
    )
    no_field = client.post("/api/v1/projects", json={"title": "Ice"}, headers=people["pia"].headers)
    blank = client.post(
        "/api/v1/projects", json=body | {"title": " "}, headers=people["pia"].headers
    )
    by_ops = client.post(
        "/api/v1/projects",
        json=body | {"pi_user_id": people["max"].id},
        headers=people["ops"].headers,
    )

    _problem(funder, 403, "project-forbidden")
    _problem(someone_else, 403, "project-forbidden")
    assert _problem(no_field, 422, "invalid-input")["errors"][0]["loc"] == ["field_of_science"]
    assert _problem(blank, 422, "invalid-project")["field"] == "title"
    assert by_ops.status_code == 201
    assert by_ops.get_json()["pi_user_id"] == people["max"].id


def test_members_are_added_and_removed_by_the_pi(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    project = new_project(session, people["pia"].actor)
    url = f"/api/v1/projects/{project.id}/members"
    pia = people["pia"].headers

    added = client.post(url, json={"user_id": people["max"].id, "role": "manager"}, headers=pia)
    twice = client.post(url, json={"user_id": people["max"].id, "role": "member"}, headers=pia)
    as_pi = client.post(url, json={"user_id": people["reader"].id, "role": "pi"}, headers=pia)
    pi_out = client.delete(f"{url}/{people['pia'].id}", headers=people["max"].headers)
    removed = client.delete(f"{url}/{people['max'].id}", headers=pia)
    gone = client.delete(f"{url}/{people['max'].id}", headers=pia)

    assert added.status_code == 201
    assert {m["email"]: m["role"] for m in added.get_json()["members"]}["max@uni.example"] == (
        "manager"
    )
    assert _problem(twice, 409, "already-project-member")["role"] == "manager"
    assert _problem(as_pi, 422, "invalid-input")["errors"][0]["loc"] == ["role"]
    assert _problem(pi_out, 409, "cannot-remove-pi")["role"] == "pi"
    assert removed.status_code == 200
    assert [m["role"] for m in removed.get_json()["members"]] == ["pi"]
    _problem(gone, 404, "member-not-found")


def test_a_member_is_added_by_email_and_an_address_gives_nothing_away(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    project = new_project(session, people["pia"].actor)
    url = f"/api/v1/projects/{project.id}/members"
    pia = people["pia"].headers

    added = client.post(url, json={"email": " MAX@uni.example ", "role": "member"}, headers=pia)
    unknown = client.post(url, json={"email": "nobody@uni.example", "role": "member"}, headers=pia)
    funder = client.post(url, json={"email": "fay@funder.example", "role": "member"}, headers=pia)
    both = client.post(
        url,
        json={"user_id": people["fay"].id, "email": "max@uni.example", "role": "member"},
        headers=pia,
    )
    neither = client.post(url, json={"role": "member"}, headers=pia)
    outsider = client.post(
        url, json={"email": "pia@uni.example", "role": "member"}, headers=people["otto"].headers
    )

    assert added.status_code == 201
    assert {m["email"]: m["role"] for m in added.get_json()["members"]}["max@uni.example"] == (
        "member"
    )
    refusals = [_problem(answer, 422, "not-a-researcher") for answer in (unknown, funder)]
    # One answer whether the address has no account or an account without the role.
    assert [r["detail"].split(" e-mail ")[0] for r in refusals] == [
        "no researcher on this platform has the",
    ] * 2
    assert all(r["field"] == "email" for r in refusals)
    for answer in (both, neither):
        assert "exactly one" in _problem(answer, 422, "invalid-input")["errors"][0]["msg"]
    _problem(outsider, 404, "project-not-found")
    members = client.get(f"/api/v1/projects/{project.id}", headers=pia).get_json()["members"]
    assert sorted(m["email"] for m in members) == ["max@uni.example", "pia@uni.example"]


def test_a_member_sees_the_project_and_its_accounts_and_others_get_404(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    project = new_project(session, people["pia"].actor, (people["max"].actor, "member"))
    account = allocation(session, project.id, amount=3_000_000)
    outsider = people["reader"].headers

    shown = client.get(f"/api/v1/projects/{project.id}", headers=people["max"].headers)
    balance = client.get(f"/api/v1/accounts/{account.id}/balance", headers=people["max"].headers)
    hidden = client.get(f"/api/v1/projects/{project.id}", headers=outsider)
    hidden_account = client.get(f"/api/v1/accounts/{account.id}", headers=outsider)
    add = client.post(
        f"/api/v1/projects/{project.id}/members",
        json={"user_id": people["reader"].id, "role": "member"},
        headers=people["otto"].headers,
    )

    assert shown.status_code == 200
    assert account.id in {a["id"] for a in shown.get_json()["accounts"]}
    assert balance.get_json()["available"] == 3_000_000
    assert _problem(hidden, 404, "project-not-found")["detail"] == (
        f"no project has the id {project.id}"
    )
    _problem(hidden_account, 404, "account-not-found")
    _problem(add, 404, "project-not-found")


def test_ops_suspend_and_unsuspend_and_the_pi_archives(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    project = new_project(session, people["pia"].actor)
    url = f"/api/v1/projects/{project.id}"
    ops, pia = people["ops"].headers, people["pia"].headers

    by_pi = client.post(f"{url}/suspend", json={"reason": "x"}, headers=pia)
    no_reason = client.post(f"{url}/suspend", json={}, headers=ops)
    suspended = client.post(f"{url}/suspend", json={"reason": "audit"}, headers=ops)
    again = client.post(f"{url}/suspend", json={"reason": "audit"}, headers=ops)
    active = client.post(f"{url}/unsuspend", json={"reason": "cleared"}, headers=ops)
    not_suspended = client.post(f"{url}/unsuspend", json={"reason": "x"}, headers=ops)
    by_member = client.post(f"{url}/archive", headers=people["max"].headers)
    archived = client.post(f"{url}/archive", json={"reason": "done"}, headers=pia)
    twice = client.post(f"{url}/archive", headers=pia)

    _problem(by_pi, 403, "project-forbidden")
    assert _problem(no_reason, 422, "invalid-input")["errors"][0]["loc"] == ["reason"]
    assert suspended.get_json()["status"] == "suspended"
    assert _problem(again, 409, "project-status-conflict")["current_status"] == "suspended"
    assert active.get_json()["status"] == "active"
    _problem(not_suspended, 409, "project-status-conflict")
    _problem(by_member, 404, "project-not-found")
    assert archived.get_json()["status"] == "archived"
    assert _problem(twice, 409, "project-status-conflict")["current_status"] == "archived"


def test_projects_are_paged_and_filtered_to_the_callers(
    client: FlaskClient, people: dict[str, Caller], session: Session
) -> None:
    pia = people["pia"]
    ids = [new_project(session, pia.actor, title=f"P{n}").id for n in range(3)]
    new_project(session, people["max"].actor, title="not pia's")

    first = client.get("/api/v1/projects?limit=2", headers=pia.headers)
    second = client.get(f"/api/v1/projects?limit=2&cursor={ids[1]}", headers=pia.headers)
    everyone = client.get("/api/v1/projects?status=active", headers=people["ops"].headers)
    archived = client.get("/api/v1/projects?status=archived", headers=people["ops"].headers)
    bad = client.get("/api/v1/projects?cursor=abc", headers=pia.headers)

    assert [p["id"] for p in first.get_json()["items"]] == ids[:2]
    assert 'rel="next"' in first.headers["Link"]
    assert [p["id"] for p in second.get_json()["items"]] == ids[2:]
    assert len(everyone.get_json()["items"]) == 4
    assert archived.get_json()["items"] == []
    _problem(bad, 422, "invalid-input")


def test_the_openapi_document_lists_the_grants_routes(
    client: FlaskClient,
) -> None:
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]

    assert set(paths["/api/v1/programs/{program_id}"]) == {"get", "patch"}
    assert "201" in paths["/api/v1/programs/{program_id}/fund"]["post"]["responses"]
    assert "409" in paths["/api/v1/projects/{project_id}/suspend"]["post"]["responses"]
    assert "delete" in paths["/api/v1/projects/{project_id}/members/{user_id}"]


@pytest.mark.parametrize("opens_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_outside_any_grants_life_is_a_422_not_a_500(
    session: Session, joined_session_factory: sessionmaker[Session], opens_at: str
) -> None:
    headers = token_headers(session, "far@funder.example", Role.FUNDER)
    client = joined_app(joined_session_factory).test_client()
    body = {**_program_body(), "opens_at": opens_at}
    response = client.post("/api/v1/programs", json=body, headers=headers)
    assert response.status_code == 422, response.get_json()


@pytest.mark.parametrize("amount", [True, 1.0, "7"])
def test_funding_takes_only_integer_micro_credits(
    session: Session, joined_session_factory: sessionmaker[Session], amount: object
) -> None:
    headers = token_headers(session, "strict@funder.example", Role.FUNDER)
    client = joined_app(joined_session_factory).test_client()
    created = client.post("/api/v1/programs", json=_program_body(), headers=headers)
    assert created.status_code == 201, created.get_json()
    response = client.post(
        f"/api/v1/programs/{created.get_json()['id']}/fund",
        json={"currency": "gpu", "amount_micro": amount, "reason": "FY27"},
        headers={**headers, "Idempotency-Key": "k"},
    )
    assert response.status_code == 422, response.get_json()
