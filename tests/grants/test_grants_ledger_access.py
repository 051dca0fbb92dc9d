"""Funders read the ledger accounts their programs fund, and no others."""

from __future__ import annotations

from grants_helpers import joined_app, new_program
from proposal_helpers import awarded, world
from sqlalchemy.orm import Session, sessionmaker

from credits.grants.funding import fund_program
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import revoke_role
from credits.identity.tokens import create_token
from credits.ledger.queries import get_account_by_code

SYSTEM = Actor.system("test")


def bearer(session: Session, email: str) -> dict[str, str]:
    created = create_token(session, email=email, actor=SYSTEM)
    session.flush()
    return {"Authorization": f"Bearer {created.secret}"}


def test_a_funder_reads_their_pools_and_awarded_allocations_but_not_another_programs(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    w = world(session)
    award = awarded(session, w)
    otto_program = new_program(session, w.otto)
    fund_program(
        session,
        program_id=otto_program.id,
        currency="gpu",
        amount_micro=5,
        key="k",
        actor=w.otto,
        reason="FY27 board-confidential",
    )
    fay_pool = get_account_by_code(session, code=f"program:{w.program_id}:pool:gpu").id
    otto_pool = get_account_by_code(session, code=f"program:{otto_program.id}:pool:gpu").id
    allocation_account = award.allocations[0].account_id
    client = joined_app(joined_session_factory).test_client()
    fay, otto = bearer(session, "fay@funder.example"), bearer(session, "otto@funder.example")

    assert client.get(f"/api/v1/accounts/{fay_pool}", headers=fay).status_code == 200
    assert client.get(f"/api/v1/accounts/{allocation_account}", headers=fay).status_code == 200
    assert client.get(f"/api/v1/accounts/{otto_pool}", headers=fay).status_code == 404
    assert client.get(f"/api/v1/accounts/{fay_pool}", headers=otto).status_code == 404
    assert client.get(f"/api/v1/accounts/{allocation_account}", headers=otto).status_code == 404
    listed = {a["id"] for a in client.get("/api/v1/accounts", headers=fay).get_json()["items"]}
    assert {fay_pool, allocation_account} <= listed
    assert otto_pool not in listed


def test_a_funder_who_loses_the_role_reads_nothing(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    w = world(session)
    fay_pool = get_account_by_code(session, code=f"program:{w.program_id}:pool:gpu").id
    revoke_role(session, email="fay@funder.example", role=Role.FUNDER, actor=SYSTEM)
    client = joined_app(joined_session_factory).test_client()
    fay = bearer(session, "fay@funder.example")
    assert client.get(f"/api/v1/accounts/{fay_pool}", headers=fay).status_code == 404
