"""A dataset's life: draft, publish, new version, deprecate, take down; who sees what."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from datasets_world import CSV, ENERGY, DatasetsWorld, build_world
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.datasets import downloads, publishing, queries, service
from credits.datasets.errors import (
    DatasetForbidden,
    DatasetNotFound,
    DraftExists,
    FileGone,
    VersionNotFound,
    VersionStateConflict,
)
from credits.datasets.manifest import canonical_manifest, manifest_hash, sha256sums
from credits.datasets.models import VersionState
from credits.db import utcnow
from credits.grants.errors import ProjectNotFound
from credits.ledger.errors import ReasonRequired


@pytest.fixture
def world(session: Session) -> DatasetsWorld:
    return build_world(session)


def _published(session: Session, world: DatasetsWorld, **files: bytes) -> int:
    draft = world.draft(session)
    world.complete(session, draft.id, **files)
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    return draft.id


def _audit(session: Session, subject_id: str) -> list[tuple[str, dict[str, object]]]:
    rows = session.execute(
        select(AuditEvent.event_type, AuditEvent.canonical_json)
        .where(AuditEvent.subject_type == "dataset_version", AuditEvent.subject_id == subject_id)
        .order_by(AuditEvent.id)
    ).all()
    return [(kind, json.loads(canonical)["data"]) for kind, canonical in rows]


def test_publishing_freezes_the_manifest_and_writes_one_audit_event(
    session: Session, world: DatasetsWorld
) -> None:
    draft = world.draft(session)
    world.complete(session, draft.id, **{"events.csv": CSV, "docs__README.md": b"# Events\n"})

    published = publishing.publish_version(
        session, version_id=draft.id, actor=world.member, energy=ENERGY
    )

    assert published.state is VersionState.PUBLISHED
    entries = sorted([f.name, f.sha256, f.size] for f in published.files)
    expected = hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()
    assert published.manifest_sha256 == expected == manifest_hash(published.files)
    assert canonical_manifest(published.files).startswith('[["docs/README.md",')
    ((kind, data),) = _audit(session, published.public_id)
    assert kind == "dataset.version.published"
    assert data["manifest_sha256"] == expected
    assert data["files"] == 2
    assert data["bytes"] == len(CSV) + len(b"# Events\n")
    assert sha256sums(published.files).splitlines()[1] == (
        f"{hashlib.sha256(CSV).hexdigest()}  events.csv"
    )


def test_publishing_twice_is_a_conflict(session: Session, world: DatasetsWorld) -> None:
    version_id = _published(session, world)

    with pytest.raises(VersionStateConflict) as raised:
        publishing.publish_version(session, version_id=version_id, actor=world.pi, energy=ENERGY)

    assert raised.value.status == 409
    assert raised.value.extra["current_state"] == "published"


def test_a_new_version_copies_metadata_and_file_rows_and_shares_the_blobs(
    session: Session, world: DatasetsWorld
) -> None:
    first = queries.get_version(session, None, _published(session, world))

    second = service.new_version(session, dataset_id=first.dataset_id, actor=world.pi)

    assert second.number == 2
    assert second.state is VersionState.DRAFT
    assert second.concept_id == first.concept_id
    assert second.public_id != first.public_id
    same = ("title", "description", "creators", "license", "keywords", "related_identifiers")
    assert {k: getattr(second, k) for k in same} == {k: getattr(first, k) for k in same}
    assert second.datasheet == first.datasheet
    assert [(f.name, f.sha256, f.size) for f in second.files] == [
        (f.name, f.sha256, f.size) for f in first.files
    ]
    assert second.manifest_sha256 is None
    with pytest.raises(DraftExists):
        service.new_version(session, dataset_id=first.dataset_id, actor=world.pi)


def test_the_concept_id_resolves_to_the_newest_published_version(
    session: Session, world: DatasetsWorld
) -> None:
    first = queries.get_version(session, None, _published(session, world))
    assert queries.resolve_concept(session, None, first.concept_id).id == first.id

    second = service.new_version(session, dataset_id=first.dataset_id, actor=world.pi)
    assert queries.resolve_concept(session, None, first.concept_id).id == first.id

    publishing.publish_version(session, version_id=second.id, actor=world.pi, energy=ENERGY)
    assert queries.resolve_concept(session, None, first.concept_id).id == second.id
    with pytest.raises(DatasetNotFound):
        queries.resolve_concept(session, None, "00000000-0000-4000-8000-000000000000")


def test_deprecation_keeps_the_version_and_points_at_its_successor(
    session: Session, world: DatasetsWorld
) -> None:
    first = queries.get_version(session, None, _published(session, world))
    second = service.new_version(session, dataset_id=first.dataset_id, actor=world.pi)
    with pytest.raises(VersionStateConflict):
        publishing.deprecate_version(session, version_id=second.id, actor=world.pi)
    publishing.publish_version(session, version_id=second.id, actor=world.pi, energy=ENERGY)

    deprecated = publishing.deprecate_version(
        session,
        version_id=first.id,
        actor=world.pi,
        successor_version_id=second.id,
        note="v2 fixes the areas",
    )

    assert deprecated.state is VersionState.DEPRECATED
    assert deprecated.successor_public_id == second.public_id
    assert deprecated.files == first.files
    assert queries.get_version(session, None, first.id).deprecation_note == "v2 fixes the areas"
    assert [kind for kind, _ in _audit(session, first.public_id)][-1] == (
        "dataset.version.deprecated"
    )


def test_take_down_is_for_ops_with_a_reason_and_leaves_an_audited_tombstone(
    session: Session, world: DatasetsWorld
) -> None:
    version_id = _published(session, world)
    with pytest.raises(DatasetForbidden):
        publishing.take_down_version(session, version_id=version_id, actor=world.pi, reason="mine")
    with pytest.raises(ReasonRequired):
        publishing.take_down_version(session, version_id=version_id, actor=world.ops, reason=" ")

    gone = publishing.take_down_version(
        session, version_id=version_id, actor=world.ops, reason="court order 12/2026"
    )

    assert gone.state is VersionState.TAKEN_DOWN
    tombstone = queries.get_version(session, None, version_id)
    assert tombstone.title == "Glacier calving events"
    assert tombstone.creators
    assert tombstone.takedown_reason == "court order 12/2026"
    assert tombstone.files == []
    assert tombstone.datasheet == {}
    kind, data = _audit(session, gone.public_id)[-1]
    assert kind == "dataset.version.taken_down"
    assert data["reason"] == "court order 12/2026"
    assert data["previous_state"] == "published"
    assert data["manifest_sha256"] == gone.manifest_sha256
    with pytest.raises(FileGone) as raised:
        downloads.downloadable_file(session, version_id=version_id, name="events.csv", actor=None)
    assert raised.value.status == 410
    assert queries.resolve_concept(session, None, gone.concept_id).id == version_id


def test_a_draft_cannot_be_taken_down(session: Session, world: DatasetsWorld) -> None:
    draft = world.draft(session)
    with pytest.raises(VersionStateConflict):
        publishing.take_down_version(session, version_id=draft.id, actor=world.ops, reason="x")


def test_anonymous_visitors_and_outsiders_see_only_public_versions(
    session: Session, world: DatasetsWorld
) -> None:
    public_id = _published(session, world)
    draft = world.draft(session, title="Unfinished")

    for reader in (None, world.outsider):
        assert queries.get_version(session, reader, public_id).id == public_id
        with pytest.raises(VersionNotFound):
            queries.get_version(session, reader, draft.id)
        page = queries.list_versions(session, reader, states=list(VersionState))
        assert [item.id for item in page.items] == [public_id]
    for reader in (world.pi, world.member, world.ops):
        assert queries.get_version(session, reader, draft.id).title == "Unfinished"
        page = queries.list_versions(session, reader, states=list(VersionState))
        assert [item.id for item in page.items] == [draft.id, public_id]


def test_outsiders_may_not_create_or_change_a_projects_datasets(
    session: Session, world: DatasetsWorld
) -> None:
    with pytest.raises(ProjectNotFound):
        service.create_dataset(
            session, project_id=world.project_id, title="Mine now", actor=world.outsider
        )
    public_id = _published(session, world)
    dataset_id = queries.get_version(session, None, public_id).dataset_id
    with pytest.raises(DatasetForbidden):
        service.new_version(session, dataset_id=dataset_id, actor=world.outsider)
    with pytest.raises(DatasetForbidden):
        publishing.deprecate_version(session, version_id=public_id, actor=world.outsider)


def test_the_catalogue_filters_by_text_licence_keyword_and_project(any_session: Session) -> None:
    """Text search is PostgreSQL's full text search there, a LIKE of each word on SQLite."""
    session = any_session
    world = build_world(session)
    calving = _published(session, world)
    other = world.draft(session, title="Sea ice thickness")
    world.complete(session, other.id)
    service.update_metadata(
        session,
        version_id=other.id,
        changes={
            "title": "Sea ice thickness",
            "description": "Thickness from altimetry.",
            "license": "cc0-1.0",
            "keywords": ["altimetry"],
            "creators": [{"name": "Hopper, Grace"}],
        },
        actor=world.pi,
    )
    publishing.publish_version(session, version_id=other.id, actor=world.pi, energy=ENERGY)

    def ids(**filters: object) -> list[int]:
        return [v.id for v in queries.list_versions(session, None, **filters).items]  # type: ignore[arg-type]

    assert ids() == [other.id, calving]
    assert ids(text="calving sentinel-1") == [calving]
    assert ids(text="LOVELACE") == [calving]
    assert ids(text="altimetry thickness") == [other.id]
    assert ids(text="calving altimetry") == []
    assert ids(license="CC0-1.0") == [other.id]
    assert ids(keyword="glaciology") == [calving]
    assert ids(project_id=world.project_id + 1000) == []
    first = queries.list_versions(session, None, limit=1)
    assert [v.id for v in first.items] == [other.id]
    rest = queries.list_versions(session, None, limit=1, cursor=first.next_cursor)
    assert [v.id for v in rest.items] == [calving]
    assert rest.next_cursor is None


def test_a_repeat_download_within_thirty_seconds_counts_once(
    session: Session, world: DatasetsWorld
) -> None:
    version_id = _published(session, world)
    at = utcnow()

    def count(client: str, seconds: float) -> bool:
        return downloads.record_download(
            session,
            version_id=version_id,
            name="events.csv",
            client_key=client,
            now=at + timedelta(seconds=seconds),
        )

    assert [count("a", 0), count("a", 10), count("b", 11), count("a", 31)] == [
        True,
        False,
        True,
        True,
    ]
    version = queries.get_version(session, None, version_id)
    assert version.download_count == 3
    assert version.files[0].download_count == 3
