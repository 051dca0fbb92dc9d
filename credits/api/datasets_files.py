"""Datasets API, a draft's files: uploading one in a single request and removing one.
Registers on the datasets blueprint of :mod:`credits.api.datasets`; multipart uploads
(:mod:`credits.api.datasets_multipart`) share the admission and attachment helpers here.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, request, url_for
from flask.typing import ResponseReturnValue

from credits.api.auth import credits_extension, session_factory
from credits.api.datasets import CHUNK_BYTES, FILE_MEDIA_TYPE, blob_store, blueprint, caller
from credits.api.openapi import operation
from credits.datasets import uploads
from credits.datasets.schemas import FileOut
from credits.errors import CreditsError
from credits.identity.actor import Actor
from credits.identity.models import Scope
from credits.storage import BlobTooLarge, StoredBlob, safe_file_name

# Files of a draft.


def admit_file(version_id: int, actor: Actor, name: str, size: int | None) -> int:
    return uploads.admit_file(
        session_factory(),
        actor=actor,
        version_id=version_id,
        name=name,
        size=size,
        max_version_bytes=credits_extension().settings.dataset_max_version_bytes,
    )


def attach_file(version_id: int, actor: Actor, name: str, blob: StoredBlob) -> FileOut:
    return uploads.attach_blob(
        session_factory(),
        blob_store(),
        actor=actor,
        version_id=version_id,
        name=name,
        blob=blob,
        max_version_bytes=credits_extension().settings.dataset_max_version_bytes,
    )


class LengthRequired(CreditsError):
    status = 411
    slug = "length-required"
    title = "Length required"


def require_length() -> None:
    """A chunked body must come through a server that decodes it and ends the input
    (waitress does); else Werkzeug would read it as empty, and a file would be lost."""
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if chunked and "wsgi.input_terminated" not in request.environ:
        raise LengthRequired("this server cannot take a chunked body: send a Content-Length")


def body_chunks() -> Iterator[bytes]:
    stream = request.stream
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


def no_content() -> Response:
    """204, with no body and so no Content-Type."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def file_created(version_id: int, file: FileOut) -> ResponseReturnValue:
    location = url_for(".download_file", version_id=version_id, file_name=file.name)
    return file.model_dump(mode="json"), 201, {"Location": location}


@blueprint.put("/datasets/versions/<int:version_id>/files/<path:file_name>")
@operation(
    "Upload a file to a draft",
    raw_body=FILE_MEDIA_TYPE,
    response=FileOut,
    status=201,
    problems=(403, 404, 409, 411, 413, 422, 503),
)
def upload_file(version_id: int, file_name: str) -> ResponseReturnValue:
    """The request body is the file, streamed into storage and hashed as it arrives, up
    to CREDITS_DATASET_MAX_FILE_BYTES; its name is the rest of the path (folders
    allowed: ``train/part-1.csv``). Refused before a byte is read: an unsafe name
    (422), a name the draft holds (409), a declared length over a limit (413)."""
    actor = caller(Scope.WRITE)
    settings = credits_extension().settings
    name = safe_file_name(file_name)
    room = admit_file(version_id, actor, name, request.content_length)
    require_length()
    limit = min(settings.dataset_max_file_bytes, room)
    request.max_content_length = settings.dataset_max_file_bytes
    try:
        blob = blob_store().put_stream(body_chunks(), max_bytes=limit)
    except BlobTooLarge:
        if limit < settings.dataset_max_file_bytes:
            raise uploads.version_too_large(
                settings.dataset_max_version_bytes - room + limit + 1,
                settings.dataset_max_version_bytes,
            ) from None
        raise
    return file_created(version_id, attach_file(version_id, actor, name, blob))


@blueprint.delete("/datasets/versions/<int:version_id>/files/<path:file_name>")
@operation("Remove a file from a draft", status=204, problems=(403, 404, 409))
def remove_file(version_id: int, file_name: str) -> ResponseReturnValue:
    """The file leaves the draft; its bytes stay while another version holds them."""
    actor = caller(Scope.WRITE)
    uploads.detach_file(
        session_factory(), blob_store(), actor=actor, version_id=version_id, name=file_name
    )
    return no_content()
