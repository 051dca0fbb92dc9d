"""Publishing a draft, deprecating a published version, taking one down.

Publishing locks the version's row, so two concurrent publishes of one draft
publish it once (the second finds it published: 409); it refreshes the
provenance figures, pins the manifest hash and appends one audit event
carrying it. Deprecation keeps a version readable and points at its
successor. Taking down is for ops alone, with a reason, audited; the version
stays as a tombstone with its citation. Each function flushes, never commits.

With DOIs on, the caller passes the DOI hook (``dois``,
:mod:`credits.datasets.doi`): publishing makes the DOI findable before it
returns (a DataCite refusal raises and the caller rolls back); deprecation
and take-down mark the DOI for an update the caller finishes after its commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.datasets import provenance as provenance_service
from credits.datasets.drafts import search_text
from credits.datasets.errors import (
    DatasetForbidden,
    IncompleteMetadata,
    InvalidMetadata,
    VersionStateConflict,
)
from credits.datasets.manifest import manifest_hash
from credits.datasets.models import DatasetFile, DatasetVersion, VersionState
from credits.datasets.queries import render_version
from credits.datasets.schemas import (
    DATASHEET_SECTIONS,
    ServingVersion,
    TakedownOut,
    VersionOut,
)
from credits.db import utcnow
from credits.identity.access_datasets import can_take_down, load_version, require_manager
from credits.identity.actor import Actor
from credits.ledger.errors import ReasonRequired
from credits.reports.energy import EnergyPolicy

if TYPE_CHECKING:
    from credits.datasets.doi import DoiHook


def missing_for_publication(version: DatasetVersion) -> list[str]:
    """Every field, section and part a version still needs before it may be published."""
    missing = [
        field
        for field, present in (
            ("title", bool(version.title.strip())),
            ("description", bool(version.description.strip())),
            ("creators", bool(version.creators)),
            ("license", bool(version.license)),
            ("files", bool(version.files)),
        )
        if not present
    ]
    missing += [
        f"datasheet.{section}"
        for section in DATASHEET_SECTIONS
        if not str(version.datasheet.get(section, "")).strip()
    ]
    return missing


def publish_version(
    session: Session,
    *,
    version_id: int,
    actor: Actor,
    energy: EnergyPolicy,
    now: datetime | None = None,
    dois: DoiHook | None = None,
) -> VersionOut:
    """Freezes a draft: refreshes its provenance figures, pins its manifest hash,
    and appends one audit event ``dataset.version.published`` carrying it.

    The row is locked first, so of two concurrent publishes one publishes and
    the other finds it published and raises VersionStateConflict. Raises
    IncompleteMetadata with ``missing``, the full list of what is lacking, and,
    with ``dois``, DoiError when DataCite does not make the DOI findable.
    """
    version = load_version(session, actor, version_id, lock=True)
    require_manager(session, actor, version)
    if version.state != VersionState.DRAFT.value:
        raise VersionStateConflict(
            f"version {version.number} is already {version.state}", current_state=version.state
        )
    missing = missing_for_publication(version)
    if missing:
        raise IncompleteMetadata("publishing needs: " + ", ".join(missing), missing=missing)
    provenance_service.refresh(session, version, energy)
    at = now or utcnow()
    version.manifest_sha256 = manifest_hash(version.files)
    version.state = VersionState.PUBLISHED.value
    version.published_at = at
    version.published_by = actor.label
    version.search_text = search_text(version)
    session.flush()
    if dois is not None:
        dois.on_published(session, version)
    record_event(
        session,
        event_type="dataset.version.published",
        actor=actor.label,
        subject_type="dataset_version",
        subject_id=version.public_id,
        data={
            "concept_id": version.dataset.concept_id,
            "number": version.number,
            "manifest_sha256": version.manifest_sha256,
            "files": len(version.files),
            "bytes": sum(file.size for file in version.files),
            "license": version.license,
        },
        occurred_at=at,
    )
    return render_version(session, version)


def deprecate_version(
    session: Session,
    *,
    version_id: int,
    actor: Actor,
    successor_version_id: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
    dois: DoiHook | None = None,
) -> VersionOut:
    """Marks a published version deprecated: it stays readable and downloadable, and
    points at its successor, a later published version of the same dataset.

    Raises VersionStateConflict unless the version is published, and
    InvalidMetadata for a successor that is not a later published version.
    """
    version = load_version(session, actor, version_id, lock=True)
    require_manager(session, actor, version)
    if version.state != VersionState.PUBLISHED.value:
        raise VersionStateConflict(
            f"only a published version can be deprecated; this one is {version.state}",
            current_state=version.state,
        )
    successor = None
    if successor_version_id is not None:
        successor = session.get(DatasetVersion, successor_version_id)
        if not _is_successor(version, successor):
            raise InvalidMetadata(
                "the successor must be a later published version of the same dataset",
                field="successor",
            )
    at = now or utcnow()
    version.state = VersionState.DEPRECATED.value
    version.deprecated_at = at
    version.deprecated_by = actor.label
    version.deprecation_note = (note or "").strip() or None
    version.successor_id = None if successor is None else successor.id
    session.flush()
    if dois is not None:
        dois.on_changed(session, version)
    record_event(
        session,
        event_type="dataset.version.deprecated",
        actor=actor.label,
        subject_type="dataset_version",
        subject_id=version.public_id,
        data={"successor": None if successor is None else successor.public_id},
        occurred_at=at,
    )
    return render_version(session, version)


def _is_successor(version: DatasetVersion, successor: DatasetVersion | None) -> bool:
    if successor is None:
        return False
    if successor.dataset_id != version.dataset_id:
        return False
    if successor.number <= version.number:
        return False
    return successor.state == VersionState.PUBLISHED.value


def take_down_version(
    session: Session,
    *,
    version_id: int,
    actor: Actor,
    reason: str,
    now: datetime | None = None,
    dois: DoiHook | None = None,
) -> TakedownOut:
    """Takes a public version down (ops alone): its files are no longer served; its
    landing page stays as a tombstone with the citation and the reason.

    Appends the audit event ``dataset.version.taken_down`` with the reason. The answer
    names the other versions that still serve any of the same bytes
    (``same_files_still_served_by``): a take-down is of one version, and a file
    carried into a later version stays downloadable there until that one is taken
    down too. Raises DatasetForbidden for anyone but ops, ReasonRequired without a
    reason, and VersionStateConflict for a draft or a version already down.
    """
    if not can_take_down(actor):
        raise DatasetForbidden("only ops may take a dataset version down")
    text = (reason or "").strip()
    if not text:
        raise ReasonRequired("taking a dataset version down needs a reason")
    version = load_version(session, actor, version_id, lock=True)
    if version.state not in {VersionState.PUBLISHED.value, VersionState.DEPRECATED.value}:
        raise VersionStateConflict(
            f"only a published or deprecated version can be taken down; this one is "
            f"{version.state}",
            current_state=version.state,
        )
    at = now or utcnow()
    previous = version.state
    version.state = VersionState.TAKEN_DOWN.value
    version.taken_down_at = at
    version.taken_down_by = actor.label
    version.takedown_reason = text
    session.flush()
    if dois is not None:
        dois.on_changed(session, version)
    record_event(
        session,
        event_type="dataset.version.taken_down",
        actor=actor.label,
        subject_type="dataset_version",
        subject_id=version.public_id,
        data={
            "reason": text,
            "previous_state": previous,
            "manifest_sha256": version.manifest_sha256,
        },
        occurred_at=at,
    )
    return TakedownOut(
        **render_version(session, version).model_dump(),
        same_files_still_served_by=versions_serving_the_same_bytes(session, version.id),
    )


def versions_serving_the_same_bytes(session: Session, version_id: int) -> list[ServingVersion]:
    """Other versions still served (published or deprecated) that list any non-empty
    file of this version by its content (sha256), whatever its name or dataset."""
    mine = select(DatasetFile.sha256).where(
        DatasetFile.version_id == version_id, DatasetFile.size > 0
    )
    served = (VersionState.PUBLISHED.value, VersionState.DEPRECATED.value)
    serving = (
        select(DatasetFile.version_id)
        .where(DatasetFile.sha256.in_(mine), DatasetFile.version_id != version_id)
        .distinct()
    )
    rows = session.execute(
        select(
            DatasetVersion.id,
            DatasetVersion.public_id,
            DatasetVersion.dataset_id,
            DatasetVersion.number,
        )
        .where(DatasetVersion.id.in_(serving), DatasetVersion.state.in_(served))
        .order_by(DatasetVersion.id)
    )
    return [
        ServingVersion(
            id=row.id, public_id=row.public_id, dataset_id=row.dataset_id, number=row.number
        )
        for row in rows
    ]
