"""Only a draft changes; publishing needs complete metadata; bad values are refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from datasets_world import CSV, DATASHEET, ENERGY, METADATA, DatasetsWorld, build_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.datasets import provenance, publishing, queries, service
from credits.datasets.errors import (
    DatasetFileNotFound,
    DuplicateFileName,
    IncompleteMetadata,
    InvalidMetadata,
    VersionImmutable,
    VersionTooLarge,
)
from credits.datasets.models import DatasetFile, DatasetVersion
from credits.storage import UnsafeFileName

Edit = Callable[[Session, DatasetsWorld, int], Any]

EDITS: dict[str, Edit] = {
    "metadata": lambda s, w, v: service.update_metadata(
        s, version_id=v, changes={"title": "Renamed"}, actor=w.pi
    ),
    "licence": lambda s, w, v: service.update_metadata(
        s, version_id=v, changes={"license": "MIT"}, actor=w.pi
    ),
    "datasheet": lambda s, w, v: service.update_datasheet(
        s, version_id=v, changes={"uses": "Anything"}, actor=w.pi
    ),
    "add file": lambda s, w, v: service.add_file(
        s, version_id=v, name="more.csv", blob=w.put(b"a\n1\n"), actor=w.pi
    ),
    "remove file": lambda s, w, v: service.remove_file(
        s, version_id=v, name="events.csv", actor=w.pi
    ),
    "record provenance": lambda s, w, v: provenance.record_provenance(
        s, version_id=v, actor=w.pi, energy=ENERGY
    ),
    "remove provenance": lambda s, w, v: provenance.remove_provenance(
        s, version_id=v, actor=w.pi, energy=ENERGY
    ),
}
LATER_STATES: dict[str, Callable[[Session, DatasetsWorld, int], Any]] = {
    "published": lambda *_: None,
    "deprecated": lambda s, w, v: publishing.deprecate_version(s, version_id=v, actor=w.pi),
    "taken_down": lambda s, w, v: publishing.take_down_version(
        s, version_id=v, actor=w.ops, reason="test"
    ),
}


@pytest.fixture
def world(session: Session) -> DatasetsWorld:
    return build_world(session)


def _snapshot(session: Session, version_id: int) -> tuple[Any, ...]:
    session.flush()
    session.expire_all()
    version = session.get(DatasetVersion, version_id)
    assert version is not None
    files = session.execute(
        select(DatasetFile.name, DatasetFile.sha256).where(DatasetFile.version_id == version_id)
    ).all()
    return (
        version.title,
        version.license,
        dict(version.datasheet),
        version.updated_at,
        sorted(files),
        len(version.provenance),
    )


@pytest.mark.parametrize("state", list(LATER_STATES))
@pytest.mark.parametrize("edit", list(EDITS))
def test_every_edit_of_a_version_that_is_not_a_draft_is_refused_with_409(
    session: Session, world: DatasetsWorld, state: str, edit: str
) -> None:
    draft = world.draft(session)
    world.complete(session, draft.id)
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    LATER_STATES[state](session, world, draft.id)
    before = _snapshot(session, draft.id)

    with pytest.raises(VersionImmutable) as raised:
        EDITS[edit](session, world, draft.id)

    assert raised.value.status == 409
    assert raised.value.extra["current_state"] == state
    assert _snapshot(session, draft.id) == before


def test_publishing_an_empty_draft_lists_everything_missing(
    session: Session, world: DatasetsWorld
) -> None:
    draft = world.draft(session)
    service.update_metadata(session, version_id=draft.id, changes={"title": "   "}, actor=world.pi)

    with pytest.raises(IncompleteMetadata) as raised:
        publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)

    assert raised.value.status == 422
    assert raised.value.extra["missing"] == [
        "title",
        "description",
        "creators",
        "license",
        "files",
        "datasheet.motivation",
        "datasheet.composition",
        "datasheet.collection",
        "datasheet.preprocessing",
        "datasheet.uses",
        "datasheet.distribution",
        "datasheet.maintenance",
        "datasheet.biases",
        "datasheet.limitations",
        "datasheet.sensitive_information",
    ]
    assert queries.get_version(session, world.pi, draft.id).state.value == "draft"


def test_publishing_names_only_what_is_still_missing(
    session: Session, world: DatasetsWorld
) -> None:
    draft = world.draft(session)
    service.update_metadata(session, version_id=draft.id, changes=METADATA, actor=world.pi)
    sections = {k: v for k, v in DATASHEET.items() if k != "biases"}
    service.update_datasheet(session, version_id=draft.id, changes=sections, actor=world.pi)

    with pytest.raises(IncompleteMetadata) as raised:
        publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)

    assert raised.value.extra["missing"] == ["files", "datasheet.biases"]


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"creators": [{"name": "Ada", "orcid": "0000-0002-1825-0098"}]}, "creators.0.orcid"),
        ({"creators": [{"name": "Ada", "orcid": "0000-0002-1825"}]}, "creators.0.orcid"),
        ({"creators": [{"name": "Ada", "ror": "03yrm5c27"}]}, "creators.0.ror"),
        ({"creators": [{"name": ""}]}, "creators.0.name"),
        ({"license": "CC-BY-4.1"}, "license"),
        ({"license": "GPL-2.0"}, "license"),  # deprecated on the SPDX list
        (
            {
                "related_identifiers": [
                    {"identifier": "x", "identifier_type": "DOI", "relation_type": "Likes"}
                ]
            },
            "related_identifiers.0.relation_type",
        ),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_metadata_is_refused_naming_the_field_and_changes_nothing(
    session: Session, world: DatasetsWorld, changes: dict[str, Any], where: str
) -> None:
    draft = world.draft(session)
    before = _snapshot(session, draft.id)

    with pytest.raises(InvalidMetadata) as raised:
        service.update_metadata(session, version_id=draft.id, changes=changes, actor=world.pi)

    assert raised.value.status == 422
    assert raised.value.detail.startswith(where + ":")
    assert _snapshot(session, draft.id) == before


def test_licences_and_identifiers_are_stored_in_their_canonical_form(
    session: Session, world: DatasetsWorld
) -> None:
    draft = world.draft(session)
    version = service.update_metadata(
        session,
        version_id=draft.id,
        changes={
            "license": "cc-by-4.0",
            "creators": [
                {"name": "Ada", "orcid": "https://orcid.org/0000-0002-1694-233x"},
                {"name": "Uni", "name_type": "organizational", "ror": "https://ror.org/03YRM5C26"},
            ],
            "keywords": ["Ice", "ice", "radar"],
        },
        actor=world.pi,
    )

    assert version.license == "CC-BY-4.0"
    assert version.creators[0].orcid == "0000-0002-1694-233X"
    assert version.creators[1].ror == "03yrm5c26"
    assert version.keywords == ["Ice", "radar"]


def test_an_unknown_datasheet_section_is_refused(session: Session, world: DatasetsWorld) -> None:
    draft = world.draft(session)
    with pytest.raises(InvalidMetadata, match=r"^horoscope:"):
        service.update_datasheet(
            session, version_id=draft.id, changes={"horoscope": "Leo"}, actor=world.pi
        )


def _file_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(DatasetFile)) or 0


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "data/../../secret",
        "C:evil.csv",
        "back\\slash.csv",
        "evil\u202etxt.csv",
        "nul\x00.csv",
        "x" * 10_000,
        "",
    ],
)
def test_unsafe_file_names_are_refused_and_nothing_is_added(
    session: Session, world: DatasetsWorld, name: str
) -> None:
    draft = world.draft(session)
    blob = world.put(CSV)
    before = _file_count(session)

    with pytest.raises(UnsafeFileName) as raised:
        service.add_file(session, version_id=draft.id, name=name, blob=blob, actor=world.pi)

    assert raised.value.status == 422
    assert _file_count(session) == before


@pytest.mark.parametrize("clash", ["events.csv", "EVENTS.csv", "events.csv/part-1.csv"])
def test_a_duplicate_file_name_is_refused(
    session: Session, world: DatasetsWorld, clash: str
) -> None:
    draft = world.draft(session)
    blob = world.put(CSV)
    service.add_file(session, version_id=draft.id, name="events.csv", blob=blob, actor=world.pi)

    with pytest.raises(DuplicateFileName) as raised:
        service.add_file(session, version_id=draft.id, name=clash, blob=blob, actor=world.pi)

    assert raised.value.status == 409
    assert [f.name for f in queries.get_version(session, world.pi, draft.id).files] == [
        "events.csv"
    ]


def test_files_are_named_safely_typed_and_removable(session: Session, world: DatasetsWorld) -> None:
    draft = world.draft(session)
    empty = world.put(b"")
    added = service.add_file(
        session, version_id=draft.id, name="train/part-1.jsonl", blob=empty, actor=world.pi
    )
    assert (added.media_type, added.size) == ("application/jsonlines", 0)
    assert added.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    service.remove_file(session, version_id=draft.id, name="train/part-1.jsonl", actor=world.pi)

    assert queries.get_version(session, world.pi, draft.id).files == []
    with pytest.raises(DatasetFileNotFound):
        service.remove_file(session, version_id=draft.id, name="train/part-1.jsonl", actor=world.pi)


def test_a_version_over_its_size_limit_is_refused(session: Session, world: DatasetsWorld) -> None:
    draft = world.draft(session)
    service.add_file(
        session, version_id=draft.id, name="a.bin", blob=world.put(b"x" * 60), actor=world.pi
    )

    with pytest.raises(VersionTooLarge) as raised:
        service.add_file(
            session,
            version_id=draft.id,
            name="b.bin",
            blob=world.put(b"y" * 41),
            actor=world.pi,
            max_version_bytes=100,
        )

    assert raised.value.status == 413
    assert [f.name for f in queries.get_version(session, world.pi, draft.id).files] == ["a.bin"]
