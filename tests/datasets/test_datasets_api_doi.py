"""DOIs through the datasets API, against the local DataCite stub (datacite_stub.py):
with the CREDITS_DATACITE_* settings given, the API's create, new version, publish,
deprecate and take-down tell DataCite exactly as the CLI's do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from datacite_stub import (
    PASSWORD,
    PREFIX,
    REPOSITORY_ID,
    DataCiteStub,
    Fault,
    running_datacite_stub,
)
from datasets_world import CSV, DATASHEET, METADATA, DatasetsWorld, build_world
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from credits.api.datasets import DOIS_KEY, STORE_KEY
from credits.app import create_app
from credits.datasets.datacite import RetryPolicy
from credits.datasets.doi import doi_registrar_from_settings, sync_dois
from credits.datasets.models import DatasetDoi
from credits.identity.actor import Actor
from credits.identity.tokens import create_token
from credits.settings import Settings, load_settings

SYSTEM = Actor.system("api-doi-tests")
PUBLIC = "https://data.example.org"
API = "/api/v1"


@dataclass
class DoiApi:
    client: FlaskClient
    app: Flask
    world: DatasetsWorld
    session: Session
    stub: DataCiteStub
    tokens: dict[str, str]

    def call(self, method: str, url: str, who: str, **kwargs: Any) -> TestResponse:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.open(API + url, method=method, headers=headers, **kwargs)

    def record(self, version_id: int) -> DatasetDoi | None:
        self.session.expire_all()
        return self.session.get(DatasetDoi, version_id)


def _settings(stub: DataCiteStub) -> Settings:
    return load_settings(
        datacite_url=stub.url,
        datacite_repository_id=REPOSITORY_ID,
        datacite_password=PASSWORD,
        datacite_prefix=PREFIX,
        public_url=PUBLIC,
    )


@pytest.fixture
def api(session: Session, joined_session_factory: sessionmaker[Session]) -> Iterator[DoiApi]:
    world = build_world(session)
    tokens = {}
    for who in ("pi", "ops"):
        email = getattr(world, who).email
        tokens[who] = create_token(session, email=email, actor=SYSTEM).secret
    session.flush()
    with running_datacite_stub() as stub:
        app = create_app(_settings(stub), session_factory=joined_session_factory)
        app.extensions[STORE_KEY] = world.store
        yield DoiApi(app.test_client(), app, world, session, stub, tokens)


def _created(api: DoiApi) -> dict[str, Any]:
    response = api.call(
        "POST", f"/projects/{api.world.project_id}/datasets", "pi", json={"title": "Calving"}
    )
    assert response.status_code == 201, response.get_json()
    created: dict[str, Any] = response.get_json()
    return created


def _complete(api: DoiApi, version_id: int) -> None:
    for url, body in (("", METADATA), ("/datasheet", DATASHEET)):
        response = api.call("PATCH", f"/datasets/versions/{version_id}{url}", "pi", json=body)
        assert response.status_code == 200, response.get_json()
    uploaded = api.call(
        "PUT",
        f"/datasets/versions/{version_id}/files/events.csv",
        "pi",
        data=CSV,
        content_type="application/octet-stream",
    )
    assert uploaded.status_code == 201, uploaded.get_json()


def _publish(api: DoiApi, version_id: int) -> TestResponse:
    return api.call("POST", f"/datasets/versions/{version_id}/publish", "pi")


def _published(api: DoiApi) -> dict[str, Any]:
    version = _created(api)
    _complete(api, version["id"])
    response = _publish(api, version["id"])
    assert response.status_code == 200, response.get_json()
    published: dict[str, Any] = response.get_json()
    return published


def test_a_version_created_and_published_through_the_api_gets_its_doi(api: DoiApi) -> None:
    draft = _created(api)
    doi = f"{PREFIX}/{draft['public_id']}"

    record = api.record(draft["id"])
    assert record is not None and record.doi == doi
    assert (record.datacite_state, record.pending) == ("draft", False)  # reserved after commit
    assert api.stub.state(doi) == "draft"

    _complete(api, draft["id"])
    published = _publish(api, draft["id"])

    assert published.status_code == 200, published.get_json()
    assert api.stub.state(doi) == "findable"
    sent = api.stub.calls_to("PUT")[-1].body
    assert sent is not None
    assert sent["data"]["attributes"]["url"] == f"{PUBLIC}/datasets/versions/{draft['public_id']}"
    document = api.call("GET", f"/datasets/versions/{draft['id']}/datacite.json", "pi")
    assert document.get_json()["doi"] == doi


def test_a_new_version_through_the_api_reserves_its_own_doi(api: DoiApi) -> None:
    first = _published(api)

    second = api.call("POST", f"/datasets/{first['dataset_id']}/versions", "pi")

    assert second.status_code == 201, second.get_json()
    doi = f"{PREFIX}/{second.get_json()['public_id']}"
    record = api.record(second.get_json()["id"])
    assert record is not None and record.doi == doi and not record.pending
    assert api.stub.state(doi) == "draft"
    assert len(api.stub.dois) == 2


def test_the_api_refuses_a_publication_whose_metadata_datacite_refuses(api: DoiApi) -> None:
    draft = _created(api)
    _complete(api, draft["id"])
    doi = f"{PREFIX}/{draft['public_id']}"
    api.stub.refuse_next(("Is invalid", "metadata"), ("Publisher can't be blank", "publisher"))

    refused = _publish(api, draft["id"])

    assert refused.status_code == 422, refused.get_json()
    problem = refused.get_json()
    assert problem["type"].endswith("/doi-metadata-refused")
    assert problem["detail"] == (
        f"DataCite refused to update {doi} (422): Is invalid (metadata); "
        "Publisher can't be blank (publisher)"
    )
    version = api.call("GET", f"/datasets/versions/{draft['id']}", "pi").get_json()
    assert version["state"] == "draft"  # still editable, so the metadata can be fixed
    assert api.stub.state(doi) == "draft"


def test_deprecating_through_the_api_sends_datacite_the_successor_link(api: DoiApi) -> None:
    first = _published(api)
    second = api.call("POST", f"/datasets/{first['dataset_id']}/versions", "pi").get_json()
    assert _publish(api, second["id"]).status_code == 200
    api.stub.calls.clear()

    deprecated = api.call(
        "POST",
        f"/datasets/versions/{first['id']}/deprecate",
        "pi",
        json={"successor_version_id": second["id"]},
    )

    assert deprecated.status_code == 200, deprecated.get_json()
    doi = f"{PREFIX}/{first['public_id']}"
    (put,) = api.stub.calls
    assert (put.method, put.path) == ("PUT", f"/dois/{doi}")
    assert {
        "relatedIdentifier": f"{PUBLIC}/datasets/versions/{second['public_id']}",
        "relatedIdentifierType": "URL",
        "relationType": "IsPreviousVersionOf",
    } in api.stub.attributes(doi)["relatedIdentifiers"]
    assert api.stub.state(doi) == "findable"
    record = api.record(first["id"])
    assert record is not None and not record.pending


def _take_down(api: DoiApi, version_id: int) -> TestResponse:
    url = f"/datasets/versions/{version_id}/takedown"
    return api.call("POST", url, "ops", json={"reason": "court order"})


def test_a_take_down_through_the_api_hides_the_doi(api: DoiApi) -> None:
    version = _published(api)
    doi = f"{PREFIX}/{version['public_id']}"

    down = _take_down(api, version["id"])

    assert down.status_code == 200, down.get_json()
    put = api.stub.calls_to("PUT")[-1]
    assert put.body is not None and put.body["data"]["attributes"]["event"] == "hide"
    assert api.stub.state(doi) == "registered"
    withdrawn = [d for d in api.stub.attributes(doi)["dates"] if d["dateType"] == "Withdrawn"]
    assert withdrawn[0]["dateInformation"] == "court order"


def test_a_take_down_through_the_api_stands_while_datacite_is_down(api: DoiApi) -> None:
    # This test's registrar does not wait between its retries.
    registrar = doi_registrar_from_settings(
        _settings(api.stub), retry=RetryPolicy(attempts=2), sleep=lambda _: None
    )
    assert registrar is not None
    api.app.extensions[DOIS_KEY] = registrar
    version = _published(api)
    doi = f"{PREFIX}/{version['public_id']}"
    api.stub.fail_next(Fault(status=503), Fault(status=503))

    down = _take_down(api, version["id"])

    assert down.status_code == 200, down.get_json()
    record = api.record(version["id"])
    assert record is not None and record.pending and record.last_error
    assert api.stub.state(doi) == "findable"
    record.next_attempt_at = None  # as if the backoff had passed: the sweep finishes it
    api.session.flush()
    assert sync_dois(api.session, registrar).done == [doi]
    assert api.stub.state(doi) == "registered"
