"""The public dataset catalogue: search, a landing page per version, a project's datasets.

Nothing here needs a sign-in: a visitor reads published and deprecated
versions and the tombstones of taken-down ones; a project's members (and ops)
also read its drafts, under a "draft" banner. A version out of the reader's
reach answers 404, as a missing one does. Pages only read: datasets are made
and changed through the API and the CLI.

URLs follow credits/datasets/urls.py: ``/datasets/<concept id>`` redirects to
the newest published version, ``/datasets/<concept id>/v<n>`` to version n,
and ``/datasets/versions/<uuid>`` is a version's landing page. Its files and
documents (Croissant, DataCite, the datasheet, ``SHA256SUMS``) are served by
the API's routes at the URLs the same module gives.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, redirect, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin_ui.transparency_pages import proof_url
from admin_ui.web import current_actor, render, transaction
from credits.api.auth import credits_extension
from credits.api.public_url import public_base_url
from credits.datasets import queries, urls
from credits.datasets.citation import apa, bibtex
from credits.datasets.doi import doi_of
from credits.datasets.errors import DatasetNotFound, VersionNotFound
from credits.datasets.identifiers import license_name, license_url
from credits.datasets.models import Dataset, DatasetProvenance, DatasetVersion, VersionState
from credits.datasets.schemas import DATASHEET_SECTIONS, NameType, VersionOut, VersionSummary
from credits.grants.models import Program
from credits.identity.access_datasets import visible_versions
from credits.identity.actor import Actor
from credits.transparency import published

blueprint = Blueprint("ui_datasets", __name__)
PER_PAGE = 20
# What the catalogue lists: each dataset's newest published version (older and
# deprecated ones are reached from its landing page).
LISTED = (VersionState.PUBLISHED,)
# A project's section lists every version its members may read.
PROJECT_STATES = tuple(VersionState)
DOCUMENTS = {
    "croissant": ("croissant.json", "application/ld+json", "Croissant (JSON-LD)"),
    "datacite": ("datacite.json", "application/vnd.datacite.datacite+json", "DataCite (JSON)"),
    "datasheet": ("datasheet.md", "text/markdown", "Datasheet (Markdown)"),
}
SUMS = "SHA256SUMS"


def base_url() -> str:
    """This site's public origin: the configured one, else as the visitor reached it
    (proxies per settings)."""
    return public_base_url().rstrip("/")


def publisher() -> str:
    return credits_extension().settings.instance_name


def human_size(size: int) -> str:
    """1536 → '1.5 KiB'; bytes below 1 KiB as a count."""
    if size < 1024:
        return f"{size:,} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:,.1f} {unit}"
    raise AssertionError("unreachable")


def json_ld_markup(document: dict[str, Any]) -> Markup:
    """JSON for a ``<script type="application/ld+json">`` data block: ``<``, ``>`` and
    ``&`` written as JSON escapes, so no text can close the element or open a comment."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above; a data block, never HTML


def _schema_creator(creator: Any) -> dict[str, Any]:
    person = creator.name_type is NameType.PERSONAL
    node: dict[str, Any] = {"@type": "Person" if person else "Organization", "name": creator.name}
    if creator.orcid:
        node["sameAs"] = f"https://orcid.org/{creator.orcid}"
    if creator.affiliation:
        affiliation: dict[str, Any] = {"@type": "Organization", "name": creator.affiliation}
        if creator.ror:
            affiliation["sameAs"] = f"https://ror.org/{creator.ror}"
        node["affiliation"] = affiliation
    return node


