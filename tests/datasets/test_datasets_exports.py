"""Croissant validates and loads with mlcroissant; DataCite validates against its schema;
the datasheet and the citations say what the version is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import mlcroissant as mlc
import pytest
from datasets_world import CSV, ENERGY, DatasetsWorld, build_world, datacite_schema
from mlcroissant._src.core import constants as croissant_constants
from sqlalchemy.orm import Session

from credits.datasets import exports, publishing, queries
from credits.datasets.citation import apa, bibtex
from credits.datasets.schemas import VersionOut
from credits.storage import BlobStore

JSONL = b'{"id": 1, "text": "calving front", "score": 0.5, "ok": true, "tags": ["a"]}\n' * 3
PUBLISHER = "Credits Test Platform"


@pytest.fixture
def world(session: Session, tmp_path: Path) -> DatasetsWorld:
    return build_world(session, tmp_path / "blobs")


@pytest.fixture
def published(session: Session, world: DatasetsWorld) -> VersionOut:
    draft = world.draft(session)
    world.complete(
        session,
        draft.id,
        **{"events.csv": CSV, "text__notes.jsonl": JSONL, "README.md": b"# Calving\n"},
    )
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    return queries.get_version(session, None, draft.id)


class _Files(BaseHTTPRequestHandler):
    """Serves /datasets/versions/<id>/files/<name> from a blob store, as the catalogue will."""

    store: BlobStore
    files: dict[str, str]

    def do_GET(self) -> None:
        name = unquote(self.path.split("/files/", 1)[-1])
        sha256 = self.files.get(name)
        if sha256 is None:
            self.send_error(404)
            return
        data = b"".join(self.store.open_range(sha256))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def file_server(world: DatasetsWorld, published: VersionOut) -> Iterator[str]:
    handler = type(
        "Files",
        (_Files,),
        {"store": world.store, "files": {f.name: f.sha256 for f in published.files}},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _croissant(world: DatasetsWorld, version: VersionOut, base_url: str) -> dict[str, Any]:
    heads = exports.tabular_heads(version, world.store)
    return exports.croissant(version, base_url=base_url, publisher=PUBLISHER, heads=heads)


def test_croissant_has_a_sha256_per_file_record_sets_and_rai_fields(
    world: DatasetsWorld, published: VersionOut
) -> None:
    document = _croissant(world, published, "https://data.example.org")

    files = {node["name"]: node for node in document["distribution"]}
    assert {name: node["sha256"] for name, node in files.items()} == {
        f.name: f.sha256 for f in published.files
    }
    assert files["text/notes.jsonl"]["contentUrl"] == (
        f"https://data.example.org/datasets/versions/{published.public_id}/files/text/notes.jsonl"
    )
    fields = {
        rs["name"]: {f["name"]: f["dataType"] for f in rs["field"]} for rs in document["recordSet"]
    }
    assert fields == {
        "records of events.csv": {
            "event_id": "sc:Integer",
            "area_km2": "sc:Float",
            "glacier": "sc:Text",
            "confirmed": "sc:Boolean",
        },
        "records of text/notes.jsonl": {
            "id": "sc:Integer",
            "text": "sc:Text",
            "score": "sc:Float",
            "ok": "sc:Boolean",
        },
    }
    assert document["rai:dataBiases"] == "Cloud-free days are over-represented."
    assert document["rai:personalSensitiveInformation"].startswith("None")
    assert document["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    assert document["creator"][0]["identifier"] == "https://orcid.org/0000-0002-1825-0097"


def test_croissant_validates_and_loads_with_mlcroissant_checking_every_hash(
    world: DatasetsWorld,
    published: VersionOut,
    file_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(croissant_constants, "DOWNLOAD_PATH", tmp_path / "croissant-download")
    monkeypatch.setattr(croissant_constants, "EXTRACT_PATH", tmp_path / "croissant-extract")
    document = _croissant(world, published, file_server)

    record_sets = {rs["name"]: rs["@id"] for rs in document["recordSet"]}
    csv_id, jsonl_id = (
        record_sets["records of events.csv"],
        record_sets["records of text/notes.jsonl"],
    )

    dataset = mlc.Dataset(jsonld=document)

    assert not dataset.metadata.ctx.issues.errors
    assert not dataset.metadata.ctx.issues.warnings
    assert dataset.metadata.name == "Glacier calving events"
    assert dataset.metadata.data_biases == ["Cloud-free days are over-represented."]
    events = list(dataset.records(csv_id))
    assert [(r[f"{csv_id}/0"], r[f"{csv_id}/2"]) for r in events] == [
        (1, b"Jakobshavn"),
        (2, b"Helheim"),
    ]
    notes = list(dataset.records(jsonl_id))
    assert [r[f"{jsonl_id}/1"] for r in notes] == [b"calving front"] * 3


def test_croissant_loading_fails_when_a_served_file_differs_from_its_hash(
    world: DatasetsWorld,
    published: VersionOut,
    file_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(croissant_constants, "DOWNLOAD_PATH", tmp_path / "croissant-download")
    document = _croissant(world, published, file_server)
    (csv_file,) = [f for f in document["distribution"] if f["name"] == "events.csv"]
    csv_file["sha256"] = "0" * 64
    (record_set,) = [rs for rs in document["recordSet"] if rs["name"] == "records of events.csv"]

    with pytest.raises(Exception) as raised:
        list(mlc.Dataset(jsonld=document).records(record_set["@id"]))

    causes = []
    error: BaseException | None = raised.value
    while error is not None:
        causes.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("Hash of downloaded file" in cause for cause in causes), causes


def test_datacite_json_validates_and_carries_the_mandatory_properties(
    published: VersionOut,
) -> None:
    document = exports.datacite(
        published, base_url="https://data.example.org", publisher=PUBLISHER, funder_name="NSF"
    )

    jsonschema.Draft201909Validator(datacite_schema()).validate(document)
    assert document["types"]["resourceTypeGeneral"] == "Dataset"
    assert document["publicationYear"] == str(published.published_at.year)  # type: ignore[union-attr]
    assert document["creators"][0]["nameIdentifiers"][0]["nameIdentifier"].endswith(
        "0000-0002-1825-0097"
    )
    assert document["creators"][0]["affiliation"][0]["affiliationIdentifierScheme"] == "ROR"
    assert document["creators"][1]["nameType"] == "Organizational"
    assert document["rightsList"][0]["rightsIdentifier"] == "cc-by-4.0"
    relations = {r["relationType"] for r in document["relatedIdentifiers"]}
    assert relations == {"IsSupplementTo", "IsVersionOf"}


def test_a_taken_down_version_exports_as_withdrawn_and_still_validates(
    session: Session, world: DatasetsWorld, published: VersionOut
) -> None:
    publishing.take_down_version(
        session, version_id=published.id, actor=world.ops, reason="licence dispute"
    )
    tombstone = queries.get_version(session, None, published.id)

    document = exports.datacite(
        tombstone, base_url="https://x.example", publisher=PUBLISHER, funder_name="NSF", doi=None
    )

    jsonschema.Draft201909Validator(datacite_schema()).validate(document)
    withdrawn = [d for d in document["dates"] if d["dateType"] == "Withdrawn"]
    assert withdrawn[0]["dateInformation"] == "licence dispute"
    # Its files are withdrawn, and so is their size: the figures agree.
    assert (tombstone.files, tombstone.total_size) == ([], 0)
    assert document["sizes"] == ["0 bytes", "0 files"]


def test_a_schema_violation_is_caught_by_the_vendored_schema(published: VersionOut) -> None:
    document = exports.datacite(
        published, base_url="https://x.example", publisher=PUBLISHER, funder_name="NSF"
    )
    del document["titles"]

    with pytest.raises(jsonschema.ValidationError, match="titles"):
        jsonschema.Draft201909Validator(datacite_schema()).validate(document)


def test_the_datasheet_markdown_has_every_section_and_the_citation(published: VersionOut) -> None:
    text = exports.datasheet_markdown(
        published, base_url="https://data.example.org", publisher=PUBLISHER
    )

    assert text.startswith("# Datasheet: Glacier calving events\n")
    for heading in ("## Motivation", "## Known biases", "## Personal or sensitive information"):
        assert heading in text
    assert "Lovelace, A., & Polar Data Group. (" in text
    assert "_Not provided._" not in text


def test_a_version_without_creators_is_cited_under_the_publisher(
    published: VersionOut,
) -> None:
    anonymous = published.model_copy(update={"creators": []})
    assert apa(anonymous, base_url="https://data.example.org", publisher=PUBLISHER).startswith(
        f"{PUBLISHER}. ("
    )
    entry = bibtex(anonymous, base_url="https://data.example.org/", publisher=PUBLISHER)
    assert f"author       = {{{PUBLISHER}}}" in entry


def test_citations_in_bibtex_and_apa(published: VersionOut) -> None:
    year = published.published_at.year  # type: ignore[union-attr]
    url = f"https://data.example.org/datasets/versions/{published.public_id}"

    assert apa(published, base_url="https://data.example.org", publisher=PUBLISHER) == (
        f"Lovelace, A., & Polar Data Group. ({year}). Glacier calving events (Version 1) "
        f"[Data set]. {PUBLISHER}. {url}"
    )
    entry = bibtex(published, base_url="https://data.example.org/", publisher=PUBLISHER)
    assert entry.startswith(f"@misc{{lovelace{year}_{published.public_id[:8]},\n")
    assert "author       = {Lovelace, Ada and {Polar Data Group}}" in entry
    assert "title        = {{Glacier calving events}}" in entry
    assert f"url          = {{{url}}}" in entry


def test_an_unnamed_column_is_left_out_and_the_document_still_validates(
    session: Session, world: DatasetsWorld
) -> None:
    draft = world.draft(session)
    # As pandas writes a frame with its index: the first header cell is empty.
    indexed = b",glacier,area_km2\n0,Jakobshavn,12.5\n1,Helheim,3.0\n"
    blank_key = b'{"": 1, "text": "front"}\n'
    world.complete(session, draft.id, **{"indexed.csv": indexed, "blank.jsonl": blank_key})
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    version = queries.get_version(session, None, draft.id)
    document = _croissant(world, version, "https://data.example.org")
    names = {rs["name"]: [f["name"] for f in rs["field"]] for rs in document["recordSet"]}
    assert names == {
        "records of indexed.csv": ["glacier", "area_km2"],
        "records of blank.jsonl": ["text"],
    }
    assert not mlc.Dataset(jsonld=document).metadata.issues.errors
