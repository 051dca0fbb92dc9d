"""Proposal attachments in the portal: the PI uploads a PDF on the draft's page and sees
it listed; a file that is not a PDF, one over the limit, or no file comes back at the
field with nothing stored; downloads are attachments of type application/pdf; the
reviewer sees the list on the review page; removing asks first."""

from __future__ import annotations

import hashlib
import io

import pytest
from api_world import World, build_world
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, flows_app, text_of
from ui_rows_attachments import PDF, with_attachments

from admin_ui.proposal_attachments import STORE_KEY
from credits.grants.models import ProposalAttachment
from credits.storage import BlobStore

BIG_MB = 1


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


def _rows(session: Session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(ProposalAttachment)) or 0


def _store(app: Flask) -> BlobStore:
    store: BlobStore = app.extensions[STORE_KEY]
    return store


def _upload(
    client: FlaskClient,
    world: World,
    content: bytes,
    name: str = "plan.pdf",
    kind: str = "description",
):  # type: ignore[no-untyped-def]
    return client.post(
        f"/applications/{world.proposal_draft}/attachments",
        data={"csrf_token": CSRF, "kind": kind, "file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )


def test_the_pi_uploads_a_pdf_and_sees_it_listed(app: Flask, session: Session) -> None:
    world = with_attachments(app, session, build_world(session))
    client = client_for(app, world, "researcher_a")
    content = PDF + b"% the plan\n"
    response = _upload(client, world, content)
    assert response.status_code == 302
    page = client.get(f"/applications/{world.proposal_draft}").text
    assert 'enctype="multipart/form-data"' in page
    words = text_of(page)
    assert "plan.pdf Project description" in words
    assert "A PDF of at most 10 MB." in words
    assert _store(app).exists(hashlib.sha256(content).hexdigest())


def test_a_file_that_is_not_a_pdf_is_shown_at_the_field_and_nothing_is_stored(
    app: Flask, session: Session
) -> None:
    world = with_attachments(app, session, build_world(session))
    before = _rows(session)
    content = b"<html>not a pdf</html>"
    response = _upload(client_for(app, world, "researcher_a"), world, content, name="cv.pdf")
    assert response.status_code == 422
    assert 'id="e-attachment-file" role="alert">cv.pdf is not a PDF' in response.text
    assert "Nothing was stored." in text_of(response.text)
    assert _rows(session) == before
    assert not _store(app).exists(hashlib.sha256(content).hexdigest())


def test_a_file_over_the_limit_is_refused_with_413_and_nothing_is_stored(
    app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("admin_ui.proposal_attachments._limit", lambda: BIG_MB * 1024 * 1024)
    world = with_attachments(app, session, build_world(session))
    before = _rows(session)
    content = PDF + b"0" * (BIG_MB * 1024 * 1024)
    response = _upload(client_for(app, world, "researcher_a"), world, content)
    assert response.status_code == 413
    assert "larger than 1 MB" in text_of(response.text)
    assert _rows(session) == before
    assert not _store(app).exists(hashlib.sha256(content).hexdigest())


def test_an_upload_without_a_file_asks_for_one(app: Flask, session: Session) -> None:
    world = with_attachments(app, session, build_world(session))
    response = client_for(app, world, "researcher_a").post(
        f"/applications/{world.proposal_draft}/attachments",
        data={"csrf_token": CSRF, "kind": "cv"},
    )
    assert response.status_code == 422
    assert "Choose a PDF file to attach." in text_of(response.text)


def test_a_download_is_an_attachment_of_type_pdf(app: Flask, session: Session) -> None:
    world = with_attachments(app, session, build_world(session))
    response = client_for(app, world, "funder_p").get(f"/attachments/{world.att_in_review}")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="description.pdf"'
    )
    assert response.data == PDF


def test_the_reviewer_sees_the_attachments_on_the_review_page(app: Flask, session: Session) -> None:
    world = with_attachments(app, session, build_world(session))
    page = client_for(app, world, "reviewer").get(f"/reviews/{world.proposal_in_review}").text
    assert f'href="/attachments/{world.att_in_review}"' in page
    assert "Attach</button>" not in page
    assert "Remove…" not in page


def test_removing_asks_first_and_then_deletes_the_file(app: Flask, session: Session) -> None:
    world = with_attachments(app, session, build_world(session))
    client = client_for(app, world, "researcher_a")
    url = f"/attachments/{world.att_draft}/remove"
    first = client.post(url, data={"csrf_token": CSRF})
    assert first.status_code == 200
    assert "You are about to remove the cv cv.pdf" in text_of(first.text)
    assert session.get(ProposalAttachment, world.att_draft) is not None
    done = client.post(url, data={"csrf_token": CSRF, "confirm": "yes"})
    assert done.status_code == 302
    session.expire_all()
    assert session.get(ProposalAttachment, world.att_draft) is None
    # The in-review proposal's attachment holds the same bytes: they stay.
    assert _store(app).exists(hashlib.sha256(PDF).hexdigest())