def schema_org(version: VersionOut, base: str, site: str, doi: str | None) -> dict[str, Any]:
    """The version as a schema.org ``Dataset`` for search engines (its DOI first, when
    it has one that resolves)."""
    landing = urls.version_url(base, version.public_id)
    identifiers = [landing, f"urn:uuid:{version.public_id}"]
    if doi:
        identifiers.insert(0, f"https://doi.org/{doi}")
    document: dict[str, Any] = {
        "@context": "https://schema.org/",
        "@type": "Dataset",
        "@id": landing,
        "url": landing,
        "sameAs": urls.concept_url(base, version.concept_id),
        "identifier": identifiers,
        "name": version.title,
        "description": version.description,
        "version": str(version.number),
        "keywords": version.keywords,
        "creator": [_schema_creator(creator) for creator in version.creators],
        "publisher": {"@type": "Organization", "name": site},
        "isAccessibleForFree": True,
        "citation": apa(version, base_url=base, publisher=site, doi=doi),
        "distribution": [
            {
                "@type": "DataDownload",
                "name": file.name,
                "contentUrl": urls.file_url(base, version.public_id, file.name),
                "encodingFormat": file.media_type,
                "contentSize": f"{file.size} B",
                "sha256": file.sha256,
            }
            for file in version.files
        ],
        "subjectOf": {
            "@type": "DigitalDocument",
            "encodingFormat": "application/ld+json",
            "url": urls.document_url(base, version.public_id, DOCUMENTS["croissant"][0]),
        },
    }
    if version.license:
        document["license"] = license_url(version.license)
    if version.published_at is not None:
        document["datePublished"] = version.published_at.date().isoformat()
    if version.provenance.programs:
        document["funder"] = [
            {"@type": "Organization", "name": program.name}
            for program in version.provenance.programs
        ]
    return document


@dataclass(frozen=True)
class Filters:
    """The catalogue's query string, read leniently: a bad value is ignored."""

    text: str
    license: str
    keyword: str
    program_id: int | None
    page: int

    @classmethod
    def from_args(cls, args: Any) -> Filters:
        def number(name: str) -> int | None:
            value = str(args.get(name, "")).strip()
            return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else None

        return cls(
            text=str(args.get("q", "")).strip()[:200],
            license=str(args.get("license", "")).strip()[:100],
            keyword=str(args.get("keyword", "")).strip()[:100],
            program_id=number("program"),
            page=max(1, min(number("page") or 1, 10_000)),
        )

    def query(self, **changes: Any) -> dict[str, Any]:
        """The query string of this search with ``changes`` (for links to pages and filters)."""
        values: dict[str, Any] = {
            "q": self.text,
            "license": self.license,
            "keyword": self.keyword,
            "program": self.program_id,
            "page": self.page if self.page > 1 else None,
        } | changes
        return {key: value for key, value in values.items() if value not in (None, "")}

    @property
    def active(self) -> bool:
        return bool(self.text or self.license or self.keyword or self.program_id)


def _licences(session: Session, me: Actor | None) -> list[str]:
    found = session.scalars(
        select(DatasetVersion.license)
        .where(
            visible_versions(me),
            DatasetVersion.state.in_([state.value for state in LISTED]),
            DatasetVersion.license.is_not(None),
        )
        .distinct()
    ).all()
    return sorted({licence for licence in found if licence})


def _programs(session: Session, me: Actor | None) -> list[tuple[int, str]]:
    rows = session.execute(
        select(Program.id, Program.name)
        .join(DatasetProvenance, DatasetProvenance.program_id == Program.id)
        .join(DatasetVersion, DatasetVersion.id == DatasetProvenance.version_id)
        .where(visible_versions(me), DatasetVersion.state.in_([s.value for s in LISTED]))
        .distinct()
    ).all()
    return sorted(((pid, name) for pid, name in rows), key=lambda row: row[1].lower())


@blueprint.get("/datasets")
def catalogue() -> ResponseReturnValue:
    me = current_actor()
    filters = Filters.from_args(request.args)
    with transaction() as db:
        found = queries.search_versions(
            db,
            me,
            text=filters.text,
            license=filters.license or None,
            keyword=filters.keyword or None,
            program_id=filters.program_id,
            states=LISTED,
            newest_only=True,
            page=filters.page,
            per_page=PER_PAGE,
        )
        licences = _licences(db, me)
        programs = _programs(db, me)
    return render(
        "datasets/catalogue.html",
        found=found,
        filters=filters,
        licences=licences,
        programs=programs,
        size=human_size,
    )


