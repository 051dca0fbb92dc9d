"""Datasets for the API-wide tests (the access matrix, the bad-input suite): project A's
datasets with their files really stored, and an open multipart upload.

:func:`with_datasets` adds them to a world of tests/api_world.py, storing the
files in the blob store the app under test uses. A plain module, imported by name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from api_world import RESEARCHER_A, World
from sqlalchemy.orm import Session

from credits.datasets import service
from credits.datasets.publishing import publish_version
from credits.datasets.schemas import DATASHEET_SECTIONS, VersionOut
from credits.identity.service import actor_for_email
from credits.reports.energy import EnergyPolicy
from credits.storage import BlobStore

FILE_NAME = "data/cores.csv"
FILE_BYTES = b"depth_m,d18o\n1.5,-35.2\n2.0,-35.9\n"
UPLOAD_NAME = "big/part.bin"
UPLOAD_BYTES = b"abc"
METADATA = {
    "description": "Ice core isotope ratios.",
    "creators": [{"name": "Lovelace, Ada", "orcid": "0000-0002-1825-0097"}],
    "license": "CC-BY-4.0",
    "keywords": ["ice"],
}


@dataclass(frozen=True)
class DatasetsWorld(World):
    """The world with project A's datasets (researcher A made them)."""

    ds_dataset_id: int = 0  # version 1 published, version 2 a draft copying it
    ds_concept: str = ""  # that dataset's concept id
    ds_published_id: int = 0  # its version 1
    ds_published_uuid: str = ""  # version 1's public id
    ds_draft_id: int = 0  # its version 2: complete, so it may be published
    ds_released_id: int = 0  # a second dataset (its id): one published version, no draft
    ds_file: str = FILE_NAME  # the file of both versions, in the store
    ds_upload: str = ""  # a multipart upload for the draft, its one part sent


def _described(session: Session, world: World, title: str) -> VersionOut:
    """A new dataset of project A, its draft described in full."""
    actor = actor_for_email(session, f"{RESEARCHER_A}@example.org")
    version = service.create_dataset(session, project_id=world.project_a, title=title, actor=actor)
    service.update_metadata(session, version_id=version.id, changes=METADATA, actor=actor)
    sections = {section: f"The {section}." for section in DATASHEET_SECTIONS}
    service.update_datasheet(session, version_id=version.id, changes=sections, actor=actor)
    return version


def with_datasets(session: Session, world: World, store: BlobStore) -> DatasetsWorld:
    """``world`` and project A's datasets, their files in ``store``."""
    actor = actor_for_email(session, f"{RESEARCHER_A}@example.org")
    energy = EnergyPolicy.from_values(pue=1.0, grid_g_per_kwh=0.0)
    blob = store.put_stream([FILE_BYTES], max_bytes=len(FILE_BYTES))
    published = []
    for title in ("Ice cores", "Firn density"):
        version = _described(session, world, title)
        service.add_file(session, version_id=version.id, name=FILE_NAME, blob=blob, actor=actor)
        publish_version(session, version_id=version.id, actor=actor, energy=energy)
        published.append(version)
    first, released = published
    draft = service.new_version(session, dataset_id=first.dataset_id, actor=actor)
    upload = store.start_upload(max_bytes=len(UPLOAD_BYTES))
    store.put_part(upload, 1, UPLOAD_BYTES)
    session.flush()
    values = {field.name: getattr(world, field.name) for field in fields(world)}
    return DatasetsWorld(
        **values,
        ds_dataset_id=first.dataset_id,
        ds_concept=first.concept_id,
        ds_published_id=first.id,
        ds_published_uuid=first.public_id,
        ds_draft_id=draft.id,
        ds_released_id=released.dataset_id,
        ds_upload=upload,
    )
