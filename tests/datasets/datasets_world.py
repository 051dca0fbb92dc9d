"""A small world for dataset tests: a project with a PI and a member, an outsider, ops,
and a blob store. A plain module, imported by name (tests/ has no packages)."""

from __future__ import annotations

import importlib.resources
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from credits.datasets import queries, service
from credits.datasets.schemas import VersionOut
from credits.grants.projects import add_member, create_project
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.reports.energy import EnergyPolicy
from credits.storage import BlobStore, StoredBlob, blob_store_for_url

SYSTEM = Actor.system("dataset-tests")
ENERGY = EnergyPolicy.from_values(pue=1.5, grid_g_per_kwh=400.0)
# ORCID's own example iD and the ROR id of the California Digital Library.
ORCID = "0000-0002-1825-0097"
ROR = "03yrm5c26"
_stores = itertools.count()

METADATA: dict[str, Any] = {
    "title": "Glacier calving events",
    "description": "Calving events detected in Sentinel-1 imagery, 2015-2025.",
    "creators": [
        {"name": "Lovelace, Ada", "orcid": ORCID, "affiliation": "Uni", "ror": ROR},
        {"name": "Polar Data Group", "name_type": "organizational"},
    ],
    "license": "CC-BY-4.0",
    "keywords": ["glaciology", "Sentinel-1"],
    "related_identifiers": [
        {
            "identifier": "10.1234/paper.5678",
            "identifier_type": "DOI",
            "relation_type": "IsSupplementTo",
        }
    ],
}
DATASHEET = {
    "motivation": "To study calving in a warming climate.",
    "composition": "One row per calving event.",
    "collection": "Detected automatically from radar images.",
    "preprocessing": "Events under 0.1 km2 were dropped; labels checked by two people.",
    "uses": "Training calving detectors; trend analysis.",
    "distribution": "Public, under CC-BY-4.0.",
    "maintenance": "Updated yearly by the Polar Data Group.",
    "biases": "Cloud-free days are over-represented.",
    "limitations": "No events before 2015.",
    "sensitive_information": "None: no people appear in the data.",
}
CSV = b"event_id,area_km2,glacier,confirmed\n1,0.52,Jakobshavn,true\n2,1.25,Helheim,false\n"


@dataclass
class DatasetsWorld:
    pi: Actor
    member: Actor
    outsider: Actor
    ops: Actor
    project_id: int
    store: BlobStore

    def put(self, data: bytes) -> StoredBlob:
        return self.store.put_stream([data], max_bytes=1 << 30)

    def draft(self, session: Session, title: str = "Calving events") -> VersionOut:
        return service.create_dataset(
            session, project_id=self.project_id, title=title, actor=self.pi
        )

    def complete(self, session: Session, version_id: int, **files: bytes) -> VersionOut:
        """Fills a draft's metadata and datasheet and adds ``files`` (default: one CSV)."""
        service.update_metadata(session, version_id=version_id, changes=METADATA, actor=self.pi)
        service.update_datasheet(session, version_id=version_id, changes=DATASHEET, actor=self.pi)
        for name, data in (files or {"events.csv": CSV}).items():
            service.add_file(
                session,
                version_id=version_id,
                name=name.replace("__", "/"),
                blob=self.put(data),
                actor=self.pi,
            )
        return queries.get_version(session, self.pi, version_id)


def person(session: Session, email: str, *roles: Role) -> Actor:
    create_user(
        session,
        email=email,
        name=email.split("@", 1)[0].title(),
        roles=roles,
        institution="Uni",
        actor=SYSTEM,
    )
    return actor_for_email(session, email)


def build_world(session: Session, store_root: Path | None = None) -> DatasetsWorld:
    """People, a project, and a store: a local folder under ``store_root``, else memory."""
    pi = person(session, "pi@uni.example", Role.RESEARCHER)
    member = person(session, "member@uni.example", Role.RESEARCHER)
    outsider = person(session, "outsider@uni.example", Role.RESEARCHER)
    ops = person(session, "ops@platform.example", Role.OPS)
    project = create_project(session, title="Ice", field_of_science="Glaciology", actor=pi)
    assert member.user_id is not None
    add_member(session, project_id=project.id, user_id=member.user_id, role="member", actor=pi)
    url = (
        f"file://{store_root}"
        if store_root is not None
        else f"memory://datasets-test-{next(_stores)}-{id(session)}"
    )
    return DatasetsWorld(pi, member, outsider, ops, project.id, blob_store_for_url(url))


def datacite_schema() -> dict[str, Any]:
    """DataCite's metadata schema 4.5 as JSON Schema, from the ``datacite`` package (no network)."""
    schema = importlib.resources.files("datacite") / "schemas" / "datacite-v4.5.json"
    loaded: dict[str, Any] = json.loads(schema.read_text(encoding="utf-8"))
    return loaded
