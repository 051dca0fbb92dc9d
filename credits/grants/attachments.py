"""A proposal's attachments: a PDF project description and CVs.

The bytes go through the same blob store as dataset files (a local folder on the
embedded profile, S3 in production) but in an area of their own,
``<storage>/proposal-attachments``, so that removing a dataset file never
removes an attachment's bytes or the other way round. Within that area blobs are
addressed by their sha256; a row per attachment names its blob.

The PI, managers and ops add and remove attachments while the proposal is a
draft (as they edit it); they, the reviewers assigned without a conflict, the
program's owners (once submitted) and ops may download. Plain members see the
proposal but not its attachments. A file is checked by its content (it starts
with ``%PDF-``) before a byte is stored, and is refused past the size limit
with nothing left behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from credits.errors import Forbidden, InvalidInput, NotFound
from credits.grants.models import (
    AttachmentKind,
    MemberRole,
    Proposal,
    ProposalAttachment,
    ProposalStatus,
)
from credits.grants.proposal_queries import load_proposal
from credits.grants.proposals import audit_proposal, require_status
from credits.grants.queries import load_project, member_role
from credits.identity import rules
from credits.identity.access_proposals import load_proposal_for_actor
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope
from credits.settings import Settings
from credits.storage import BlobStore, BlobTooLarge
from credits.storage.blob_locks import hold_blob, lock_blob
from credits.storage.factory import blob_store_from_settings

ATTACHMENT_AREA = "proposal-attachments"
PDF_MAGIC = b"%PDF-"
PDF_MEDIA_TYPE = "application/pdf"
FILENAME_MAX_LENGTH = 255
EDITABLE = frozenset({ProposalStatus.DRAFT})
KIND_LABELS = {AttachmentKind.DESCRIPTION: "Project description", AttachmentKind.CV: "CV"}


class AttachmentNotFound(NotFound):
    slug = "attachment-not-found"
    title = "Attachment not found"


class AttachmentForbidden(Forbidden):
    slug = "attachment-forbidden"
    title = "Not allowed on this proposal's attachments"


class InvalidAttachment(InvalidInput):
    slug = "invalid-attachment"
    title = "Invalid attachment"


class AttachmentTooLarge(InvalidInput):
    status = 413
    slug = "attachment-too-large"
    title = "Attachment too large"


@dataclass(frozen=True, slots=True)
class AttachmentOut:
    id: int
    proposal_id: int
    kind: AttachmentKind
    filename: str
    size: int
    sha256: str
    uploaded_at: datetime

    @property
    def kind_label(self) -> str:
        return KIND_LABELS[self.kind]


def attachment_store(settings: Settings) -> BlobStore:
    """The attachments' own area of the configured blob store."""
    area = settings.storage_url.rstrip("/") + "/" + ATTACHMENT_AREA
    return blob_store_from_settings(settings.model_copy(update={"storage_url": area}))


def max_bytes(settings: Settings) -> int:
    return settings.proposal_attachment_max_mb * 1024 * 1024


def _render(row: ProposalAttachment) -> AttachmentOut:
    return AttachmentOut(
        id=row.id,
        proposal_id=row.proposal_id,
        kind=AttachmentKind(row.kind),
        filename=row.filename,
        size=row.size,
        sha256=row.sha256,
        uploaded_at=row.uploaded_at,
    )


# Who may do what.


def _edits(session: Session, actor: Actor, proposal: Proposal) -> bool:
    if actor.has_role(Role.OPS):
        return True
    role = member_role(load_project(session, proposal.project_id), actor.user_id)
    return role in {MemberRole.PI, MemberRole.MANAGER}


def _reads(session: Session, actor: Actor, proposal: Proposal) -> bool:
    if _edits(session, actor, proposal):
        return True
    queued = or_(rules.decision_queue(actor), rules.review_queue(actor))
    found = session.scalar(select(Proposal.id).where(Proposal.id == proposal.id, queued))
    return found is not None


def may_read(session: Session, actor: Actor, proposal_id: int) -> bool:
    """Whether the actor may list and download the proposal's attachments."""
    return _reads(session, actor, load_proposal_for_actor(session, actor, proposal_id))


def may_edit(session: Session, actor: Actor, proposal_id: int) -> bool:
    """Whether the actor may add and remove attachments now (an editor, on a draft)."""
    proposal = load_proposal_for_actor(session, actor, proposal_id)
    return _edits(session, actor, proposal) and ProposalStatus(proposal.status) in EDITABLE


def _editable(session: Session, actor: Actor, proposal_id: int) -> Proposal:
    load_proposal_for_actor(session, actor, proposal_id, scope=Scope.WRITE)
    proposal = load_proposal(session, proposal_id, lock=True)
    if not _edits(session, actor, proposal):
        raise AttachmentForbidden("only the PI, a manager of the project or ops may do this")
    require_status(proposal, EDITABLE, "change their attachments")
    return proposal


def _readable_row(session: Session, actor: Actor, attachment_id: int) -> ProposalAttachment:
    row = session.get(ProposalAttachment, attachment_id)
    missing = AttachmentNotFound(f"no attachment has the id {attachment_id}")
    if row is None:
        raise missing
    try:
        proposal = load_proposal_for_actor(session, actor, row.proposal_id)
    except NotFound:
        raise missing from None
    if not _reads(session, actor, proposal):
        raise AttachmentForbidden("only the applicants, the proposal's reviewers and funder may")
    return row


