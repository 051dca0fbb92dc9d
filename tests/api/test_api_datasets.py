"""The datasets API: drafts, uploads (streamed and multipart), publishing, the public
catalogue, downloads with Range, and what every refusal leaves behind (nothing)."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from datasets_world import CSV, DATASHEET, METADATA, DatasetsWorld, build_world
from flask import Flask
from flask.testing import FlaskClient
from s3_server import S3Server
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from credits.api.datasets import STORE_KEY
from credits.api.problems import PROBLEM_MEDIA_TYPE
from credits.app import create_app
from credits.datasets.models import DatasetDoi, DatasetFile, DatasetVersion
from credits.identity.actor import Actor
from credits.identity.tokens import create_token
from credits.settings import load_settings
from credits.storage import PART_SIZE, blob_store_for_url
from credits.storage.fs_store import FsspecBlobStore

SYSTEM = Actor.system("api-dataset-tests")
MAX_FILE = 20 * 1024 * 1024
MAX_VERSION = 30 * 1024 * 1024
API = "/api/v1"
# A body of unknown length, ended by the server (as waitress does for chunked encoding).
CHUNKED: dict[str, Any] = {
    "headers": {"Transfer-Encoding": "chunked"},
    "environ_overrides": {"wsgi.input_terminated": True},
}


class PresigningStore(FsspecBlobStore):
    """A memory store that hands out URLs, as the S3 store does."""

    def presigned_url(self, sha256: str, *, expires_s: int, filename: str) -> str | None:
        return f"https://s3.example/{sha256}?expires={expires_s}&name={quote(filename)}"


@dataclass
class Api:
    client: FlaskClient
    world: DatasetsWorld
    session: Session
    headers: dict[str, dict[str, str]]

    def as_(self, who: str) -> dict[str, str]:
        return self.headers[who]

    def call(self, method: str, url: str, who: str = "anonymous", **kwargs: Any) -> TestResponse:
        headers = self.as_(who) | kwargs.pop("headers", {})
        return self.client.open(API + url, method=method, headers=headers, **kwargs)

    def stored(self) -> list[str]:
        store = self.world.store
        assert isinstance(store, FsspecBlobStore)
        return store.list_keys()

    def file_rows(self) -> int:
        return int(self.session.scalar(select(func.count(DatasetFile.id))) or 0)


def _app(factory: sessionmaker[Session], world: DatasetsWorld, **settings: Any) -> Flask:
    values = {"dataset_max_file_bytes": MAX_FILE, "dataset_max_version_bytes": MAX_VERSION}
    app = create_app(load_settings(**(values | settings)), session_factory=factory)
    app.extensions[STORE_KEY] = world.store
    return app


def _tokens(session: Session, world: DatasetsWorld) -> dict[str, dict[str, str]]:
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for who in ("pi", "member", "outsider", "ops"):
        actor: Actor = getattr(world, who)
        assert actor.email is not None
        secret = create_token(session, email=actor.email, actor=SYSTEM).secret
        headers[who] = {"Authorization": f"Bearer {secret}"}
    read_only = create_token(session, email="pi@uni.example", actor=SYSTEM, scopes=["read"])
    headers["pi_read_only"] = {"Authorization": f"Bearer {read_only.secret}"}
    session.flush()
    return headers


@pytest.fixture
def api(session: Session, joined_session_factory: sessionmaker[Session]) -> Api:
    world = build_world(session)
    headers = _tokens(session, world)
    client = _app(joined_session_factory, world).test_client()
    return Api(client, world, session, headers)


def _problem(response: TestResponse, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.get_json()
    if slug is not None:
        assert body["type"].endswith("/" + slug), body
    return body


def _draft(api: Api, title: str = "Calving events") -> dict[str, Any]:
    response = api.call(
        "POST", f"/projects/{api.world.project_id}/datasets", "pi", json={"title": title}
    )
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    assert body["state"] == "draft"
    return body


def _describe(api: Api, version_id: int) -> None:
    response = api.call("PATCH", f"/datasets/versions/{version_id}", "pi", json=METADATA)
    assert response.status_code == 200, response.get_json()
    response = api.call("PATCH", f"/datasets/versions/{version_id}/datasheet", "pi", json=DATASHEET)
    assert response.status_code == 200, response.get_json()


def _upload(api: Api, version_id: int, name: str, data: bytes, who: str = "pi") -> TestResponse:
    url = f"/datasets/versions/{version_id}/files/{quote(name)}"
    return api.call("PUT", url, who, data=data, content_type="application/octet-stream")


def _published(api: Api, **files: bytes) -> dict[str, Any]:
    version = _draft(api)
    _describe(api, version["id"])
    for name, data in (files or {"events.csv": CSV}).items():
        assert _upload(api, version["id"], name, data).status_code == 201
    response = api.call("POST", f"/datasets/versions/{version['id']}/publish", "pi")
    assert response.status_code == 200, response.get_json()
    published: dict[str, Any] = response.get_json()
    return published


def test_the_whole_flow_from_draft_to_tombstone(api: Api) -> None:
    draft = _draft(api)
    vid = draft["id"]
    _describe(api, vid)
    uploaded = _upload(api, vid, "data/events.csv", CSV)
    assert uploaded.status_code == 201, uploaded.get_json()
    assert uploaded.get_json()["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert uploaded.get_json()["media_type"] == "text/csv"
    provenance = api.call(
        "POST",
        f"/datasets/versions/{vid}/provenance",
        "pi",
        json={"job_ids": [], "allocation_ids": []},
    )
    assert provenance.status_code == 200, provenance.get_json()
    refused = api.call(
        "POST", f"/datasets/versions/{vid}/provenance", "pi", json={"job_ids": [987654]}
    )
    assert _problem(refused, 422, "invalid-dataset-provenance")["job_ids"] == [987654]

    published = api.call("POST", f"/datasets/versions/{vid}/publish", "pi")
    assert published.status_code == 200, published.get_json()
    v1 = published.get_json()
    assert v1["state"] == "published" and v1["manifest_sha256"]

    # The public reads it all, with no token.
    assert api.call("GET", f"/datasets/versions/{vid}").get_json()["title"] == METADATA["title"]
    assert api.call("GET", f"/datasets/{v1['concept_id']}").get_json()["id"] == vid
    listed = api.call("GET", "/datasets?q=calving&license=cc-by-4.0&keyword=glaciology")
    assert [item["id"] for item in listed.get_json()["items"]] == [vid]
    versions = api.call("GET", f"/datasets/{v1['dataset_id']}/versions").get_json()["items"]
    assert [item["id"] for item in versions] == [vid]
    sums = api.call("GET", f"/datasets/versions/{vid}/SHA256SUMS")
    assert sums.get_data(as_text=True) == f"{hashlib.sha256(CSV).hexdigest()}  data/events.csv\n"
    croissant = api.call("GET", f"/datasets/versions/{vid}/croissant.json")
    assert croissant.mimetype == "application/ld+json"
    assert croissant.get_json()["distribution"][0]["sha256"] == hashlib.sha256(CSV).hexdigest()
    datacite = api.call("GET", f"/datasets/versions/{vid}/datacite.json")
    assert datacite.status_code == 200 and datacite.get_json()["types"]["resourceTypeGeneral"]
    assert "doi" not in datacite.get_json()
    api.session.add(DatasetDoi(version_id=vid, doi="10.5072/abc", datacite_state="findable"))
    api.session.flush()
    assert api.call("GET", f"/datasets/versions/{vid}/datacite.json").get_json()["doi"] == (
        "10.5072/abc"
    )
    # Once the DOI resolves, every document cites the version by it, as its page does.
    cited = api.call("GET", f"/datasets/versions/{vid}/croissant.json").get_json()["citeAs"]
    assert "https://doi.org/10.5072/abc" in cited
    sheet = api.call("GET", f"/datasets/versions/{vid}/datasheet.md").get_data(as_text=True)
    assert "https://doi.org/10.5072/abc" in sheet
    sheet = api.call("GET", f"/datasets/versions/{vid}/datasheet.md")
    assert sheet.mimetype == "text/markdown" and DATASHEET["biases"] in sheet.get_data(as_text=True)

    # Downloads: whole, a range, an unsatisfiable range.
    file_url = f"/datasets/versions/{vid}/files/data/events.csv"
    whole = api.call("GET", file_url)
    assert whole.status_code == 200 and whole.get_data() == CSV
    assert whole.headers["ETag"] == f'"{hashlib.sha256(CSV).hexdigest()}"'
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Disposition"].startswith('attachment; filename="events.csv"')
    part = api.call("GET", file_url, headers={"Range": "bytes=6-11"})
    assert part.status_code == 206 and part.get_data() == CSV[6:12]
    assert part.headers["Content-Range"] == f"bytes 6-11/{len(CSV)}"
    tail = api.call("GET", file_url, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.get_data() == CSV[-5:]
    outside = api.call("GET", file_url, headers={"Range": f"bytes={len(CSV)}-"})
    _problem(outside, 416, "invalid-range")
    assert outside.headers["Content-Range"] == f"bytes */{len(CSV)}"
    stale = api.call("GET", file_url, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.get_data() == CSV
    # The public URLs the exports give serve the same.
    content_url = croissant.get_json()["distribution"][0]["contentUrl"]
    assert content_url.startswith("http://localhost/datasets/versions/")
    public = api.client.get(
        content_url.removeprefix("http://localhost"), headers={"Range": "bytes=0-2"}
    )
    assert public.status_code == 206 and public.get_data() == CSV[:3]
    for document in ("croissant.json", "datacite.json", "datasheet.md", "SHA256SUMS"):
        url = f"/datasets/versions/{v1['public_id']}/{document}"
        assert api.client.get(url).status_code == 200, document

    # A new version copies the files; a second file; publish; deprecate the first.
    v2 = api.call("POST", f"/datasets/{v1['dataset_id']}/versions", "member")
    assert v2.status_code == 201, v2.get_json()
    v2id = v2.get_json()["id"]
    assert [f["name"] for f in v2.get_json()["files"]] == ["data/events.csv"]
    again = api.call("POST", f"/datasets/{v1['dataset_id']}/versions", "pi")
    _problem(again, 409, "dataset-draft-exists")
    assert _upload(api, v2id, "README.md", b"# Calving\n").status_code == 201
    assert api.call("POST", f"/datasets/versions/{v2id}/publish", "pi").status_code == 200
    deprecated = api.call(
        "POST",
        f"/datasets/versions/{vid}/deprecate",
        "pi",
        json={"successor_version_id": v2id, "note": "v2 adds a README"},
    )
    assert deprecated.status_code == 200, deprecated.get_json()
    assert deprecated.get_json()["state"] == "deprecated"
    assert api.call("GET", f"/datasets/{v1['concept_id']}").get_json()["id"] == v2id
    assert api.call("GET", file_url).status_code == 200  # deprecated: still served

    # Take down: ops only, with a reason; files 410, the tombstone stays.
    url = f"/datasets/versions/{v2id}/takedown"
    _problem(api.call("POST", url, "pi", json={"reason": "court order"}), 403)
    _problem(api.call("POST", url, "ops", json={"reason": ""}), 422)
    named = api.call("POST", url, "ops", json={"reason": "asked by jane.doe@uni.example"})
    _problem(named, 422, "personal-data-in-public-text")
    assert "may not hold an e-mail address" in named.get_json()["detail"]
    assert api.call("GET", f"/datasets/versions/{v2id}").get_json()["state"] == "published"
    down = api.call("POST", url, "ops", json={"reason": "court order"})
    assert down.status_code == 200, down.get_json()
    # v2 carried v1's data/events.csv over; the deprecated v1 still serves those bytes.
    (serving,) = down.get_json()["same_files_still_served_by"]
    assert (serving["id"], serving["number"]) == (vid, 1)
    assert (
        serving["public_id"] == api.call("GET", f"/datasets/versions/{vid}").get_json()["public_id"]
    )
    gone = api.call("GET", f"/datasets/versions/{v2id}/files/README.md")
    _problem(gone, 410, "dataset-file-gone")
    _problem(api.call("GET", f"/datasets/versions/{v2id}/files/data/events.csv"), 410)
    _problem(api.call("GET", f"/datasets/versions/{v2id}/SHA256SUMS"), 410)
    tombstone = api.call("GET", f"/datasets/versions/{v2id}").get_json()
    assert tombstone["state"] == "taken_down"
    assert tombstone["takedown_reason"] == "court order"
    assert tombstone["files"] == [] and tombstone["datasheet"] == {}
    assert api.call("GET", f"/datasets/versions/{v2id}/datacite.json").status_code == 200
    assert api.call("GET", file_url).status_code == 200  # the deprecated v1 is not down


def test_anonymous_callers_and_outsiders_see_only_public_versions(api: Api) -> None:
    draft = _draft(api)
    url = f"/datasets/versions/{draft['id']}"
    assert _upload(api, draft["id"], "a.csv", CSV).status_code == 201
    for who in ("anonymous", "outsider"):
        _problem(api.call("GET", url, who), 404, "dataset-version-not-found")
        _problem(api.call("GET", f"{url}/files/a.csv", who), 404)
        _problem(api.call("GET", f"{url}/croissant.json", who), 404)
        _problem(api.call("GET", f"/datasets/{draft['concept_id']}", who), 404)
        _problem(api.call("GET", f"/datasets/{draft['dataset_id']}/versions", who), 404)
        listed = api.call("GET", "/datasets?state=draft", who).get_json()["items"]
        assert listed == []
    for who in ("pi", "member", "ops", "pi_read_only"):
        assert api.call("GET", url, who).status_code == 200, who
        assert api.call("GET", f"{url}/files/a.csv", who).get_data() == CSV
    assert [
        v["id"] for v in api.call("GET", "/datasets?state=draft", "pi").get_json()["items"]
    ] == [draft["id"]]
    assert api.call("GET", "/datasets", "pi").get_json()["items"] == []
    # A read-only token may not write; an outsider may not either.
    _problem(_upload(api, draft["id"], "b.csv", CSV, who="pi_read_only"), 403, "missing-scope")
    _problem(_upload(api, draft["id"], "b.csv", CSV, who="outsider"), 404)
    _problem(_upload(api, draft["id"], "b.csv", CSV, who="anonymous"), 401)


def test_published_versions_refuse_every_edit_with_409(api: Api) -> None:
    version = _published(api)
    vid = version["id"]
    edits = [
        ("PATCH", f"/datasets/versions/{vid}", {"json": {"title": "New"}}),
        ("PATCH", f"/datasets/versions/{vid}/datasheet", {"json": {"uses": "Any"}}),
        ("POST", f"/datasets/versions/{vid}/provenance", {"json": {"job_ids": []}}),
        ("PUT", f"/datasets/versions/{vid}/files/new.csv", {"data": b"x"}),
        ("DELETE", f"/datasets/versions/{vid}/files/events.csv", {}),
        ("POST", f"/datasets/versions/{vid}/uploads", {"json": {"name": "b", "size": 1}}),
    ]
    keys = api.stored()
    for method, url, kwargs in edits:
        body = _problem(api.call(method, url, "pi", **kwargs), 409, "dataset-version-immutable")
        assert body["current_state"] == "published"
    again = api.call("POST", f"/datasets/versions/{vid}/publish", "pi")
    assert _problem(again, 409)["current_state"] == "published"
    assert api.stored() == keys
    assert api.call("GET", f"/datasets/versions/{vid}/files/events.csv").get_data() == CSV


def test_publishing_an_incomplete_draft_lists_what_is_missing(api: Api) -> None:
    draft = _draft(api)
    refused = api.call("POST", f"/datasets/versions/{draft['id']}/publish", "pi")
    missing = _problem(refused, 422, "dataset-metadata-incomplete")["missing"]
    assert {"description", "creators", "license", "files", "datasheet.biases"} <= set(missing)
    assert "title" not in missing


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("%2E%2E/etc/passwd", 422),
        ("data/../../secret", 422),
        ("x" * 10_000, 422),
        ("evil%E2%80%AEvsc.csv", 422),
        ("con%09trol", 422),
        ("EVENTS.CSV", 409),
        ("events.csv/inner", 409),
    ],
)
def test_bad_file_names_are_refused_and_leave_nothing(api: Api, name: str, status: int) -> None:
    draft = _draft(api)
    assert _upload(api, draft["id"], "events.csv", CSV).status_code == 201
    keys, rows = api.stored(), api.file_rows()
    url = f"/datasets/versions/{draft['id']}/files/{name}"
    response = api.call("PUT", url, "pi", data=b"other content")
    _problem(response, status)
    assert api.stored() == keys
    assert api.file_rows() == rows
    start = api.call(
        "POST",
        f"/datasets/versions/{draft['id']}/uploads",
        "pi",
        json={"name": unquote(name), "size": 5},
    )
    assert start.status_code in {409, 422}
    assert api.stored() == keys


def test_an_unknown_licence_is_refused_and_changes_nothing(api: Api) -> None:
    draft = _draft(api)
    url = f"/datasets/versions/{draft['id']}"
    body = _problem(api.call("PATCH", url, "pi", json={"license": "CC-BY-9.9"}), 422)
    assert body["errors"][0]["loc"] == ["license"]
    assert api.call("GET", url, "pi").get_json()["license"] is None


def test_uploads_over_the_file_limit_are_refused_and_leave_nothing(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    api = Api(
        _app(
            joined_session_factory, world, dataset_max_file_bytes=100, request_max_bytes=1024
        ).test_client(),
        world,
        session,
        _tokens(session, world),
    )
    draft = _draft(api)
    url = f"/datasets/versions/{draft['id']}/files/big.bin"
    keys = api.stored()
    _problem(api.call("PUT", url, "pi", data=b"x" * 101), 413)
    # Sent with no declared length: refused as the 101st byte arrives.
    chunked = api.call(
        "PUT",
        url,
        "pi",
        input_stream=io.BytesIO(b"y" * 5000),
        **CHUNKED,
    )
    assert chunked.status_code == 413, chunked.get_data(as_text=True)
    # Chunked through a server that does not end the input: refused, not read as empty.
    unended = api.call(
        "PUT", url, "pi", input_stream=io.BytesIO(b"y"), **CHUNKED | {"environ_overrides": {}}
    )
    _problem(unended, 411, "length-required")
    assert api.stored() == keys and api.file_rows() == 0
    start = api.call(
        "POST", f"/datasets/versions/{draft['id']}/uploads", "pi", json={"name": "b", "size": 101}
    )
    _problem(start, 413, "blob-too-large")
    assert api.stored() == keys
    # Exactly the limit is fine, and far over CREDITS_REQUEST_MAX_BYTES would be too.
    assert api.call("PUT", url, "pi", data=b"z" * 100).status_code == 201


def test_a_version_over_its_size_limit_is_refused(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    app = _app(
        joined_session_factory,
        world,
        dataset_max_file_bytes=2 * 1024 * 1024,
        dataset_max_version_bytes=1_500_000,
    )
    api = Api(app.test_client(), world, session, _tokens(session, world))
    draft = _draft(api)
    big = b"a" * 1_000_000
    assert _upload(api, draft["id"], "one.bin", big).status_code == 201
    keys = api.stored()
    _problem(_upload(api, draft["id"], "two.bin", b"b" * 600_000), 413, "dataset-version-too-large")
    chunked = api.call(
        "PUT",
        f"/datasets/versions/{draft['id']}/files/three.bin",
        "pi",
        input_stream=io.BytesIO(b"c" * 600_000),
        **CHUNKED,
    )
    _problem(chunked, 413, "dataset-version-too-large")
    assert api.stored() == keys and api.file_rows() == 1
    large = b"d" * (1024 * 1024 + 10)  # over the app-wide 1 MiB request limit
    replaced = api.call("DELETE", f"/datasets/versions/{draft['id']}/files/one.bin", "pi")
    assert replaced.status_code == 204 and "Content-Type" not in replaced.headers
    assert _upload(api, draft["id"], "large.bin", large).status_code == 201
    assert hashlib.sha256(big).hexdigest() not in "".join(api.stored())  # no longer held


def _multipart(api: Api, vid: int, name: str, size: int) -> tuple[str, int]:
    started = api.call(
        "POST", f"/datasets/versions/{vid}/uploads", "pi", json={"name": name, "size": size}
    )
    assert started.status_code == 201, started.get_json()
    body = started.get_json()
    assert body["part_size"] == PART_SIZE
    return body["upload_id"], body["parts"]


def _part(api: Api, vid: int, upload: str, number: int, data: bytes) -> TestResponse:
    url = f"/datasets/versions/{vid}/uploads/{upload}/parts/{number}"
    return api.call("PUT", url, "pi", data=data, content_type="application/octet-stream")


def test_a_multipart_upload_resumes_by_sending_the_missing_parts(api: Api) -> None:
    draft = _draft(api)
    vid = draft["id"]
    data = bytes(range(256)) * (PART_SIZE // 256) + b"tail of the file"
    upload, parts = _multipart(api, vid, "big/blob.bin", len(data))
    assert parts == 2
    status_url = f"/datasets/versions/{vid}/uploads/{upload}?parts={parts}"
    assert _part(api, vid, upload, 2, data[PART_SIZE:]).status_code == 204
    assert api.call("GET", status_url, "pi").get_json()["missing"] == [1]
    # The connection broke: the client asks and sends what is missing.
    assert _part(api, vid, upload, 1, data[:PART_SIZE]).status_code == 204
    assert api.call("GET", status_url, "pi").get_json()["missing"] == []
    done = api.call(
        "POST",
        f"/datasets/versions/{vid}/uploads/{upload}/complete",
        "pi",
        json={"name": "big/blob.bin", "parts": parts},
    )
    assert done.status_code == 201, done.get_json()
    assert done.get_json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert not [key for key in api.stored() if key.startswith("uploads/")]
    got = api.call("GET", f"/datasets/versions/{vid}/files/big/blob.bin", "pi")
    assert got.get_data() == data
    _problem(api.call("GET", status_url, "pi"), 404, "upload-not-found")


def test_a_broken_multipart_upload_is_refused_and_leaves_nothing(api: Api) -> None:
    draft = _draft(api)
    vid = draft["id"]
    keys = api.stored()
    # A short middle part: completing refuses and ends the upload.
    upload, parts = _multipart(api, vid, "a.bin", PART_SIZE + 5)
    assert _part(api, vid, upload, 1, b"short").status_code == 204
    assert _part(api, vid, upload, 2, b"12345").status_code == 204
    complete = f"/datasets/versions/{vid}/uploads/{upload}/complete"
    body = {"name": "a.bin", "parts": parts}
    _problem(api.call("POST", complete, "pi", json=body), 422, "invalid-part")
    _problem(api.call("POST", complete, "pi", json=body), 404, "upload-not-found")
    # Parts missing: 422 naming them.
    upload, parts = _multipart(api, vid, "a.bin", PART_SIZE + 5)
    refused = api.call(
        "POST", f"/datasets/versions/{vid}/uploads/{upload}/complete", "pi", json=body
    )
    assert _problem(refused, 422, "incomplete-upload")["missing"] == [1, 2]
    # A part past the declared size ends the upload.
    upload, _ = _multipart(api, vid, "a.bin", 10)
    _problem(_part(api, vid, upload, 1, b"x" * 11), 413, "blob-too-large")
    _problem(_part(api, vid, upload, 1, b"x" * 10), 404, "upload-not-found")
    # A part over the part size is refused before it is read.
    upload, _ = _multipart(api, vid, "a.bin", PART_SIZE * 2)
    _problem(_part(api, vid, upload, 1, b"x" * (PART_SIZE + 1)), 413)
    # An abandoned upload is removed.
    assert api.call("DELETE", f"/datasets/versions/{vid}/uploads/{upload}", "pi").status_code == 204
    # A name taken since the upload started: refused at completion, the blob not kept.
    upload, parts = _multipart(api, vid, "late.csv", 3)
    assert _part(api, vid, upload, 1, b"abc").status_code == 204
    assert _upload(api, vid, "late.csv", CSV).status_code == 201
    keys_with_late = [key for key in api.stored() if not key.startswith("uploads/")]
    late = api.call(
        "POST",
        f"/datasets/versions/{vid}/uploads/{upload}/complete",
        "pi",
        json={"name": "late.csv", "parts": 1},
    )
    _problem(late, 409, "dataset-duplicate-file-name")
    assert api.stored() == keys_with_late
    assert len(keys_with_late) == len(keys) + 1
    _problem(api.call("GET", f"/datasets/versions/{vid}/uploads/{'0' * 32}?parts=1", "pi"), 404)


def test_repeat_downloads_from_one_client_count_once(api: Api) -> None:
    version = _published(api)
    url = f"/datasets/versions/{version['id']}/files/events.csv"
    for _ in range(3):
        assert api.call("GET", url, headers={"User-Agent": "curl/8"}).status_code == 200
    assert api.call("GET", url, headers={"User-Agent": "wget/1"}).status_code == 200
    assert api.call("HEAD", url, headers={"User-Agent": "aria2/1"}).status_code == 200
    read = api.call("GET", f"/datasets/versions/{version['id']}").get_json()
    assert read["download_count"] == 2
    assert read["files"][0]["download_count"] == 2


def test_on_s3_a_download_redirects_to_a_presigned_url(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    memory = world.store
    assert isinstance(memory, FsspecBlobStore)
    world.store = PresigningStore(memory.fs, memory.root)
    app = _app(joined_session_factory, world)
    api = Api(app.test_client(), world, session, _tokens(session, world))
    version = _published(api)
    response = api.call("GET", f"/datasets/versions/{version['id']}/files/events.csv")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("https://s3.example/")
    assert "expires=300" in response.headers["Location"]
    row = session.get(DatasetVersion, version["id"], populate_existing=True)
    assert row is not None and row.download_count == 1


def test_verify_is_for_ops_and_names_a_corrupt_file(api: Api) -> None:
    version = _published(api)
    url = f"/datasets/versions/{version['id']}/verify"
    _problem(api.call("POST", url, "pi"), 403, "missing-role")
    assert api.call("POST", url, "ops").get_json()["problems"] == []
    store = api.world.store
    assert isinstance(store, FsspecBlobStore)
    digest = hashlib.sha256(CSV).hexdigest()
    path = store.path(f"blobs/sha256/{digest[:2]}/{digest[2:4]}/{digest}")
    store.fs.pipe_file(path, b"X" + CSV[1:])
    problems = api.call("POST", url, "ops").get_json()["problems"]
    assert [(p["name"], p["problem"]) for p in problems] == [("events.csv", "corrupt")]


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, made as they are read: the body of a large upload."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[
            whence
        ] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self.size - self.position))
        buffer[:count] = bytes(count)
        self.position += count
        return count


def test_a_large_upload_streams_in_flat_memory(
    session: Session, joined_session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    world = build_world(session, store_root=tmp_path / "storage")
    app = _app(
        joined_session_factory,
        world,
        dataset_max_file_bytes=1024**3,
        dataset_max_version_bytes=1024**3,
    )
    api = Api(app.test_client(), world, session, _tokens(session, world))
    draft = _draft(api)
    size = 96 * 1024 * 1024
    tracemalloc.start()
    try:
        response = api.call(
            "PUT",
            f"/datasets/versions/{draft['id']}/files/zeros.bin",
            "pi",
            input_stream=_Zeros(size),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["sha256"] == hashlib.sha256(bytes(size)).hexdigest()
    assert peak < 16 * 1024 * 1024, f"peak {peak:,} bytes for a {size:,}-byte upload"


def test_on_a_real_s3_server_uploads_stream_and_downloads_redirect(
    session: Session, joined_session_factory: sessionmaker[Session], s3_server: S3Server
) -> None:
    world = build_world(session)
    world.store = blob_store_for_url(s3_server.fresh_url(), s3_options=s3_server.options)
    app = _app(joined_session_factory, world)
    api = Api(app.test_client(), world, session, _tokens(session, world))
    draft = _draft(api)
    vid = draft["id"]
    _describe(api, vid)
    assert _upload(api, vid, "events.csv", CSV).status_code == 201
    data = b"\x01" * PART_SIZE + b"the end"
    upload, parts = _multipart(api, vid, "big.bin", len(data))
    assert _part(api, vid, upload, 2, data[PART_SIZE:]).status_code == 204
    status_url = f"/datasets/versions/{vid}/uploads/{upload}?parts={parts}"
    assert api.call("GET", status_url, "pi").get_json()["missing"] == [1]
    assert _part(api, vid, upload, 1, data[:PART_SIZE]).status_code == 204
    done = api.call(
        "POST",
        f"/datasets/versions/{vid}/uploads/{upload}/complete",
        "pi",
        json={"name": "big.bin", "parts": parts},
    )
    assert done.status_code == 201, done.get_json()
    assert done.get_json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert api.call("POST", f"/datasets/versions/{vid}/publish", "pi").status_code == 200
    for name, content in (("events.csv", CSV), ("big.bin", data)):
        response = api.call("GET", f"/datasets/versions/{vid}/files/{name}")
        assert response.status_code == 302
        with urllib.request.urlopen(response.headers["Location"], timeout=30) as fetched:  # noqa: S310 - the test server
            assert fetched.read() == content
            assert name in fetched.headers["Content-Disposition"]


def test_the_document_describes_file_bodies_ranges_and_redirects(api: Api) -> None:
    document = api.call("GET", "/openapi.json").get_json()
    files = document["paths"]["/api/v1/datasets/versions/{version_id}/files/{file_name}"]
    assert files["put"]["requestBody"]["content"] == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    assert {"201", "409", "413", "422"} <= set(files["put"]["responses"])
    download = files["get"]
    assert download["security"] == []
    assert {"200", "206", "302", "404", "410", "416"} <= set(download["responses"])
    assert {"ETag", "Accept-Ranges"} <= set(download["responses"]["200"]["headers"])
    assert "Content-Range" in download["responses"]["206"]["headers"]
    assert "content" not in download["responses"]["302"]
    assert "content" not in files["delete"]["responses"]["204"]
    croissant = document["paths"]["/datasets/versions/{public_id}/croissant.json"]["get"]
    assert croissant["responses"]["200"]["content"] == {
        "application/ld+json": {"schema": {"type": "object"}}
    }


def test_export_links_use_the_configured_public_url_whatever_the_host_header(
    api: Api, joined_session_factory: sessionmaker[Session]
) -> None:
    published = _published(api)
    app = _app(joined_session_factory, api.world, public_url="https://data.example.org")
    client = app.test_client()
    base = f"/api/v1/datasets/versions/{published['id']}"
    croissant = client.get(f"{base}/croissant.json", headers={"Host": "evil.example"})
    assert croissant.status_code == 200
    document = croissant.get_json()
    links = [document["url"], *(entry["contentUrl"] for entry in document["distribution"])]
    assert all(link.startswith("https://data.example.org/datasets/versions/") for link in links)
    datasheet = client.get(f"{base}/datasheet.md", headers={"Host": "evil.example"})
    assert "evil.example" not in datasheet.get_data(as_text=True)


def test_an_upload_whose_name_is_not_utf_8_is_refused(api: Api) -> None:
    draft = _draft(api)
    url = f"/datasets/versions/{draft['id']}/files/r%E9sum%E9.csv"  # Latin-1, not UTF-8
    response = api.call("PUT", url, "pi", data=CSV, content_type="application/octet-stream")
    assert "U+FFFD" in _problem(response, 422)["detail"]
    assert api.call("GET", f"/datasets/versions/{draft['id']}", "pi").get_json()["files"] == []
