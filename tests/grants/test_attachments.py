"""A proposal's attachments: PDFs only (by content), under a size limit, on drafts, by
the PI, managers and ops; read by the applicants, the proposal's reviewers and funder,
and ops; removing one deletes its bytes unless another attachment holds them."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from grants_helpers import uid
from proposal_helpers import World, drafted, submitted, world
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.errors import CreditsError
from credits.grants import attachments
from credits.grants.attachments import (
    AttachmentForbidden,
    AttachmentNotFound,
    AttachmentOut,
    AttachmentTooLarge,
    InvalidAttachment,
)
from credits.grants.errors import ProposalNotFound, ProposalStatusConflict
from credits.grants.models import ProposalAttachment
from credits.grants.proposals import submit_proposal
from credits.grants.reviews import assign_reviewer, declare_conflict
from credits.identity.actor import Actor
from credits.settings import load_settings
from credits.storage import BlobStore, StorageUnavailable, blob_store_for_url

PDF = b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n"
LIMIT = 1024


@pytest.fixture
def session(any_session: Session) -> Session:
    """Every test here on SQLite and on PostgreSQL (the draft is locked there)."""
    return any_session


@pytest.fixture
def store() -> BlobStore:
    return blob_store_for_url(f"memory://attachments-{uuid.uuid4().hex}")


def _add(
    session: Session,
    store: BlobStore,
    actor: Actor,
    proposal_id: int,
    *,
    content: bytes = PDF,
    filename: str = "description.pdf",
    kind: str = "description",
    limit: int = LIMIT,
) -> AttachmentOut:
    # Small chunks: the %PDF- check must look across them.
    chunks = [content[i : i + 3] for i in range(0, len(content), 3)]
    return attachments.add_attachment(
        session,
        store,
        actor=actor,
        proposal_id=proposal_id,
        kind=kind,
        filename=filename,
        chunks=chunks,
        limit=limit,
    )


def _rows(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ProposalAttachment)) or 0


def _refused(
    session: Session, store: BlobStore, error: type[CreditsError], *args: object, **kwargs: object
) -> CreditsError:
    content = kwargs.get("content", PDF)
    assert isinstance(content, bytes)
    with pytest.raises(error) as raised:
        _add(session, store, *args, **kwargs)  # type: ignore[arg-type]
    assert _rows(session) == 0
    assert not store.exists(hashlib.sha256(content).hexdigest())
    return raised.value


def test_the_pi_attaches_a_pdf_stored_under_its_sha256(session: Session, store: BlobStore) -> None:
    w = world(session)
    proposal = drafted(session, w)
    added = _add(session, store, w.pia, proposal.id, filename="C:\\docs\\Plan.PDF")
    assert added.sha256 == hashlib.sha256(PDF).hexdigest()
    assert (added.filename, added.size, added.kind_label) == (
        "Plan.PDF",
        len(PDF),
        "Project description",
    )
    assert b"".join(store.open_range(added.sha256)) == PDF
    assert attachments.list_attachments(session, w.pia, proposal.id) == [added]
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "proposal.attachment_added")
    ).one()
    assert event.subject_id == str(proposal.id)


def test_a_manager_attaches_cvs(session: Session, store: BlobStore) -> None:
    w = world(session)
    proposal = drafted(session, w)
    _add(session, store, w.mia, proposal.id, kind="cv", filename="mia.pdf")
    _add(session, store, w.mia, proposal.id, kind="cv", filename="pia.pdf", content=PDF + b"\n")
    listed = attachments.list_attachments(session, w.pia, proposal.id)
    assert [a.filename for a in listed] == ["mia.pdf", "pia.pdf"]


def test_a_file_that_is_not_a_pdf_is_refused_and_nothing_is_stored(
    session: Session, store: BlobStore
) -> None:
    w = world(session)
    proposal = drafted(session, w)
    refusal = _refused(
        session, store, InvalidAttachment, w.pia, proposal.id, content=b"PK\x03\x04 a zip file"
    )
    assert "does not start with %PDF-" in str(refusal)
    _refused(session, store, InvalidAttachment, w.pia, proposal.id, content=b"%PD")


def test_a_name_that_is_not_a_pdf_or_an_unknown_kind_is_refused(
    session: Session, store: BlobStore
) -> None:
    w = world(session)
    proposal = drafted(session, w)
    _refused(session, store, InvalidAttachment, w.pia, proposal.id, filename="plan.docx")
    _refused(session, store, InvalidAttachment, w.pia, proposal.id, filename="  ")
    _refused(session, store, InvalidAttachment, w.pia, proposal.id, kind="budget")


def test_a_file_over_the_limit_is_refused_and_nothing_is_stored(
    session: Session, store: BlobStore
) -> None:
    w = world(session)
    proposal = drafted(session, w)
    big = PDF + b"0" * (LIMIT - len(PDF) + 1)
    refusal = _refused(session, store, AttachmentTooLarge, w.pia, proposal.id, content=big)
    assert refusal.status == 413
    assert _add(session, store, w.pia, proposal.id, content=big[:LIMIT]).size == LIMIT


def test_only_the_pi_managers_and_ops_attach_and_only_to_a_draft(
    session: Session, store: BlobStore
) -> None:
    w = world(session)
    draft = drafted(session, w)
    _refused(session, store, AttachmentForbidden, w.mo, draft.id)
    _refused(session, store, ProposalNotFound, w.fay, draft.id)
    sent = submitted(session, w, title="Sent")
    refusal = _refused(session, store, ProposalStatusConflict, w.pia, sent.id)
    assert refusal.extra["current_status"] == "submitted"
    assert _add(session, store, w.ops, draft.id).proposal_id == draft.id


def _reviewed_with_attachment(session: Session, store: BlobStore, w: World) -> AttachmentOut:
    proposal = drafted(session, w)
    added = _add(session, store, w.pia, proposal.id)
    submit_proposal(session, proposal_id=proposal.id, actor=w.pia)
    for reviewer in w.reviewers[:2]:
        assign_reviewer(
            session, proposal_id=proposal.id, reviewer_user_id=uid(reviewer), actor=w.fay
        )
    declare_conflict(session, proposal_id=proposal.id, actor=w.reviewers[1], reason="co-author")
    return added


def test_applicants_reviewers_the_funder_and_ops_download_and_nobody_else(
    session: Session, store: BlobStore
) -> None:
    w = world(session)
    added = _reviewed_with_attachment(session, store, w)
    for reader in (w.pia, w.mia, w.ops, w.fay, w.reviewers[0]):
        assert attachments.get_attachment(session, reader, added.id) == added
    with pytest.raises(AttachmentForbidden):
        attachments.get_attachment(session, w.mo, added.id)
    for outsider in (w.otto, w.reviewers[1], w.reviewers[2]):
        with pytest.raises(AttachmentNotFound):
            attachments.get_attachment(session, outsider, added.id)
    with pytest.raises(AttachmentForbidden):
        attachments.list_attachments(session, w.mo, added.proposal_id)
    assert not attachments.may_read(session, w.mo, added.proposal_id)


def test_removing_deletes_the_blob_unless_another_attachment_holds_it(
    session: Session, store: BlobStore
) -> None:
    w = world(session)
    proposal = drafted(session, w)
    first = _add(session, store, w.pia, proposal.id)
    second = _add(session, store, w.pia, proposal.id, kind="cv", filename="same.pdf")
    assert first.sha256 == second.sha256
    removed = attachments.remove_attachment(session, w.mia, first.id)
    assert not attachments.forget_blob(session, store, removed.sha256)
    assert store.exists(first.sha256)
    attachments.remove_attachment(session, w.pia, second.id)
    assert attachments.forget_blob(session, store, second.sha256)
    assert not store.exists(second.sha256)
    assert _rows(session) == 0


def test_a_member_may_not_remove_and_a_submitted_proposal_keeps_its_attachments(
    session: Session, store: BlobStore
) -> None:
    w = world(session)
    added = _reviewed_with_attachment(session, store, w)
    with pytest.raises(ProposalStatusConflict):
        attachments.remove_attachment(session, w.pia, added.id)
    with pytest.raises(AttachmentForbidden):
        attachments.remove_attachment(session, w.mo, added.id)
    assert _rows(session) == 1
    assert store.exists(added.sha256)


def test_attachments_live_in_an_area_of_their_own_beside_dataset_blobs(tmp_path: Path) -> None:
    settings = load_settings().model_copy(update={"storage_url": f"file://{tmp_path}"})
    store = attachments.attachment_store(settings)
    blob = store.put_stream([PDF], max_bytes=len(PDF))
    hexdigest = blob.sha256
    stored = tmp_path / "proposal-attachments" / "blobs" / "sha256" / hexdigest[:2]
    assert (stored / hexdigest[2:4] / hexdigest).read_bytes() == PDF
    assert not (tmp_path / "blobs").exists()


class _DeletedRightAfterStoring:
    """A store where another removal deletes the bytes just after they are stored, as
    a concurrent removal of an attachment of the same bytes would."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    def put_stream(self, chunks: object, *, max_bytes: int) -> object:
        blob = self.store.put_stream(chunks, max_bytes=max_bytes)  # type: ignore[arg-type]
        self.store.delete(blob.sha256)
        return blob

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def test_an_attachment_whose_bytes_a_removal_deleted_meanwhile_is_refused(
    session: Session, store: BlobStore
) -> None:
    w = world(session)
    proposal = drafted(session, w)
    racing = _DeletedRightAfterStoring(store)
    with pytest.raises(StorageUnavailable, match="send the file again"):
        _add(session, racing, w.pia, proposal.id)  # type: ignore[arg-type]
    assert _rows(session) == 0


@pytest.mark.postgres
def test_adding_and_forgetting_an_attachment_hold_the_blobs_lock(
    pg_session: Session, store: BlobStore
) -> None:
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    w = world(pg_session)
    proposal = drafted(pg_session, w)
    event.listen(pg_session.connection(), "before_cursor_execute", seen)
    added = _add(pg_session, store, w.pia, proposal.id)
    locked_on_adding = sum("pg_advisory_xact_lock" in s for s in statements)
    attachments.remove_attachment(pg_session, w.pia, added.id)
    assert attachments.forget_blob(pg_session, store, added.sha256)
    assert locked_on_adding == 1
    assert sum("pg_advisory_xact_lock" in s for s in statements) == 2
