"""Datasets: create one, start a new version, edit a draft's metadata, datasheet and files.

Every function takes the caller's session, checks who is acting and what
state the version is in before it writes, flushes and never commits. A draft
alone changes: any edit of a published, deprecated or taken-down version
raises VersionImmutable (409). Publishing, deprecation and take-down are in
:mod:`credits.datasets.publishing`; provenance in
:mod:`credits.datasets.provenance`; download counts in
:mod:`credits.datasets.downloads`.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.datasets.blobs import BlobRef
from credits.datasets.drafts import editable_draft, search_text
from credits.datasets.errors import (
    DatasetFileNotFound,
    DatasetForbidden,
    DatasetNotFound,
    DraftExists,
    DuplicateFileName,
    InvalidMetadata,
    VersionTooLarge,
)
from credits.datasets.file_names import file_named
from credits.datasets.models import (
    TITLE_MAX_LENGTH,
    Dataset,
    DatasetFile,
    DatasetKeyword,
    DatasetProvenance,
    DatasetVersion,
    VersionState,
)
from credits.datasets.queries import latest_version_number, render_version
from credits.datasets.schemas import (
    DatasheetPatch,
    FileOut,
    MetadataPatch,
    VersionOut,
)
from credits.db import utcnow
from credits.grants.errors import ProjectNotFound
from credits.identity.access_datasets import (
    can_manage_project_datasets,
    can_read_dataset,
)
from credits.identity.actor import Actor
from credits.storage.names import duplicate_names, safe_file_name

if TYPE_CHECKING:
    from credits.datasets.doi import DoiHook

Patch = TypeVar("Patch", MetadataPatch, DatasheetPatch)
DOWNLOAD_WINDOW = timedelta(seconds=30)
_MEDIA_TYPES = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".jsonl": "application/jsonlines",
    ".ndjson": "application/jsonlines",
    ".json": "application/json",
    ".parquet": "application/x-parquet",
    ".txt": "text/plain",
    ".md": "text/markdown",
}
_COPIED_FIELDS = (
    "title",
    "description",
    "creators",
    "license",
    "related_identifiers",
    "citation",
    "datasheet",
    "search_text",
)


def media_type_of(name: str) -> str:
    """The media type a file's name suggests; Croissant's spelling for tabular data."""
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in _MEDIA_TYPES:
        return _MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def create_dataset(
    session: Session,
    *,
    project_id: int,
    title: str,
    actor: Actor,
    now: datetime | None = None,
    dois: DoiHook | None = None,
) -> VersionOut:
    """A new dataset of the project with its first version, a draft titled ``title``.

    Raises ProjectNotFound when the project does not exist or the actor is
    neither ops nor one of its members, and InvalidMetadata for a bad title.
    """
    if not can_manage_project_datasets(session, actor, project_id):
        raise ProjectNotFound(f"no project has the id {project_id}")
    clean = title.strip()
    if not clean or len(clean) > TITLE_MAX_LENGTH:
        raise InvalidMetadata(
            f"a dataset needs a title of 1 to {TITLE_MAX_LENGTH} characters", field="title"
        )
    at = now or utcnow()
    dataset = Dataset(
        concept_id=str(uuid.uuid4()), project_id=project_id, created_by=actor.label, created_at=at
    )
    session.add(dataset)
    session.flush()
    version = _new_row(dataset, number=1, actor=actor, at=at)
    version.title = clean
    session.add(version)
    session.flush()
    version.search_text = search_text(version)
    session.flush()
    if dois is not None:
        dois.on_saved(session, version)
    return render_version(session, version)


def _new_row(dataset: Dataset, *, number: int, actor: Actor, at: datetime) -> DatasetVersion:
    return DatasetVersion(
        public_id=str(uuid.uuid4()),
        dataset_id=dataset.id,
        number=number,
        state=VersionState.DRAFT.value,
        creators=[],
        related_identifiers=[],
        datasheet={},
        created_by=actor.label,
        created_at=at,
        updated_at=at,
    )


def new_version(
    session: Session,
    *,
    dataset_id: int,
    actor: Actor,
    now: datetime | None = None,
    dois: DoiHook | None = None,
) -> VersionOut:
    """A new draft of the dataset, a copy of its newest public version's metadata,
    datasheet, keywords, provenance and file list (the rows; blobs are shared).

    A dataset whose versions were all taken down starts its new draft empty.
    Raises DatasetNotFound for a dataset that does not exist or that the actor may
    not read (its only version a draft of another project: the same answer, so
    the refusal does not tell that it exists), DatasetForbidden for one the actor
    reads but does not manage, and DraftExists when the dataset already has a
    draft (finish or edit that one).
    """
    dataset = session.get(Dataset, dataset_id, with_for_update=True, populate_existing=True)
    if dataset is None:
        raise DatasetNotFound(f"no dataset has the id {dataset_id}")
    if not can_manage_project_datasets(session, actor, dataset.project_id):
        if not can_read_dataset(session, actor, dataset_id):
            raise DatasetNotFound(f"no dataset has the id {dataset_id}")
        raise DatasetForbidden("only the project's members or ops may add versions")
    draft = session.scalar(
        select(DatasetVersion.number).where(
            DatasetVersion.dataset_id == dataset_id,
            DatasetVersion.state == VersionState.DRAFT.value,
        )
    )
    if draft is not None:
        raise DraftExists(f"version {draft} of this dataset is still a draft", number=draft)
    at = now or utcnow()
    version = _new_row(
        dataset, number=latest_version_number(session, dataset_id) + 1, actor=actor, at=at
    )
    source = _copy_source(session, dataset_id)
    if source is not None:
        _copy_into(version, source, actor=actor, at=at)
    session.add(version)
    session.flush()
    if dois is not None:
        dois.on_saved(session, version)
    return render_version(session, version)


def _copy_source(session: Session, dataset_id: int) -> DatasetVersion | None:
    return session.scalar(
        select(DatasetVersion)
        .where(
            DatasetVersion.dataset_id == dataset_id,
            DatasetVersion.state.in_([VersionState.PUBLISHED.value, VersionState.DEPRECATED.value]),
        )
        .order_by(DatasetVersion.number.desc())
        .limit(1)
    )


def _copy_into(
    version: DatasetVersion, source: DatasetVersion, *, actor: Actor, at: datetime
) -> None:
    for field in _COPIED_FIELDS:
        value = getattr(source, field)
        setattr(version, field, type(value)(value) if isinstance(value, list | dict) else value)
    version.keywords = [
        DatasetKeyword(keyword=k.keyword, position=k.position) for k in source.keywords
    ]
    version.files = [
        DatasetFile(name=f.name, sha256=f.sha256, size=f.size, media_type=f.media_type, added_at=at)
        for f in source.files
    ]
    version.provenance = [
        DatasetProvenance(
            kind=p.kind,
            job_id=p.job_id,
            allocation_id=p.allocation_id,
            labelling_order_id=p.labelling_order_id,
            program_id=p.program_id,
            explicit=p.explicit,
            charged_micro=p.charged_micro,
            gpu_seconds_micro=p.gpu_seconds_micro,
            kwh_micro=p.kwh_micro,
            kg_co2e_micro=p.kg_co2e_micro,
            recorded_by=actor.label,
            recorded_at=at,
        )
        for p in source.provenance
    ]


def _unique_keywords(keywords: Iterable[str]) -> list[str]:
    """The keywords in order, the first of any that differ only in case kept."""
    seen: set[str] = set()
    kept = []
    for keyword in keywords:
        if keyword.casefold() not in seen:
            seen.add(keyword.casefold())
            kept.append(keyword)
    return kept


def update_metadata(
    session: Session,
    *,
    version_id: int,
    changes: MetadataPatch | dict[str, Any],
    actor: Actor,
    now: datetime | None = None,
) -> VersionOut:
    """Sets the metadata fields named in ``changes`` on a draft; the rest stay.

    Raises InvalidMetadata (with pydantic's field errors) for a bad value (an
    ORCID or ROR id failing its checksum, a licence not on the SPDX list),
    VersionImmutable for a version that is not a draft, and DatasetForbidden
    or VersionNotFound for an actor who may not change it.
    """
    patch = _validated(MetadataPatch, changes)
    version = editable_draft(session, actor, version_id)
    values = patch.model_dump(mode="json", include=patch.model_fields_set)
    for field in ("title", "description", "license", "citation", "creators", "related_identifiers"):
        if field in values:
            setattr(version, field, values[field])
    if "keywords" in values:
        version.keywords = []
        session.flush()  # the old rows go before new ones take their positions
        version.keywords = [
            DatasetKeyword(keyword=keyword, position=index)
            for index, keyword in enumerate(_unique_keywords(values["keywords"]))
        ]
    _touch(session, version, now)
    return render_version(session, version)


def update_datasheet(
    session: Session,
    *,
    version_id: int,
    changes: DatasheetPatch | dict[str, Any],
    actor: Actor,
    now: datetime | None = None,
) -> VersionOut:
    """Sets the datasheet sections named in ``changes`` on a draft; the rest stay.

    Raises InvalidMetadata for an unknown section or an over-long text, and
    VersionImmutable, DatasetForbidden or VersionNotFound as update_metadata.
    """
    patch = _validated(DatasheetPatch, changes)
    version = editable_draft(session, actor, version_id)
    sections = dict(version.datasheet)
    for section in patch.model_fields_set:
        sections[section] = str(getattr(patch, section)).strip()
    version.datasheet = sections
    _touch(session, version, now)
    return render_version(session, version)


def _validated(model: type[Patch], changes: Patch | dict[str, Any]) -> Patch:
    if isinstance(changes, model):
        return changes
    try:
        return model.model_validate(changes)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        first = problems[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidMetadata(
            f"{where}: {first['msg']}",
            errors=[{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in problems],
        ) from None


def _touch(session: Session, version: DatasetVersion, now: datetime | None) -> None:
    session.flush()
    session.refresh(version, ["keywords"])
    version.search_text = search_text(version)
    version.updated_at = now or utcnow()
    session.flush()


def add_file(
    session: Session,
    *,
    version_id: int,
    name: str,
    blob: BlobRef,
    actor: Actor,
    media_type: str | None = None,
    max_version_bytes: int | None = None,
) -> FileOut:
    """Adds a stored blob to a draft under ``name``.

    The name is made safe by :func:`credits.storage.names.safe_file_name`
    (raises UnsafeFileName: traversal, control or bidi characters, length).
    Raises DuplicateFileName when the draft has a file of that name (ignoring
    case, or clashing as file and folder), VersionTooLarge when the draft's
    files would exceed ``max_version_bytes``, and VersionImmutable for a
    version that is not a draft.
    """
    clean = safe_file_name(name)
    version = editable_draft(session, actor, version_id)
    existing = [file.name for file in version.files]
    if duplicate_names([*existing, clean]):
        raise DuplicateFileName(f"this version already has a file named {clean!r}", name=clean)
    total = sum(file.size for file in version.files) + blob.size
    if max_version_bytes is not None and total > max_version_bytes:
        raise VersionTooLarge(
            f"the version's files would come to {total:,} bytes, over the limit of "
            f"{max_version_bytes:,}",
            max_bytes=max_version_bytes,
        )
    file = DatasetFile(
        name=clean,
        sha256=blob.sha256,
        size=blob.size,
        media_type=(media_type or "").strip() or media_type_of(clean),
    )
    version.files.append(file)
    _touch(session, version, None)
    return FileOut(
        name=file.name,
        sha256=file.sha256,
        size=file.size,
        media_type=file.media_type,
        download_count=0,
    )


def remove_file(session: Session, *, version_id: int, name: str, actor: Actor) -> None:
    """Takes the file ``name`` out of a draft (its blob stays for other versions).

    Raises DatasetFileNotFound, and VersionImmutable for a version that is not a draft.
    """
    version = editable_draft(session, actor, version_id)
    file = file_named(version.files, name)
    if file is None:
        raise DatasetFileNotFound(f"this version has no file named {name!r}", name=name)
    version.files.remove(file)
    _touch(session, version, None)
