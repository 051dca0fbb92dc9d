"""Reading datasets: one version as its reader may see it, listings, search, the concept id.

Every read takes the actor (None for an anonymous visitor) and filters by
:func:`credits.identity.access_datasets.visible_versions`, so a draft the
actor may not read looks exactly like a missing version.

Search: the database's own full-text engine over the version's
``search_text`` (title, description, keywords, creator names), FTS5 on SQLite
and a ``tsvector`` with a GIN index on PostgreSQL (credits/datasets/search.py).
:func:`list_versions` filters by it, newest first; :func:`search_versions`, the
catalogue's, ranks by it and counts the matches.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, case, exists, func, select
from sqlalchemy.orm import Session, aliased

from credits.datasets.errors import DatasetNotFound, VersionNotFound
from credits.datasets.models import (
    Dataset,
    DatasetFile,
    DatasetKeyword,
    DatasetProvenance,
    DatasetVersion,
    ProvenanceKind,
    VersionState,
)
from credits.datasets.schemas import (
    Creator,
    FileOut,
    LabellingFacts,
    ProgramRef,
    ProvenanceLine,
    ProvenanceOut,
    RelatedIdentifier,
    VersionOut,
    VersionPage,
    VersionSummary,
)
from credits.datasets.search import matches, search_words
from credits.grants.models import Program
from credits.id_text import id_from_text
from credits.identity.access_datasets import load_version, visible_versions
from credits.identity.actor import Actor

# Only the tables: labelling orders are a provenance of versions, read here by id.
from credits.labelling.models import Annotation, Order, Vendor

DEFAULT_PAGE = 50
MAX_PAGE = 200
MICRO = Decimal(1_000_000)
# Which version the concept id names: the newest published, else deprecated, else a tombstone.
_CONCEPT_PREFERENCE = case(
    (DatasetVersion.state == VersionState.PUBLISHED.value, 0),
    (DatasetVersion.state == VersionState.DEPRECATED.value, 1),
    else_=2,
)


def render_provenance(session: Session, rows: Sequence[DatasetProvenance]) -> ProvenanceOut:
    """The lines and their sums: GPU-hours, credits, energy of the jobs; the programs
    of the allocations."""
    jobs = [row for row in rows if row.kind == "job"]
    program_ids = sorted({row.program_id for row in rows if row.program_id is not None})
    names = dict(
        session.execute(select(Program.id, Program.name).where(Program.id.in_(program_ids))).all()
    )
    orders = _labelling_facts(session, [r.labelling_order_id for r in rows])
    lines = [ProvenanceLine.model_validate(row, from_attributes=True) for row in rows]
    for line in lines:
        if line.labelling_order_id is not None:
            line.labelling = orders.get(line.labelling_order_id)
    return ProvenanceOut(
        lines=lines,
        gpu_hours=float(sum(Decimal(j.gpu_seconds_micro) for j in jobs) / MICRO / 3600),
        charged_micro=sum(job.charged_micro for job in jobs),
        kwh=float(sum(Decimal(job.kwh_micro) for job in jobs) / MICRO),
        kg_co2e=float(sum(Decimal(job.kg_co2e_micro) for job in jobs) / MICRO),
        programs=[ProgramRef(id=pid, name=names.get(pid, f"#{pid}")) for pid in program_ids],
        labelling_charged_micro=sum(
            row.charged_micro for row in rows if row.kind == ProvenanceKind.LABELLING_ORDER.value
        ),
    )


def _labelling_facts(
    session: Session, order_ids: Sequence[int | None]
) -> dict[int, LabellingFacts]:
    """Each labelling order's title, vendor and annotation count (settled orders never
    change, so these read the order as it is)."""
    wanted = sorted({order_id for order_id in order_ids if order_id is not None})
    if not wanted:
        return {}
    annotations = (
        select(func.count(Annotation.id)).where(Annotation.order_id == Order.id).scalar_subquery()
    )
    rows = session.execute(
        select(Order.id, Order.title, Vendor.name, annotations)
        .join(Vendor, Vendor.id == Order.vendor_id)
        .where(Order.id.in_(wanted))
    ).all()
    return {
        order_id: LabellingFacts(
            order_id=order_id, title=title, vendor=vendor, annotations=int(count or 0)
        )
        for order_id, title, vendor, count in rows
    }


def _files(version: DatasetVersion) -> list[FileOut]:
    return [
        FileOut(
            name=file.name,
            sha256=file.sha256,
            size=file.size,
            media_type=file.media_type,
            download_count=file.download_count,
        )
        for file in version.files
    ]


def render_version(session: Session, version: DatasetVersion) -> VersionOut:
    """The version as a schema; a taken-down version keeps its citation and its
    metadata but lists no files and no datasheet."""
    gone = version.state == VersionState.TAKEN_DOWN.value
    successor = None
    if version.successor_id is not None:
        successor = session.scalar(
            select(DatasetVersion.public_id).where(DatasetVersion.id == version.successor_id)
        )
    files = [] if gone else _files(version)
    return VersionOut(
        id=version.id,
        public_id=version.public_id,
        dataset_id=version.dataset_id,
        concept_id=version.dataset.concept_id,
        project_id=version.dataset.project_id,
        number=version.number,
        state=VersionState(version.state),
        title=version.title,
        description=version.description,
        creators=[Creator.model_validate(c) for c in version.creators],
        license=version.license,
        keywords=[k.keyword for k in version.keywords],
        related_identifiers=[
            RelatedIdentifier.model_validate(r) for r in version.related_identifiers
        ],
        citation=version.citation,
        datasheet={} if gone else dict(version.datasheet),
        files=files,
        total_size=sum(file.size for file in files),
        manifest_sha256=version.manifest_sha256,
        provenance=render_provenance(session, version.provenance),
        download_count=version.download_count,
        created_at=version.created_at,
        created_by=version.created_by,
        published_at=version.published_at,
        deprecated_at=version.deprecated_at,
        deprecation_note=version.deprecation_note,
        successor_public_id=successor,
        taken_down_at=version.taken_down_at,
        takedown_reason=version.takedown_reason,
    )


def version_id_for(session: Session, ref: str) -> int:
    """The internal id of a version named by its id or its public id (a UUID)."""
    text = ref.strip()
    if (number := id_from_text(text)) is not None:
        return number
    try:
        public_id = str(uuid.UUID(text))
    except ValueError:
        raise VersionNotFound(f"{text!r} is neither a version id nor a version UUID") from None
    found = session.scalar(select(DatasetVersion.id).where(DatasetVersion.public_id == public_id))
    if found is None:
        raise VersionNotFound(f"no dataset version has the id {text}")
    return found


def get_version(session: Session, actor: Actor | None, version_id: int) -> VersionOut:
    """The version, when the actor may read it; raises VersionNotFound otherwise."""
    return render_version(session, load_version(session, actor, version_id))


def resolve_concept(session: Session, actor: Actor | None, concept_id: str) -> VersionOut:
    """The version a concept id stands for: the newest published one, else the newest
    deprecated one, else the newest tombstone; raises DatasetNotFound when there is none
    the actor may read (a dataset with only a draft has no public version yet)."""
    query = (
        select(DatasetVersion)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .where(
            Dataset.concept_id == concept_id.strip().lower(),
            DatasetVersion.state != VersionState.DRAFT.value,
            visible_versions(actor),
        )
        .order_by(_CONCEPT_PREFERENCE, DatasetVersion.number.desc())
        .limit(1)
    )
    version = session.scalar(query)
    if version is None:
        raise DatasetNotFound(f"no published dataset has the concept id {concept_id}")
    return render_version(session, version)


def list_dataset_versions(
    session: Session, actor: Actor | None, dataset_id: int
) -> list[VersionSummary]:
    """Every version of a dataset the actor may read, newest first."""
    rows = session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id, visible_versions(actor))
        .order_by(DatasetVersion.number.desc())
    ).all()
    return [_summary(session, version) for version in rows]


def _summary(session: Session, version: DatasetVersion) -> VersionSummary:
    count, total = session.execute(
        select(func.count(DatasetFile.id), func.coalesce(func.sum(DatasetFile.size), 0)).where(
            DatasetFile.version_id == version.id
        )
    ).one()
    return VersionSummary(
        id=version.id,
        public_id=version.public_id,
        concept_id=version.dataset.concept_id,
        project_id=version.dataset.project_id,
        number=version.number,
        state=VersionState(version.state),
        title=version.title,
        license=version.license,
        keywords=[k.keyword for k in version.keywords],
        published_at=version.published_at,
        file_count=int(count),
        total_size=int(total),
    )


def _text_condition(session: Session, text: str) -> ColumnElement[bool] | None:
    words = search_words(text)
    if not words:
        return None
    found = matches(session, words).subquery()
    return DatasetVersion.id.in_(select(found.c.version_id))


def _filters(
    actor: Actor | None,
    *,
    license: str | None,
    keyword: str | None,
    program_id: int | None,
    project_id: int | None,
    states: Sequence[VersionState],
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool] | None] = [
        visible_versions(actor),
        DatasetVersion.state.in_([state.value for state in states]),
        None if license is None else func.lower(DatasetVersion.license) == license.lower(),
        None if keyword is None else _has_keyword(keyword),
        None if program_id is None else _funded_by(program_id),
        None if project_id is None else _of_project(project_id),
    ]
    return [condition for condition in conditions if condition is not None]


def list_versions(
    session: Session,
    actor: Actor | None,
    *,
    text: str | None = None,
    license: str | None = None,
    keyword: str | None = None,
    program_id: int | None = None,
    project_id: int | None = None,
    states: Sequence[VersionState] = (VersionState.PUBLISHED,),
    cursor: int | None = None,
    limit: int = DEFAULT_PAGE,
) -> VersionPage:
    """A page of the versions the actor may read matching every filter given, newest
    id first. ``states`` defaults to published versions alone, the catalogue's view."""
    limit = max(1, min(limit, MAX_PAGE))
    conditions = _filters(
        actor,
        license=license,
        keyword=keyword,
        program_id=program_id,
        project_id=project_id,
        states=states,
    )
    text_condition = _text_condition(session, text or "")
    if text_condition is not None:
        conditions.append(text_condition)
    if cursor is not None:
        conditions.append(DatasetVersion.id < cursor)
    query = (
        select(DatasetVersion)
        .where(*conditions)
        .order_by(DatasetVersion.id.desc())
        .limit(limit + 1)
    )
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return VersionPage(
        items=[_summary(session, version) for version in rows],
        next_cursor=rows[-1].id if more and rows else None,
    )