def _landing_redirect(public_id: str) -> ResponseReturnValue:
    return redirect(url_for(".version_page", public_id=public_id))


@blueprint.get("/datasets/<uuid:concept_id>")
def concept(concept_id: uuid.UUID) -> ResponseReturnValue:
    """The dataset: its newest published version (else deprecated, else its tombstone)."""
    me = current_actor()
    with transaction() as db:
        try:
            version = queries.resolve_concept(db, me, str(concept_id))
        except DatasetNotFound:
            abort(404)
    return _landing_redirect(version.public_id)


@blueprint.get("/datasets/<uuid:concept_id>/v<int:number>")
def numbered_version(concept_id: uuid.UUID, number: int) -> ResponseReturnValue:
    me = current_actor()
    with transaction() as db:
        public_id = db.scalar(
            select(DatasetVersion.public_id)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(
                Dataset.concept_id == str(concept_id),
                DatasetVersion.number == number,
                visible_versions(me),
            )
        )
    if public_id is None:
        abort(404)
    return _landing_redirect(public_id)


@blueprint.get("/datasets/versions/<uuid:public_id>")
def version_page(public_id: uuid.UUID) -> ResponseReturnValue:
    me = current_actor()
    base, site = base_url(), publisher()
    with transaction() as db:
        try:
            version = queries.get_version(db, me, queries.version_id_for(db, str(public_id)))
        except VersionNotFound:
            abort(404)
        versions = queries.list_dataset_versions(db, me, version.dataset_id)
        registered = doi_of(db, version.id)
        log_index = published.log_index_of(
            db,
            event_type="dataset.version.published",
            subject_type="dataset_version",
            subject_id=str(version.public_id),
        )
    doi = registered[0] if registered else None
    public = version.state in {VersionState.PUBLISHED, VersionState.DEPRECATED}
    documents = {
        key: (urls.document_url(base, version.public_id, name), media, label)
        for key, (name, media, label) in DOCUMENTS.items()
    }
    return render(
        "datasets/version.html",
        v=version,
        versions=versions,
        public=public,
        gone=version.state is VersionState.TAKEN_DOWN,
        draft=version.state is VersionState.DRAFT,
        sections=[
            (title, version.datasheet.get(key, "")) for key, title in DATASHEET_SECTIONS.items()
        ],
        licence_name=_licence_name(version.license),
        licence_url=license_url(version.license) if version.license else None,
        doi=doi,
        bibtex=bibtex(version, base_url=base, publisher=site, doi=doi),
        apa=apa(version, base_url=base, publisher=site, doi=doi),
        provenance=_provenance_sentence(version),
        json_ld=json_ld_markup(schema_org(version, base, site, doi)) if public else None,
        documents=documents if public else {},
        sums_url=urls.document_url(base, version.public_id, SUMS),
        canonical=urls.version_url(base, version.public_id),
        file_url=lambda name: urls.file_url(base, version.public_id, name),
        size=human_size,
        log_index=log_index,
        proof_url=proof_url,
    )


def _licence_name(identifier: str | None) -> str | None:
    if identifier is None:
        return None
    try:
        return license_name(identifier)
    except KeyError:
        return identifier


def _provenance_sentence(version: VersionOut) -> str | None:
    if not version.provenance.lines:
        return None
    sentence = version.provenance.sentence().replace("CO2e", "CO\u2082e")
    return sentence[:1].upper() + sentence[1:] + "."


def project_datasets(session: Session, me: Actor, project_id: int) -> list[VersionSummary]:
    """Every version of the project's datasets the actor may read, drafts included,
    newest first (for the project page)."""
    return queries.list_versions(
        session, me, project_id=project_id, states=PROJECT_STATES, limit=queries.MAX_PAGE
    ).items
