"""A proposal's attachments in the portal: upload, list, download and remove.

The proposal page and the review page draw the list with the template global
``attachments_panel(proposal_id)`` (templates ``_attachments.html``), so their
views need not know of it. Uploads are multipart forms up to
CREDITS_PROPOSAL_ATTACHMENT_MAX_MB; a refused upload shows the proposal page again
with the reason at the file field, and nothing is stored. Removing asks for a
confirmation first. Who may do what is :mod:`credits.grants.attachments`'.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    request,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from admin_ui.confirm import confirmation, confirmed, rehearse
from admin_ui.datasets_pages import human_size
from admin_ui.web import actor, current_actor, login_required, transaction
from credits.api.auth import credits_extension
from credits.errors import CreditsError, NotFound
from credits.grants import attachments
from credits.grants.attachments import KIND_LABELS, AttachmentOut
from credits.storage import BlobStore, content_disposition
from credits.storage.base import READ_CHUNK

blueprint = Blueprint("ui_proposal_attachments", __name__)
PROPOSAL_PAGE = "ui_researcher.proposal"
STORE_KEY = "credits_attachment_store"
UPLOAD_ENDPOINT = "ui_proposal_attachments.upload"
# Multipart framing around the file: boundaries, headers, the kind and the CSRF token.
FORM_OVERHEAD = 64 * 1024


def _store() -> BlobStore:
    """The attachments' area of the blob store (a test may place its own here)."""
    store = current_app.extensions.get(STORE_KEY)
    if store is None:
        store = attachments.attachment_store(credits_extension().settings)
        current_app.extensions[STORE_KEY] = store
    return cast(BlobStore, store)


def _limit() -> int:
    return attachments.max_bytes(credits_extension().settings)


def _allow_upload_body() -> None:
    # The CSRF check reads the form before any view runs, under the app's small body
    # limit; the upload's body may be as large as an attachment.
    if request.endpoint == UPLOAD_ENDPOINT:
        request.max_content_length = _limit() + FORM_OVERHEAD


@blueprint.record_once
def _first_hook(state: BlueprintSetupState) -> None:
    state.app.before_request_funcs.setdefault(None, []).insert(0, _allow_upload_body)


@blueprint.app_template_global()
def attachments_panel(proposal_id: int) -> dict[str, Any] | None:
    """What the proposal and review pages show of the attachments; None for a reader
    who may not see them."""
    me = current_actor()
    if me is None:
        return None
    with transaction() as db:
        try:
            if not attachments.may_read(db, me, proposal_id):
                return None
            files = attachments.list_attachments(db, me, proposal_id)
            editable = attachments.may_edit(db, me, proposal_id)
        except NotFound:
            return None
    return {
        "proposal_id": proposal_id,
        "files": files,
        "editable": editable,
        "kinds": [(kind.value, label) for kind, label in KIND_LABELS.items()],
        "max_mb": credits_extension().settings.proposal_attachment_max_mb,
        "error": g.get("attachment_error"),
        "size": human_size,
    }


def _chunks(upload: FileStorage) -> Iterator[bytes]:
    while chunk := upload.stream.read(READ_CHUNK):
        yield chunk


def _page_again(proposal_id: int, error: str, status: int) -> ResponseReturnValue:
    g.attachment_error = error
    page = make_response(current_app.view_functions[PROPOSAL_PAGE](proposal_id=proposal_id))
    page.status_code = status
    return page


@blueprint.post("/applications/<int:proposal_id>/attachments")
@login_required
def upload(proposal_id: int) -> ResponseReturnValue:
    me = actor()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _page_again(proposal_id, "Choose a PDF file to attach. Nothing was stored.", 422)
    try:
        with transaction() as db:
            added = attachments.add_attachment(
                db,
                _store(),
                actor=me,
                proposal_id=proposal_id,
                kind=request.form.get("kind", ""),
                filename=upload.filename,
                chunks=_chunks(upload),
                limit=_limit(),
            )
    except NotFound:
        raise
    except CreditsError as refusal:
        return _page_again(proposal_id, f"{refusal}. Nothing was stored.", refusal.status)
    flash(f"{added.filename} is attached.")
    return redirect(url_for(PROPOSAL_PAGE, proposal_id=proposal_id))


@blueprint.get("/attachments/<int:attachment_id>")
@login_required
def download(attachment_id: int) -> ResponseReturnValue:
    me = actor()
    with transaction() as db:
        found = attachments.get_attachment(db, me, attachment_id)
    return Response(
        _store().open_range(found.sha256),
        headers={
            "Content-Disposition": content_disposition(found.filename),
            "Content-Length": str(found.size),
            "ETag": f'"{found.sha256}"',
            "X-Content-Type-Options": "nosniff",
        },
        content_type=attachments.PDF_MEDIA_TYPE,
        direct_passthrough=True,
    )


@blueprint.post("/attachments/<int:attachment_id>/remove")
@login_required
def remove(attachment_id: int) -> ResponseReturnValue:
    me = actor()

    def check(db: Session) -> AttachmentOut:
        return attachments.removable(db, me, attachment_id)

    found = rehearse(check)
    back = url_for(PROPOSAL_PAGE, proposal_id=found.proposal_id)
    if not confirmed():
        return confirmation(
            title=f"Remove {found.filename}?",
            effect=f"remove the {found.kind_label.lower()} {found.filename} from the proposal",
            details=[("Size", human_size(found.size))],
            confirm_label="Remove the attachment",
            back=back,
            warning="Upload the file again to attach it anew.",
        )
    with transaction() as db:
        removed = attachments.remove_attachment(db, me, attachment_id)
    with transaction() as db:
        attachments.forget_blob(db, _store(), removed.sha256)
    flash(f"{removed.filename} is removed.")
    return redirect(back)
