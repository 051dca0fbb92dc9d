"""Dataset routes: create and edit drafts, upload files, publish; the public catalogue.

Writes need a token (``write`` scope; ``read`` for ops' verify) of a project
member or ops, as the services check. Reads are public: anyone, signed in or
not, lists and reads published and deprecated versions, tombstones, their
metadata documents and their files; a signed-in member also reads the
project's drafts. A draft the caller may not read answers 404, like a missing
version.

Uploads stream: ``PUT .../files/<name>`` sends a file's bytes as the body,
hashed into the blob store as they arrive, up to ``CREDITS_DATASET_MAX_FILE_BYTES``
(not the app's ``CREDITS_REQUEST_MAX_BYTES``); larger files go as a resumable
multipart upload of 8 MiB parts. The name is checked, and the draft's
``CREDITS_DATASET_MAX_VERSION_BYTES``, before a byte is read; a refusal after
the bytes are stored removes them unless another file holds the same content.

Downloads answer a ``Range`` request for one range of bytes (206, a suffix
longer than the file being all of it, or 416 when it starts past the end; a
Range in another unit, malformed, or naming several ranges is ignored) with the
sha256 as a strong ETag, or, on S3, redirect (302) to a presigned URL valid
for five minutes. A taken-down version's files answer 410.

With DOIs configured (``CREDITS_DATACITE_*``), the lifecycle routes tell DataCite
as the CLI does (:mod:`credits.datasets.doi`), through :func:`doi_registrar`.

Creating and describing drafts and the lifecycle (publish, deprecate, take down,
verify) are in :mod:`credits.api.datasets_lifecycle`, multipart uploads in
:mod:`credits.api.datasets_multipart`; both register on this module's blueprint.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, cast

from flask import Blueprint, Response, current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from werkzeug.wrappers import Response as BaseResponse

from credits.api.auth import (
    credits_extension,
    current_actor,
    session_factory,
    write_session_factory,
)
from credits.api.converters import MAX_ID
from credits.api.openapi import Answer, operation
from credits.api.paging import next_page_link
from credits.api.problems import problem_response, problem_type
from credits.datasets import queries
from credits.datasets.doi import DoiRegistrar, doi_registrar_from_settings
from credits.datasets.downloads import downloadable_file, record_download
from credits.datasets.errors import (
    DatasetNotFound,
)
from credits.datasets.models import KEYWORD_MAX_LENGTH, VersionState
from credits.datasets.schemas import (
    FileOut,
    VersionOut,
    VersionPage,
    VersionSummary,
)
from credits.db import session_scope
from credits.identity.access import require_actor, require_scope
from credits.identity.actor import Actor
from credits.identity.models import Scope
from credits.reports.energy import EnergyPolicy, policy_from_settings
from credits.storage import (
    BlobStore,
    InvalidRange,
    blob_store_from_settings,
    content_disposition,
)
from credits.storage.checked_reads import open_checked
from credits.storage.names import MAX_NAME_BYTES

blueprint = Blueprint("datasets", __name__, url_prefix="/api/v1")
# Files and metadata documents at the public URLs the exports and landing pages give.
public_blueprint = Blueprint("dataset_files", __name__)

STORE_KEY = "credits_blob_store"
DOIS_KEY = "credits_doi_registrar"
# A presigned download URL (S3) is valid this long.
PRESIGNED_SECONDS = 300
# Uploads are read from the request in chunks of this size.
CHUNK_BYTES = 1024 * 1024
# The largest declared size of a multipart upload: S3's largest object, 5 TiB.
MAX_UPLOAD_BYTES = 5 * 1024**4
FILE_MEDIA_TYPE = "application/octet-stream"
FILE_HEADERS = (
    ("Accept-Ranges", "bytes"),
    ("ETag", "the file's sha256, quoted: a strong validator"),
    ("Content-Disposition", "attachment, with the file's name"),
)

Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
FileName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_BYTES)]


class DatasetQuery(BaseModel):
    """Filters for the catalogue; newest version first, ``cursor`` for the next page."""

    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(
        default=None,
        max_length=500,
        description="words to find in the title, description, keywords and creators",
    )
    license: str | None = Field(default=None, max_length=100, description="an SPDX identifier")
    keyword: str | None = Field(default=None, max_length=KEYWORD_MAX_LENGTH)
    program: int | None = Field(default=None, ge=1, le=MAX_ID, description="funded by this program")
    project: int | None = Field(default=None, ge=1, le=MAX_ID)
    state: VersionState = Field(
        default=VersionState.PUBLISHED,
        description="drafts are listed to their project's members and ops only",
    )
    cursor: int | None = Field(default=None, ge=1, le=MAX_ID)
    limit: int = Field(default=queries.DEFAULT_PAGE, ge=1, le=queries.MAX_PAGE)


class VersionList(BaseModel):
    """Every version of a dataset the caller may read, newest first."""

    items: list[VersionSummary]


# Who is calling.


def caller(scope: Scope) -> Actor:
    actor = require_actor(current_actor())
    require_scope(actor, scope)
    return actor


def _reader() -> Actor | None:
    """The caller of a public read; a token that may not read reads as the public does."""
    actor = current_actor()
    if actor is not None and not actor.allows_scope(Scope.READ):
        return None
    return actor


# What the routes share.


def blob_store() -> BlobStore:
    """The app's blob store, built from the settings on first use (a test may place its
    own in ``app.extensions["credits_blob_store"]``)."""
    store = current_app.extensions.get(STORE_KEY)
    if store is None:
        store = blob_store_from_settings(credits_extension().settings)
        current_app.extensions[STORE_KEY] = store
    return cast(BlobStore, store)


def doi_registrar() -> DoiRegistrar | None:
    """The app's DOI registrar, None when DOIs are off; built from the settings on first
    use (a test may place its own in ``app.extensions["credits_doi_registrar"]``)."""
    if DOIS_KEY not in current_app.extensions:
        settings = credits_extension().settings
        current_app.extensions[DOIS_KEY] = doi_registrar_from_settings(settings)
    return cast("DoiRegistrar | None", current_app.extensions[DOIS_KEY])


def energy_policy() -> EnergyPolicy:
    return policy_from_settings(credits_extension().settings)


def version_answer(version: VersionOut, status: int = 200) -> ResponseReturnValue:
    headers = {"Location": url_for(".get_version", version_id=version.id)}
    return version.model_dump(mode="json"), status, headers


# The catalogue: public reads.


@blueprint.get("/datasets")
@operation(
    "Search dataset versions",
    response=VersionPage,
    query=DatasetQuery,
    authenticated=False,
    problems=(401,),
)
def list_datasets() -> ResponseReturnValue:
    """Published versions (or ``state``) matching every filter given, newest first; full-text
    search of title, description, keywords and creators. No token needed."""
    actor = _reader()
    query = DatasetQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        page = queries.list_versions(
            session,
            actor,
            text=query.q,
            license=query.license,
            keyword=query.keyword,
            program_id=query.program,
            project_id=query.project,
            states=(query.state,),
            cursor=query.cursor,
            limit=query.limit,
        )
    return page.model_dump(mode="json"), 200, next_page_link(query, cursor=page.next_cursor)


@blueprint.get("/datasets/<uuid:concept_id>")
@operation(
    "Resolve a dataset's concept id",
    response=VersionOut,
    authenticated=False,
    problems=(401, 404),
)
def resolve_concept(concept_id: uuid.UUID) -> ResponseReturnValue:
    """The newest published version of the dataset (else its newest deprecated one, else
    its tombstone)."""
    actor = _reader()
    with session_scope(session_factory()) as session:
        version = queries.resolve_concept(session, actor, str(concept_id))
    return version_answer(version)


@blueprint.get("/datasets/<int:dataset_id>/versions")
@operation(
    "List a dataset's versions",
    response=VersionList,
    authenticated=False,
    problems=(401, 404),
)
def list_dataset_versions(dataset_id: int) -> ResponseReturnValue:
    """Every version of the dataset the caller may read, newest first."""
    actor = _reader()
    with session_scope(session_factory()) as session:
        items = queries.list_dataset_versions(session, actor, dataset_id)
    if not items:
        raise DatasetNotFound(f"no dataset has the id {dataset_id}")
    return VersionList(items=items).model_dump(mode="json")


@blueprint.get("/datasets/versions/<int:version_id>")
@operation("Get a dataset version", response=VersionOut, authenticated=False, problems=(401, 404))
def get_version(version_id: int) -> ResponseReturnValue:
    """The version with its metadata, datasheet, files and provenance; a taken-down
    version is a tombstone: its citation and the reason, no files, no datasheet."""
    actor = _reader()
    with session_scope(session_factory()) as session:
        version = queries.get_version(session, actor, version_id)
    return version.model_dump(mode="json")


DOWNLOAD = operation(
    "Download a file",
    media_type="*/*",
    headers=FILE_HEADERS,
    authenticated=False,
    answers=(
        Answer(206, "Partial Content: the range asked for", (*FILE_HEADERS, ("Content-Range", ""))),
        Answer(302, "Found: a short-lived presigned URL (S3)", (("Location", ""),), body=False),
    ),
    problems=(401, 404, 410, 416, 503),
)


@blueprint.get("/datasets/versions/<int:version_id>/files/<path:file_name>")
@DOWNLOAD
def download_file(version_id: int, file_name: str) -> ResponseReturnValue:
    """The file, streamed, in its media type; a ``Range: bytes=a-b`` (or ``bytes=a-``,
    ``bytes=-n``) request gets that part (206; a suffix longer than the file gets all of
    it) or 416 when it starts past the end; a Range in another unit, malformed, or
    naming several ranges is ignored (200). On S3, a redirect to a presigned URL
    valid for five minutes. A repeat download by the same client within 30 seconds
    counts once. 410 when the version was taken down."""
    actor = _reader()
    with session_scope(session_factory()) as session:
        file = downloadable_file(session, version_id=version_id, name=file_name, actor=actor)
    store = blob_store()
    url = store.presigned_url(file.sha256, expires_s=PRESIGNED_SECONDS, filename=file.name)
    response: BaseResponse
    if url is None:
        response = _file_response(store, file)
    else:
        response = redirect(url, code=302)
        response.headers["Cache-Control"] = "no-store"
    if request.method == "GET" and response.status_code in {200, 206, 302}:
        _count(version_id, file.name)
    return response


def _file_response(store: BlobStore, file: FileOut) -> Response:
    etag = f'"{file.sha256}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": content_disposition(file.name),
    }
    start, stop, status = 0, file.size, 200
    if_range = request.headers.get("If-Range")
    asked = _byte_range(file.size) if if_range is None or if_range.strip() == etag else None
    if asked is not None:
        if asked[0] >= file.size:
            return problem_response(
                status=InvalidRange.status,
                title=InvalidRange.title,
                type_=problem_type(InvalidRange.slug),
                detail=f"the range lies outside the file of {file.size} bytes",
                headers={"Content-Range": f"bytes */{file.size}"},
            )
        start, stop, status = asked[0], asked[1], 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{file.size}"
    chunks = open_checked(
        store, sha256=file.sha256, size=file.size, name=file.name, start=start, stop=stop
    )
    headers["Content-Length"] = str(stop - start)
    return Response(
        chunks,
        status=status,
        headers=headers,
        content_type=file.media_type,
        direct_passthrough=True,
    )


def _byte_range(size: int) -> tuple[int, int] | None:
    """The one range of bytes the request's ``Range`` asks for, as ``(start, stop)``
    clamped to the file; unsatisfiable when ``start >= size``. None when the header is
    to be ignored (RFC 9110, section 14.2): absent, not syntactically valid, in a unit
    other than bytes, or naming several ranges."""
    wanted = request.range  # Werkzeug's parse: None when absent or malformed
    if wanted is None or wanted.units != "bytes" or len(wanted.ranges) != 1:
        return None
    start, stop = wanted.ranges[0]
    if stop is None:
        if start < 0:  # "-n": the last n bytes, all of a file shorter than n
            if size == 0:
                return None  # satisfiable, yet no 206 can describe an empty part
            start = max(size + start, 0)
        stop = size
    return start, min(stop, size)


# The same documents and files at the public URLs of credits/datasets/urls.py, by the
# version's UUID: the landing pages link there and the exports name them.


def _by_public_id(public_id: uuid.UUID) -> int:
    with session_scope(session_factory()) as session:
        return queries.version_id_for(session, str(public_id))


@public_blueprint.get("/datasets/versions/<uuid:public_id>/files/<path:file_name>")
@DOWNLOAD
def public_file(public_id: uuid.UUID, file_name: str) -> ResponseReturnValue:
    """As GET /api/v1/datasets/versions/{version_id}/files/{file_name}, by the version's
    UUID: the URL the Croissant document and the landing page give."""
    return download_file(_by_public_id(public_id), file_name)


def _count(version_id: int, name: str) -> None:
    """Counts the download; the client is a hash of its address and user agent."""
    client = f"{request.remote_addr}\n{request.user_agent.string}".encode()
    key = hashlib.sha256(client).hexdigest()
    # A download is a GET that writes: it counts on a writing session.
    with session_scope(write_session_factory()) as session:
        record_download(session, version_id=version_id, name=name, client_key=key)


# Drafts, their files, their lifecycle and multipart uploads live in their own modules
# and register on this blueprint.
from credits.api import (  # noqa: E402, F401
    datasets_documents,
    datasets_files,
    datasets_lifecycle,
    datasets_multipart,
)
