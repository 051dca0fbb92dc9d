"""A published version's documents: Croissant, DataCite, the datasheet and the
checksums, by version id and by the version's public UUID. Registered on the
datasets blueprints (:mod:`credits.api.datasets`)."""

from __future__ import annotations

import uuid

from flask import Response, current_app
from flask.typing import ResponseReturnValue

from credits.api.auth import credits_extension, session_factory
from credits.api.datasets import (
    _by_public_id,
    _reader,
    blob_store,
    blueprint,
    public_blueprint,
)
from credits.api.openapi import operation
from credits.api.public_url import public_base_url
from credits.datasets import exports, queries
from credits.datasets.doi import doi_of
from credits.datasets.errors import FileGone
from credits.datasets.manifest import sha256sums
from credits.datasets.models import VersionState
from credits.datasets.schemas import VersionOut
from credits.db import session_scope


def _publisher() -> str:
    return credits_extension().settings.instance_name


def _readable(version_id: int) -> VersionOut:
    with session_scope(session_factory()) as session:
        return queries.get_version(session, _reader(), version_id)


def _resolving_doi(version_id: int) -> str | None:
    """The version's DOI once it resolves, for the documents' citations."""
    with session_scope(session_factory()) as session:
        registered = doi_of(session, version_id)
    return registered[0] if registered else None


CROISSANT = operation(
    "A version as Croissant JSON-LD",
    media_type="application/ld+json",
    authenticated=False,
    problems=(401, 404),
)
DATACITE = operation(
    "A version as DataCite JSON",
    media_type="application/vnd.datacite.datacite+json",
    authenticated=False,
    problems=(401, 404),
)
DATASHEET = operation(
    "A version's datasheet as Markdown",
    media_type="text/markdown",
    authenticated=False,
    problems=(401, 404),
)
CHECKSUMS = operation(
    "A version's checksums",
    media_type="text/plain",
    authenticated=False,
    problems=(401, 404, 410),
)


@blueprint.get("/datasets/versions/<int:version_id>/croissant.json")
@CROISSANT
def croissant(version_id: int) -> ResponseReturnValue:
    """Croissant 1.0 with the Responsible AI fields, a sha256 per file and a record set per
    CSV or JSON Lines file."""
    version = _readable(version_id)
    heads = exports.tabular_heads(version, blob_store())
    document = exports.croissant(
        version,
        base_url=public_base_url(),
        publisher=_publisher(),
        heads=heads,
        doi=_resolving_doi(version.id),
    )
    return _json_document(document, "application/ld+json")


@blueprint.get("/datasets/versions/<int:version_id>/datacite.json")
@DATACITE
def datacite(version_id: int) -> ResponseReturnValue:
    """DataCite Metadata Schema 4 with a fundingReference per program; the version's DOI
    once it resolves."""
    version = _readable(version_id)
    document = exports.datacite(
        version,
        base_url=public_base_url(),
        publisher=_publisher(),
        funder_name=_publisher(),
        doi=_resolving_doi(version.id),
    )
    return _json_document(document, "application/vnd.datacite.datacite+json")


def _json_document(document: object, media_type: str) -> Response:
    return Response(current_app.json.dumps(document), content_type=media_type)


@blueprint.get("/datasets/versions/<int:version_id>/datasheet.md")
@DATASHEET
def datasheet(version_id: int) -> ResponseReturnValue:
    """The datasheet (Datasheets for Datasets) with the citation and the provenance."""
    version = _readable(version_id)
    text = exports.datasheet_markdown(
        version, base_url=public_base_url(), publisher=_publisher(), doi=_resolving_doi(version.id)
    )
    return Response(text, content_type="text/markdown; charset=utf-8")


@blueprint.get("/datasets/versions/<int:version_id>/SHA256SUMS")
@CHECKSUMS
def checksums(version_id: int) -> ResponseReturnValue:
    """The files as ``sha256sum -c`` reads them; 410 once the version was taken down."""
    version = _readable(version_id)
    if version.state is VersionState.TAKEN_DOWN:
        raise FileGone(f"version {version.number} of this dataset was taken down")
    return Response(sha256sums(version.files), content_type="text/plain; charset=utf-8")


@public_blueprint.get("/datasets/versions/<uuid:public_id>/croissant.json")
@CROISSANT
def public_croissant(public_id: uuid.UUID) -> ResponseReturnValue:
    """As GET /api/v1/datasets/versions/{version_id}/croissant.json, by the version's UUID."""
    return croissant(_by_public_id(public_id))


@public_blueprint.get("/datasets/versions/<uuid:public_id>/datacite.json")
@DATACITE
def public_datacite(public_id: uuid.UUID) -> ResponseReturnValue:
    """As GET /api/v1/datasets/versions/{version_id}/datacite.json, by the version's UUID."""
    return datacite(_by_public_id(public_id))


@public_blueprint.get("/datasets/versions/<uuid:public_id>/datasheet.md")
@DATASHEET
def public_datasheet(public_id: uuid.UUID) -> ResponseReturnValue:
    """As GET /api/v1/datasets/versions/{version_id}/datasheet.md, by the version's UUID."""
    return datasheet(_by_public_id(public_id))


@public_blueprint.get("/datasets/versions/<uuid:public_id>/SHA256SUMS")
@CHECKSUMS
def public_checksums(public_id: uuid.UUID) -> ResponseReturnValue:
    """As GET /api/v1/datasets/versions/{version_id}/SHA256SUMS, by the version's UUID."""
    return checksums(_by_public_id(public_id))