# Reading.


def list_attachments(session: Session, actor: Actor, proposal_id: int) -> list[AttachmentOut]:
    """The proposal's attachments, the description first; AttachmentForbidden for a
    reader who may see the proposal but not its attachments."""
    if not may_read(session, actor, proposal_id):
        raise AttachmentForbidden("only the applicants, the proposal's reviewers and funder may")
    rows = session.scalars(
        select(ProposalAttachment)
        .where(ProposalAttachment.proposal_id == proposal_id)
        .order_by(ProposalAttachment.kind.desc(), ProposalAttachment.id)
    )
    return [_render(row) for row in rows]


def get_attachment(session: Session, actor: Actor, attachment_id: int) -> AttachmentOut:
    """The attachment the actor may download; AttachmentNotFound when it is out of reach."""
    return _render(_readable_row(session, actor, attachment_id))


# Changing.


def check_filename(filename: str) -> str:
    """The file's own name (no folders), refused when empty or not ending in .pdf."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or len(name) > FILENAME_MAX_LENGTH or any(ord(c) < 32 for c in name):
        raise InvalidAttachment("choose a PDF file with a name of 1 to 255 characters")
    if not name.lower().endswith(".pdf"):
        raise InvalidAttachment(f"{name} is not a PDF: attachments are PDF files (.pdf)")
    return name


def check_kind(kind: str) -> AttachmentKind:
    try:
        return AttachmentKind(kind)
    except ValueError:
        raise InvalidAttachment("choose what the file is: a project description or a CV") from None


def _pdf_chunks(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """The same bytes, once the first ones are seen to be a PDF's; InvalidAttachment
    before anything is passed on otherwise."""
    source = iter(chunks)
    head = b""
    for chunk in source:
        head += chunk
        if len(head) >= len(PDF_MAGIC):
            break
    if not head.startswith(PDF_MAGIC):
        raise InvalidAttachment(f"{name} is not a PDF: its content does not start with %PDF-")
    return chain([head], source)


def add_attachment(
    session: Session,
    store: BlobStore,
    *,
    actor: Actor,
    proposal_id: int,
    kind: str,
    filename: str,
    chunks: Iterable[bytes],
    limit: int,
) -> AttachmentOut:
    """Stores a PDF of at most ``limit`` bytes and attaches it to a draft.

    Refused before a byte is stored: no right to edit, not a draft, a bad kind or
    name, content that is not a PDF. Past the limit, AttachmentTooLarge with
    nothing stored. Appends ``proposal.attachment_added``.
    """
    proposal = _editable(session, actor, proposal_id)
    attachment_kind = check_kind(kind)
    name = check_filename(filename)
    try:
        blob = store.put_stream(_pdf_chunks(chunks, name), max_bytes=limit)
    except BlobTooLarge:
        raise AttachmentTooLarge(
            f"{name} is larger than {limit // (1024 * 1024)} MB, the most an attachment may be",
            max_bytes=limit,
        ) from None
    # Until this commits, a removal of another attachment of the same bytes waits
    # rather than delete them under this one (:func:`forget_blob`).
    hold_blob(session, store, blob.sha256)
    row = ProposalAttachment(
        proposal_id=proposal.id,
        kind=attachment_kind.value,
        filename=name,
        size=blob.size,
        sha256=blob.sha256,
        uploaded_by_user_id=actor.user_id,
    )
    session.add(row)
    session.flush()
    audit_proposal(
        session,
        "proposal.attachment_added",
        proposal,
        actor,
        attachment_id=row.id,
        kind=row.kind,
        sha256=row.sha256,
        size=row.size,
    )
    return _render(row)


def removable(session: Session, actor: Actor, attachment_id: int) -> AttachmentOut:
    """The attachment, when the actor may remove it now; the refusal otherwise."""
    row = _readable_row(session, actor, attachment_id)
    _editable(session, actor, row.proposal_id)
    return _render(row)


def remove_attachment(session: Session, actor: Actor, attachment_id: int) -> AttachmentOut:
    """Removes the attachment's row (appends ``proposal.attachment_removed``); the caller
    passes what it returns to :func:`forget_blob` once this is committed."""
    removed = removable(session, actor, attachment_id)
    row = session.get_one(ProposalAttachment, attachment_id)
    proposal = load_proposal(session, row.proposal_id)
    session.delete(row)
    session.flush()
    audit_proposal(
        session, "proposal.attachment_removed", proposal, actor, attachment_id=attachment_id
    )
    return removed


def forget_blob(session: Session, store: BlobStore, sha256: str) -> bool:
    """Deletes the bytes when no attachment names them any more; whether it did. The
    blob's lock, held from the check to the deletion, keeps an attachment of the same
    bytes being added meanwhile from losing them."""
    lock_blob(session, sha256)
    held = session.scalar(
        select(ProposalAttachment.id).where(ProposalAttachment.sha256 == sha256).limit(1)
    )
    return held is None and store.delete(sha256)
