"""UI access rows for a proposal's attachments, and the world they need: one PDF on
project A's draft and one on its proposal in review.

Upload and remove: the PI (and ops) while the proposal is a draft; a plain member
sees the proposal but is refused (403). Download: the PI, the reviewer assigned
without a conflict, the program's owner once submitted, and ops; a 404 for
everyone else, exactly as for an attachment that does not exist.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, fields
from typing import Any

from api_world import FUNDER_P, OPS, RESEARCHER_A, REVIEWER, World
from flask import Flask
from sqlalchemy.orm import Session
from ui_matrix import UiRow, only

from admin_ui.proposal_attachments import STORE_KEY
from credits.grants.models import AttachmentKind, ProposalAttachment
from credits.storage import BlobStore, blob_store_for_url

PDF = b"%PDF-1.4\n% a test attachment\n%%EOF\n"
DRAFT = {"proposal_id": "proposal_draft"}


@dataclass(frozen=True)
class AttachmentsWorld(World):
    att_draft: int = 0  # a CV on project A's draft
    att_in_review: int = 0  # a project description on project A's proposal in review


def attach_directly(
    session: Session, store: BlobStore, proposal_id: int, user_id: int, kind: AttachmentKind
) -> int:
    """An attachment row and its blob, whatever the proposal's state (the service only
    attaches to drafts)."""
    blob = store.put_stream([PDF], max_bytes=len(PDF))
    row = ProposalAttachment(
        proposal_id=proposal_id,
        kind=kind.value,
        filename=f"{kind.value}.pdf",
        size=blob.size,
        sha256=blob.sha256,
        uploaded_by_user_id=user_id,
    )
    session.add(row)
    session.flush()
    return row.id


def with_attachments(app: Flask, session: Session, world: World) -> AttachmentsWorld:
    """``world`` with an attachment on each of project A's proposals, in a memory store
    of its own that ``app`` uses."""
    store = blob_store_for_url(f"memory://ui-attachments-{uuid.uuid4().hex}")
    app.extensions[STORE_KEY] = store
    pi = world.user_ids[RESEARCHER_A]
    values = {field.name: getattr(world, field.name) for field in fields(world)}
    return AttachmentsWorld(
        **values,
        att_draft=attach_directly(session, store, world.proposal_draft, pi, AttachmentKind.CV),
        att_in_review=attach_directly(
            session, store, world.proposal_in_review, pi, AttachmentKind.DESCRIPTION
        ),
    )


def _upload(_: World) -> dict[str, Any]:
    return {"kind": "cv", "file": (io.BytesIO(PDF), "cv.pdf")}


ROWS = [
    UiRow(
        "POST",
        "/applications/<int:proposal_id>/attachments",
        only(OPS, RESEARCHER_A, anonymous=400),
        DRAFT,
        form=_upload,
    ),
    UiRow(
        "GET",
        "/attachments/<int:attachment_id>",
        only(OPS, RESEARCHER_A, REVIEWER, FUNDER_P),
        {"attachment_id": "att_in_review"},
    ),
    # A draft is the applicants' own: no funder or reviewer sees it yet.
    UiRow(
        "GET",
        "/attachments/<int:attachment_id>",
        only(OPS, RESEARCHER_A),
        {"attachment_id": "att_draft"},
    ),
    # The first POST is the confirmation page; it removes nothing.
    UiRow(
        "POST",
        "/attachments/<int:attachment_id>/remove",
        only(OPS, RESEARCHER_A, anonymous=400),
        {"attachment_id": "att_draft"},
    ),
    # Submitted: the attachments are fixed, for the applicants too (409).
    UiRow(
        "POST",
        "/attachments/<int:attachment_id>/remove",
        only(anonymous=400, ops=409, researcher_a=409, reviewer=403, funder_p=403),
        {"attachment_id": "att_in_review"},
    ),
]
