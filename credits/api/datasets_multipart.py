"""Resumable multipart uploads of a draft's files, on the datasets blueprint.

A file too large for one request is sent in parts: start (the name and size are
checked first), PUT each part, ask which parts are missing after a broken
connection, then complete (the parts are assembled and hashed) or abandon.
"""

from __future__ import annotations

from flask import request, url_for
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from credits.api.auth import credits_extension, session_factory
from credits.api.datasets import (
    FILE_MEDIA_TYPE,
    MAX_UPLOAD_BYTES,
    FileName,
    blob_store,
    blueprint,
    caller,
)
from credits.api.datasets_files import (
    admit_file,
    attach_file,
    file_created,
    no_content,
    require_length,
)
from credits.api.openapi import operation
from credits.api.parsing import json_body
from credits.datasets.drafts import editable_draft
from credits.datasets.schemas import FileOut
from credits.db import session_scope
from credits.identity.access_datasets import load_version, require_manager
from credits.identity.actor import Actor
from credits.identity.models import Scope
from credits.storage import MAX_PARTS, PART_SIZE, BlobTooLarge, safe_file_name


class UploadStartIn(BaseModel):
    """A file to send in parts: its name in the version and its size in bytes."""

    model_config = ConfigDict(extra="forbid")

    name: FileName
    size: StrictInt = Field(ge=0, le=MAX_UPLOAD_BYTES)


class UploadOut(BaseModel):
    """Send parts 1..``parts`` of exactly ``part_size`` bytes (the last one shorter)."""

    upload_id: str
    part_size: int
    parts: int
    max_bytes: int


class UploadCompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FileName
    parts: StrictInt = Field(ge=1, le=MAX_PARTS)


class UploadPartsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: int = Field(ge=1, le=MAX_PARTS, description="how many parts the file has")


class UploadStatus(BaseModel):
    upload_id: str
    missing: list[int] = Field(description="the parts not received yet: send these")


@blueprint.post("/datasets/versions/<int:version_id>/uploads")
@operation(
    "Start a multipart upload",
    body=UploadStartIn,
    response=UploadOut,
    status=201,
    problems=(403, 404, 409, 413, 422),
)
def start_upload(version_id: int) -> ResponseReturnValue:
    """Opens a resumable upload of ``size`` bytes for a file of the draft: send its parts
    with PUT, ask which are missing after a broken connection, then complete it with the
    same name. The name and the size are checked now, before any part is sent."""
    actor = caller(Scope.WRITE)
    body = json_body(UploadStartIn)
    settings = credits_extension().settings
    name = safe_file_name(body.name)
    if body.size > settings.dataset_max_file_bytes:
        raise BlobTooLarge(settings.dataset_max_file_bytes)
    admit_file(version_id, actor, name, body.size)
    upload_id = blob_store().start_upload(max_bytes=body.size)
    parts = max(1, -(-body.size // PART_SIZE))
    answer = UploadOut(upload_id=upload_id, part_size=PART_SIZE, parts=parts, max_bytes=body.size)
    location = url_for(".upload_status", version_id=version_id, upload_id=upload_id, parts=parts)
    return answer.model_dump(mode="json"), 201, {"Location": location}


def _draft_of(version_id: int, actor: Actor) -> None:
    with session_scope(session_factory()) as session:
        editable_draft(session, actor, version_id)


@blueprint.put("/datasets/versions/<int:version_id>/uploads/<upload_id>/parts/<int:part_number>")
@operation(
    "Send one part of a multipart upload",
    raw_body=FILE_MEDIA_TYPE,
    status=204,
    problems=(403, 404, 409, 411, 413, 422, 503),
)
def put_part(version_id: int, upload_id: str, part_number: int) -> ResponseReturnValue:
    """Part ``part_number`` (from 1): exactly ``part_size`` bytes, the last part shorter.
    Sending a part again replaces it. A part of the wrong size or past the declared size
    ends the upload (422, 413): start again."""
    actor = caller(Scope.WRITE)
    _draft_of(version_id, actor)
    require_length()
    request.max_content_length = PART_SIZE
    data = request.get_data(cache=False)
    blob_store().put_part(upload_id, part_number, data)
    return no_content()


@blueprint.get("/datasets/versions/<int:version_id>/uploads/<upload_id>")
@operation(
    "List a multipart upload's missing parts",
    response=UploadStatus,
    query=UploadPartsQuery,
    problems=(403, 404, 409),
)
def upload_status(version_id: int, upload_id: str) -> ResponseReturnValue:
    """Which of parts 1..``parts`` have not arrived: after a broken connection, send those."""
    actor = caller(Scope.WRITE)
    _draft_of(version_id, actor)
    query = UploadPartsQuery.model_validate(request.args.to_dict())
    missing = blob_store().missing_parts(upload_id, query.parts)
    return UploadStatus(upload_id=upload_id, missing=missing).model_dump(mode="json")


@blueprint.post("/datasets/versions/<int:version_id>/uploads/<upload_id>/complete")
@operation(
    "Complete a multipart upload",
    body=UploadCompleteIn,
    response=FileOut,
    status=201,
    problems=(403, 404, 409, 413, 422, 503),
)
def complete_upload(version_id: int, upload_id: str) -> ResponseReturnValue:
    """Assembles parts 1..``parts`` into the file ``name`` of the draft, hashing them. The
    upload ends either way: parts missing (422, ``missing`` lists them) or a refused name
    remove its parts."""
    actor = caller(Scope.WRITE)
    body = json_body(UploadCompleteIn)
    store = blob_store()
    try:
        name = safe_file_name(body.name)
        admit_file(version_id, actor, name, None)
    except BaseException:
        store.abort_upload(upload_id)
        raise
    blob = store.complete_upload(upload_id, body.parts)
    return file_created(version_id, attach_file(version_id, actor, name, blob))


@blueprint.delete("/datasets/versions/<int:version_id>/uploads/<upload_id>")
@operation("Abandon a multipart upload", status=204, problems=(403, 404, 409))
def abort_upload(version_id: int, upload_id: str) -> ResponseReturnValue:
    """Ends the upload and removes the parts sent; an unknown id changes nothing. Allowed
    whatever the version's state: a draft published with an upload still open leaves
    parts (on S3, a multipart upload billed for) that only this or the hourly tidy-up
    removes."""
    actor = caller(Scope.WRITE)
    with session_scope(session_factory()) as session:
        require_manager(session, actor, load_version(session, actor, version_id))
    blob_store().abort_upload(upload_id)
    return no_content()