@dataclass(frozen=True)
class SearchPage:
    """One page of the catalogue: ``total`` matches in all, best first when searched."""

    items: list[VersionSummary]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def search_versions(
    session: Session,
    actor: Actor | None,
    *,
    text: str | None = None,
    license: str | None = None,
    keyword: str | None = None,
    program_id: int | None = None,
    project_id: int | None = None,
    states: Sequence[VersionState] = (VersionState.PUBLISHED,),
    newest_only: bool = False,
    page: int = 1,
    per_page: int = 20,
) -> SearchPage:
    """The catalogue's search: the versions the actor may read matching every filter,
    ranked by the full-text engine's score when ``text`` has words (newest first
    among equals and without text), a page at a time (pages count from 1).
    ``newest_only`` keeps one version per dataset: its newest one in ``states``."""
    per_page = max(1, min(per_page, MAX_PAGE))
    page = max(1, page)
    conditions = _filters(
        actor,
        license=license,
        keyword=keyword,
        program_id=program_id,
        project_id=project_id,
        states=states,
    )
    if newest_only:
        later = aliased(DatasetVersion)
        conditions.append(
            ~exists().where(
                later.dataset_id == DatasetVersion.dataset_id,
                later.number > DatasetVersion.number,
                later.state.in_([state.value for state in states]),
            )
        )
    words = search_words(text or "")
    query = select(DatasetVersion).where(*conditions)
    if words:
        found = matches(session, words).subquery()
        query = query.join(found, found.c.version_id == DatasetVersion.id).order_by(
            found.c.score, DatasetVersion.id.desc()
        )
    else:
        query = query.order_by(DatasetVersion.id.desc())
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(query.limit(per_page).offset((page - 1) * per_page)).all()
    return SearchPage(
        items=[_summary(session, version) for version in rows],
        total=int(total or 0),
        page=page,
        per_page=per_page,
    )


def _has_keyword(keyword: str) -> ColumnElement[bool]:
    return DatasetVersion.id.in_(
        select(DatasetKeyword.version_id).where(
            func.lower(DatasetKeyword.keyword) == keyword.strip().lower()
        )
    )


def _funded_by(program_id: int) -> ColumnElement[bool]:
    return DatasetVersion.id.in_(
        select(DatasetProvenance.version_id).where(DatasetProvenance.program_id == program_id)
    )


def _of_project(project_id: int) -> ColumnElement[bool]:
    return DatasetVersion.dataset_id.in_(select(Dataset.id).where(Dataset.project_id == project_id))


def latest_version_number(session: Session, dataset_id: int) -> int:
    found = session.scalar(
        select(func.max(DatasetVersion.number)).where(DatasetVersion.dataset_id == dataset_id)
    )
    return int(found or 0)
