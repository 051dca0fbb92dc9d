"""The product's transparency pages: the public /transparency page, and the log
index with a "verify" link on a dataset's landing page and on an award."""

from __future__ import annotations

import html

import pytest
from api_world import FUNDER_P, World, build_world, world_executor
from flask import Flask
from log_world import publish_log
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.api.auth import EXTENSION_KEY
from credits.app import create_app
from credits.audit.models import AuditEvent
from credits.grants.models import Allocation, Award
from credits.settings import load_settings
from credits.transparency.note import Signer, generate_signer


@pytest.fixture
def signer(monkeypatch: pytest.MonkeyPatch) -> Signer:
    signer = generate_signer("credits.example.org/log")
    monkeypatch.setenv("CREDITS_TRANSPARENCY_ORIGIN", signer.name)
    monkeypatch.setenv("CREDITS_TRANSPARENCY_SIGNER_KEY", signer.key_string())
    return signer


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session], signer: Signer) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _publish(app: Flask, session: Session, signer: Signer) -> int:
    return publish_log(session, app.extensions[EXTENSION_KEY].settings, signer).size


def _index(session: Session, event_type: str, subject_id: str) -> int:
    index = session.scalar(
        select(AuditEvent.log_index).where(
            AuditEvent.event_type == event_type, AuditEvent.subject_id == subject_id
        )
    )
    assert index is not None
    return index


def test_the_transparency_page_shows_the_log_and_the_command(
    app: Flask, session: Session, signer: Signer
) -> None:
    world: World = build_world(session)
    assert world.program_p
    size = _publish(app, session, signer)
    page = html.unescape(app.test_client().get("/transparency").get_data(as_text=True))
    assert f"{size:,} entries" in page
    assert f"credits-verify http://localhost --key {signer.verifier.key_string()}" in page
    assert "No witness has co-signed yet." in page
    assert "Integration delay" in page


def test_a_page_before_any_checkpoint_says_so(app: Flask) -> None:
    page = app.test_client().get("/transparency").get_data(as_text=True)
    assert "No checkpoint has been signed yet." in page


def test_a_dataset_and_an_award_show_their_log_index_and_a_verify_link(
    app: Flask, session: Session, signer: Signer
) -> None:
    world = build_world(session)
    client = app.test_client()
    landing = f"/datasets/versions/{world.dataset_published}"
    assert 'data-testid="log-index"' not in client.get(landing).get_data(as_text=True)
    _publish(app, session, signer)
    index = _index(session, "dataset.version.published", str(world.dataset_published))
    page = html.unescape(client.get(landing).get_data(as_text=True))
    assert f"entry #{index}" in page
    assert f"/api/v1/transparency/proof/inclusion?index={index}" in page

    award = session.scalars(
        select(Award)
        .join(Allocation, Allocation.award_id == Award.id)
        .where(Allocation.id == world.allocation)
    ).one()
    sign_in_as(client, world.user_ids[FUNDER_P])
    page = html.unescape(
        client.get(f"/funder/proposals/{award.proposal_id}").get_data(as_text=True)
    )
    index = _index(session, "proposal.awarded", str(award.proposal_id))
    assert f"Transparency log entry #{index}" in page
    proof = client.get(f"/api/v1/transparency/proof/inclusion?index={index}")
    assert proof.status_code == 200


def test_the_verify_command_names_the_public_url_not_the_host_header(
    joined_session_factory: sessionmaker[Session], session: Session, signer: Signer
) -> None:
    settings = load_settings(public_url="https://credits.example.org")
    app = create_app(settings, session_factory=joined_session_factory, executor=world_executor())
    _publish(app, session, signer)
    response = app.test_client().get("/transparency", headers={"Host": "attacker.example"})
    page = html.unescape(response.get_data(as_text=True))
    assert "credits-verify https://credits.example.org --key" in page
    assert "credits-verify download https://credits.example.org credits-log" in page
    assert "attacker.example" not in page
