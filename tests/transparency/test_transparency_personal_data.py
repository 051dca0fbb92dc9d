"""No audit event, hence no log entry, carries personal data (issue 15, item 1).

A scenario drives every domain that appends audit events (users and roles,
passwords, OIDC links, API tokens, programs and owners, projects and members,
proposals, reviews and conflicts, awards and allocations, ledger transfers,
the GPU pool, jobs, datasets, labelling vendors and orders), then every row's
canonical JSON is scanned for e-mail addresses, ORCID iDs and the names of the
platform's users.
"""

from __future__ import annotations

import json
from typing import Any

from api_world import SYSTEM, World, build_world
from datasets_api_world import with_datasets
from labelling_api_world import with_labelling
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.public_text import EMAIL_LIKE, ORCID_LIKE
from credits.grants.programs import add_program_owner
from credits.grants.projects import add_member, remove_member
from credits.identity.models import Role, User
from credits.identity.oidc import oidc_sign_in, unlink_oidc
from credits.identity.service import (
    actor_for_email,
    create_user,
    grant_role,
    revoke_role,
    set_active,
    set_password,
)
from credits.identity.tokens import create_token, revoke_token
from credits.storage.factory import blob_store_for_url

# Things have names (programs, flavours, vendors); people's are caught by value.
PERSONAL_KEYS = {"email", "orcid", "given_name", "family_name", "subject"}
ZELDA = "zelda.moonbeam@uni.example"
ZELDA_NAME = "Zelda Quintessa Moonbeam"
ZELDA_ORCID = "0000-0002-1825-0097"
OIDC_SUBJECT = "http://cilogon.org/serverA/users/4242"
# Every kind of event the scenario must reach, so a kind added later without a
# scenario here shows up as a gap rather than passing unscanned.
EXPECTED_KINDS = {
    "user.created",
    "role.granted",
    "role.revoked",
    "user.password_set",
    "user.deactivated",
    "user.reactivated",
    "user.oidc_linked",
    "user.oidc_unlinked",
    "token.created",
    "token.revoked",
    "program.created",
    "program.owner_added",
    "project.created",
    "project.member_added",
    "project.member_removed",
    "proposal.submitted",
    "proposal.reviewer_assigned",
    "proposal.conflict_declared",
    "ledger.grant",
    "job.submitted",
    "dataset.version.published",
    "labelling.vendor_added",
    "labelling.order_created",
}


def _zelda_everywhere(session: Session, world: World) -> None:
    """A person with a distinctive name and an ORCID iD through every identity event."""
    create_user(
        session,
        email=ZELDA,
        name=ZELDA_NAME,
        roles=[Role.RESEARCHER],
        institution="Uni of Moons",
        orcid=ZELDA_ORCID,
        actor=SYSTEM,
    )
    zelda = session.scalars(select(User).where(User.email == ZELDA)).one()
    grant_role(session, email=ZELDA, role=Role.FUNDER, actor=SYSTEM)
    revoke_role(session, email=ZELDA, role=Role.FUNDER, actor=SYSTEM)
    grant_role(session, email=ZELDA, role=Role.FUNDER, actor=SYSTEM)
    set_password(session, email=ZELDA, password="a long enough password", actor=SYSTEM)
    set_active(session, email=ZELDA, active=False, actor=SYSTEM)
    set_active(session, email=ZELDA, active=True, actor=SYSTEM)
    oidc_sign_in(
        session,
        issuer="https://cilogon.org",
        subject=OIDC_SUBJECT,
        email=ZELDA,
        email_verified=True,
    )
    unlink_oidc(session, email=ZELDA, actor=SYSTEM)
    token = create_token(session, email=ZELDA, actor=SYSTEM, name=f"{ZELDA_NAME}'s laptop")
    revoke_token(session, token_id=token.token.id, actor=SYSTEM)
    ops = actor_for_email(session, "ops@example.org")
    add_program_owner(session, program_id=world.program_p, user_id=zelda.id, actor=ops)
    add_member(session, project_id=world.project_b, user_id=zelda.id, role="member", actor=ops)
    remove_member(session, project_id=world.project_b, user_id=zelda.id, actor=ops)


def _personal_values(session: Session) -> set[str]:
    values = set()
    for user in session.scalars(select(User)):
        # (An institution is not a person: a project's stays in its events.)
        values |= {user.email, user.name}
        values |= {user.orcid} if user.orcid else set()
    return values


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for item in value for k in _keys(item)}
    return set()


def test_no_event_kind_carries_an_email_orcid_or_user_name(session: Session) -> None:
    world = build_world(session)
    store = blob_store_for_url("memory://personal-data-scan")
    world = with_labelling(session, with_datasets(session, world, store))
    _zelda_everywhere(session, world)
    rows = session.execute(select(AuditEvent.event_type, AuditEvent.canonical_json)).all()
    kinds = {kind for kind, _ in rows}
    personal = _personal_values(session)

    assert kinds >= EXPECTED_KINDS, f"the scenario missed {sorted(EXPECTED_KINDS - kinds)}"
    for kind, canonical in rows:
        assert not EMAIL_LIKE.search(canonical), f"{kind} carries an e-mail: {canonical}"
        assert not ORCID_LIKE.search(canonical), f"{kind} carries an ORCID iD: {canonical}"
        assert OIDC_SUBJECT not in canonical, f"{kind} carries an OIDC subject"
        found = [value for value in personal if value in canonical]
        assert not found, f"{kind} carries {found}: {canonical}"
        data = json.loads(canonical)["data"]
        keys = _keys(data) & PERSONAL_KEYS
        assert not keys, f"{kind} has personal fields {keys}"


def test_users_appear_by_their_id_alone(session: Session) -> None:
    create_user(session, email=ZELDA, name=ZELDA_NAME, roles=[Role.RESEARCHER], actor=SYSTEM)
    zelda = session.scalars(select(User).where(User.email == ZELDA)).one()

    [created] = session.scalars(
        select(AuditEvent.canonical_json).where(AuditEvent.event_type == "user.created")
    )

    document = json.loads(created)
    assert document["subject"] == {"type": "user", "id": str(zelda.id)}
    assert document["data"] == {"roles": ["researcher"]}
